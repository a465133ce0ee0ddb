package edge

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/freeport"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/internal/tlsconf"
)

// acmeName is the name the test edges obtain certificates for (the test's DNS server resolves
// every name to 127.0.0.1).
const acmeName = "cdn.duet.test"

// acmeRegion is a Pebble CA and the ports its edges answer challenges on.
type acmeRegion struct {
	ca                *testenv.Pebble
	storage           string
	tlsPort, httpPort int
	origin            Origin
}

func newACMERegion(t *testing.T, validity time.Duration) *acmeRegion {
	t.Helper()
	r := &acmeRegion{storage: t.TempDir(), tlsPort: testPort(t), httpPort: testPort(t)}
	r.ca = testenv.StartPebble(t, testenv.PebbleConfig{HTTPPort: r.httpPort, TLSPort: r.tlsPort, Validity: validity})
	r.origin = httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "segment")
	})
	return r
}

// testPort is a free TCP port (on every loopback address: the edges share it on 127.0.0.x).
func testPort(t *testing.T) int {
	t.Helper()
	l, err := freeport.Listen("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// edge starts an edge of the region on ip, with the region's shared ACME storage, offering
// both challenges or those given.
func (r *acmeRegion) edge(t *testing.T, ip string, challenges ...string) *harness {
	t.Helper()
	if len(challenges) == 0 {
		challenges = []string{tlsconf.ChallengeTLSALPN, tlsconf.ChallengeHTTP}
	}
	return startEdge(t, r.origin, func(c *Config) {
		c.Listen = net.JoinHostPort(ip, strconv.Itoa(r.tlsPort))
		c.TLS.RedirectListen = net.JoinHostPort(ip, strconv.Itoa(r.httpPort))
		c.TLS.ACME = tlsconf.ACMEConfig{Domains: []string{acmeName}, CA: r.ca.Directory, CARoots: r.ca.CARoots,
			Storage: r.storage, Challenges: challenges,
			OCSPStapling: true, RenewCheckInterval: time.Second}
	})
}

// get fetches a segment from h over a new HTTPS connection verified against the CA's roots,
// and returns the served certificate's serial.
func (r *acmeRegion) get(h *harness) (string, error) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: r.ca.Roots, ServerName: acmeName}}}
	resp, err := cl.Get("https://" + h.cfg.Listen + "/seg.ts")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(b) != "segment" {
		return "", fmt.Errorf("GET /seg.ts: %s %q, %v", resp.Status, b, err)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

// TestACMEObtainedOnceForTheRegion is issue 16's acceptance line 2 (first start, shared
// storage): an edge with no certificate obtains one from the ACME CA on its first start
// (answering the CA's challenge itself), and a second edge of the region, on the same storage,
// serves the same certificate without contacting the CA (connections to the CA counted).
func TestACMEObtainedOnceForTheRegion(t *testing.T) {
	t.Parallel()
	r := newACMERegion(t, 0)
	e1 := r.edge(t, "127.0.0.1")
	var serial string
	testenv.Eventually(t, 60*time.Second, func() bool {
		s, err := r.get(e1)
		serial = s
		return err == nil
	}, "the first edge never served a certificate from the CA")
	asked := r.ca.Connections()
	if asked == 0 {
		t.Fatal("the first edge served a verified certificate without asking the CA")
	}
	t.Logf("first edge: certificate %s after %d connections to the CA", serial, asked)

	e2 := r.edge(t, "127.0.0.2")
	var serial2 string
	testenv.Eventually(t, 30*time.Second, func() bool {
		s, err := r.get(e2)
		serial2 = s
		return err == nil
	}, "the second edge never served the region's certificate")
	if serial2 != serial {
		t.Errorf("second edge serves certificate %s, the first %s", serial2, serial)
	}
	if n := r.ca.Connections(); n != asked {
		t.Errorf("the second edge contacted the CA (%d connections)", n-asked)
	}
}

// TestACMEHTTPChallenge: with only http-01 offered, the edge answers the CA's challenge on its
// redirect listener and obtains the certificate.
func TestACMEHTTPChallenge(t *testing.T) {
	t.Parallel()
	r := newACMERegion(t, 0)
	e := r.edge(t, "127.0.0.1", tlsconf.ChallengeHTTP)
	testenv.Eventually(t, 60*time.Second, func() bool {
		_, err := r.get(e)
		return err == nil
	}, "the edge never obtained a certificate through http-01")
}

// TestACMERenewsBeforeExpiry is issue 16's acceptance line 2 (renewal): with certificates
// valid for 30 s, the edge renews before expiry, and viewers connecting all along (each a new
// connection, verified at the time) see no failed request.
func TestACMERenewsBeforeExpiry(t *testing.T) {
	t.Parallel()
	r := newACMERegion(t, 30*time.Second)
	e := r.edge(t, "127.0.0.1")
	var first string
	testenv.Eventually(t, 60*time.Second, func() bool {
		s, err := r.get(e)
		first = s
		return err == nil
	}, "the edge never served a certificate from the CA")
	deadline := time.Now().Add(90 * time.Second)
	requests := 0
	for {
		s, err := r.get(e)
		requests++
		if err != nil {
			t.Fatalf("request %d failed while the certificate was due for renewal: %v", requests, err)
		}
		if s != first {
			t.Logf("renewed: certificate %s replaced %s; %d requests, none failed", s, first, requests)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate %s not renewed within 90 s", first)
		}
		time.Sleep(100 * time.Millisecond) //nolint:forbidigo // a viewer every 100 ms, bounded by the deadline above
	}
}
