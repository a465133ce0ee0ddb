package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/duetcdn/duet/internal/freeport"
	"github.com/duetcdn/duet/internal/tlsconf/tlstest"
)

// PebbleBinEnv names the environment variable that overrides the Pebble binary's path.
const PebbleBinEnv = "DUET_PEBBLE_BIN"

// PebbleConfig configures a test ACME CA.
type PebbleConfig struct {
	// HTTPPort and TLSPort are where the CA validates HTTP-01 and TLS-ALPN-01 challenges (on
	// the address the names resolve to, 127.0.0.1).
	HTTPPort, TLSPort int
	// Validity is the lifetime of the certificates it issues. Default 90 days.
	Validity time.Duration
}

// Pebble is a running Pebble ACME CA (github.com/letsencrypt/pebble, pinned by the Makefile)
// behind a TCP proxy that counts the connections made to it.
type Pebble struct {
	// Directory is the ACME directory URL (through the counting proxy).
	Directory string
	// CARoots is a PEM file trusting the CA's own HTTPS listener (for acme.ca_roots).
	CARoots string
	// Roots trusts the certificates the CA issues.
	Roots *x509.CertPool
	conns atomic.Int64
}

// Connections is how many connections clients opened to the CA so far.
func (p *Pebble) Connections() int64 { return p.conns.Load() }

// StartPebble starts Pebble for the test, with a DNS server that resolves every name to
// 127.0.0.1 for its validations, and stops both in t.Cleanup. The binary is <repo
// root>/bin/pebble or $DUET_PEBBLE_BIN; when it is missing the test fails under CI=true and is
// skipped otherwise, both with a message naming `make tools`.
func StartPebble(t testing.TB, cfg PebbleConfig) *Pebble {
	t.Helper()
	bin := os.Getenv(PebbleBinEnv)
	if bin == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		bin = filepath.Join(root, "bin", "pebble")
	}
	if _, err := os.Stat(bin); err != nil { //nolint:gosec // the binary's path is the test's own setting
		msg := fmt.Sprintf("testenv: Pebble ACME server not found at %s: run \"make tools\" (or set %s) — the ACME tests need the real CA", bin, PebbleBinEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("!!!!!!!! SKIPPED: " + msg + " !!!!!!!!")
	}
	if cfg.Validity == 0 {
		cfg.Validity = 90 * 24 * time.Hour
	}
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.WriteFiles(t, dir, "pebble", 1, "127.0.0.1", "localhost")
	rootsFile := filepath.Join(dir, "pebble-ca.pem")
	if err := os.WriteFile(rootsFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dns := startDNS(t)
	acmePort, mgmtPort := freePort(t), freePort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           "127.0.0.1:" + strconv.Itoa(acmePort),
		"managementListenAddress": "127.0.0.1:" + strconv.Itoa(mgmtPort),
		"certificate":             certFile, "privateKey": keyFile,
		"httpPort": cfg.HTTPPort, "tlsPort": cfg.TLSPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"keyAlgorithm": "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "duet tests", "validityPeriod": int64(cfg.Validity / time.Second)}},
	}}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	log := &logBuffer{}
	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dns) //nolint:gosec // the pinned test binary
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start pebble: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("testenv: pebble log (last %d bytes):\n%s", logKeep, log)
		}
	})

	p := &Pebble{CARoots: rootsFile}
	proxy := p.proxy(t, "127.0.0.1:"+strconv.Itoa(acmePort))
	p.Directory = "https://" + proxy + "/dir"
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	var root []byte
	Eventually(t, 30*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("testenv: pebble exited:\n%s", log)
		default:
		}
		resp, err := cl.Get("https://127.0.0.1:" + strconv.Itoa(mgmtPort) + "/roots/0")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		root, err = io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == 200
	}, "pebble not answering")
	p.Roots = x509.NewCertPool()
	if !p.Roots.AppendCertsFromPEM(root) {
		t.Fatalf("testenv: pebble's root is no PEM certificate: %q", root)
	}
	p.conns.Store(0)
	return p
}

// freePort is a free port on 127.0.0.1 (below the ephemeral range).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := freeport.Listen("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proxy forwards connections to target, counting them, until the test ends; it returns its
// address.
func (p *Pebble) proxy(t testing.TB, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			go func() {
				defer c.Close()
				u, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); _ = u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return l.Addr().String()
}

// startDNS answers every A query with 127.0.0.1 and every other query with no records, over
// TCP (Pebble's validation asks its custom resolver over TCP only: miekg/dns with Net "tcp"),
// until the test ends; it returns its address.
func startDNS(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveDNSConn(c)
		}
	}()
	return l.Addr().String()
}

// serveDNSConn answers the queries on one DNS-over-TCP connection (RFC 1035 §4.2.2: each
// message preceded by its length in two bytes) until the client closes it or is idle 10 s.
func serveDNSConn(c net.Conn) {
	defer c.Close()
	for range 100 {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		out, err := dnsAnswer(q)
		if err != nil {
			return
		}
		msg := binary.BigEndian.AppendUint16(nil, uint16(len(out))) //nolint:gosec // an answer to one question is far below 64 KiB
		if _, err := c.Write(append(msg, out...)); err != nil {
			return
		}
	}
}

// dnsAnswer answers one query.
func dnsAnswer(q []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, err
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil, fmt.Errorf("want one question: %w", err)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(qs[0]); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if qs[0].Type == dnsmessage.TypeA {
		rh := dnsmessage.ResourceHeader{Name: qs[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 1}
		if err := b.AResource(rh, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
