package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/testenv"
)

// TestDevHTTPSPlayerPlaysThroughSteering is issue 16's acceptance line 3: `duet dev --https`
// makes a local CA and a certificate for its loopback addresses (keys 0600 under --dir/tls),
// edges and steering serve HTTPS, steering's answers name https edges, and the player page,
// opened over https in headless chromium that trusts the dev CA (its public key passed with
// --ignore-certificate-errors-spki-list: chromium has no flag to add a root), plays the sample
// through steering, every request over https; then the edge it plays from is killed (SIGKILL)
// and the video keeps playing from another edge.
func TestDevHTTPSPlayerPlaysThroughSteering(t *testing.T) {
	exe := chromiumPath(t)
	dir := t.TempDir()
	d := startDev(t, dir, testenv.MinIOBin(t), append(os.Environ(), "DUET_TEST_MAIN=1"), "--https")

	for _, f := range []string{"ca.key", "tls.key", "ca.crt", "tls.crt"} {
		st, err := os.Stat(filepath.Join(dir, "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatal("tls/ca.crt holds no PEM certificate")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	viewer := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	_, body := d.getCluster(t)
	var cl devcluster.ClusterJSON
	if err := json.Unmarshal(body, &cl); err != nil {
		t.Fatal(err)
	}
	edgeByHost := map[string]string{}
	for _, r := range cl.Regions {
		if !strings.HasPrefix(r.Steering, "https://") {
			t.Fatalf("region %s: steering at %s, want https", r.Name, r.Steering)
		}
		for _, e := range r.Edges {
			u, _ := url.Parse(e.URL)
			if u.Scheme != "https" {
				t.Fatalf("edge %s at %s, want https", e.Name, e.URL)
			}
			edgeByHost[u.Host] = e.Name
		}
	}
	steer := cl.Regions[0].Steering
	if !strings.HasPrefix(d.segURL, "https://") {
		t.Fatalf("the banner's segment URL %s is not https", d.segURL)
	}
	// Steering's answers name the edges by https URL (their heartbeats announce them so), and
	// steering's probes, which trust the dev CA, find them up.
	var route struct{ Edges []struct{ URL, State string } }
	testenv.Eventually(t, 20*time.Second, func() bool {
		resp, err := viewer.Get(steer + "/v1/route?path=" + url.QueryEscape(cl.Sample))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&route) == nil &&
			len(route.Edges) > 0 && route.Edges[0].State == "up"
	}, "steering over https never routed to an edge that is up")
	for _, e := range route.Edges {
		if !strings.HasPrefix(e.URL, "https://") {
			t.Fatalf("steering routes to %s, want https: %+v", e.URL, route)
		}
	}
	resp, err := viewer.Get(d.segURL)
	if err != nil {
		t.Fatalf("GET %s verified against the dev CA: %v", d.segURL, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", d.segURL, resp.Status)
	}

	spki := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	bctx := openBrowser(t, exe, 150*time.Second, chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])))
	if err := chromedp.Do(bctx, chromedp.Navigate(steer+"/play")); err != nil {
		t.Fatalf("open the player over https: %v", err)
	}
	var st devPlayer
	waitPlayer := func(what string, within time.Duration, ok func(devPlayer) bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			p, err := chromedp.Run(bctx, chromedp.Evaluate[*devPlayer](`window.duetPlayer ? JSON.parse(JSON.stringify(window.duetPlayer)) : null`))
			if err != nil {
				t.Fatalf("%s: read window.duetPlayer: %v", what, err)
			}
			if p != nil {
				st = *p
			}
			if st.Failed {
				t.Fatalf("%s: the player gave up: %+v", what, st)
			}
			if ok(st) {
				return
			}
			if time.Now().After(deadline) {
				raw, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify(window.duetPlayer)`))
				t.Fatalf("%s: not within %s: %+v\nwindow.duetPlayer: %s", what, within, st, raw)
			}
			time.Sleep(200 * time.Millisecond) //nolint:forbidigo // poll interval, bounded by the deadline above
		}
	}
	waitPlayer("first 3 s of video over https", 60*time.Second, func(s devPlayer) bool { return s.Played >= 3 && s.FramesDecoded > 0 && s.Host != "" })
	first := edgeByHost[st.Host]
	if first == "" {
		t.Fatalf("segments came from %s, which is not an edge of the cluster", st.Host)
	}
	t.Logf("playing over https from %s (pathway %s)", first, st.Pathway)
	post(t, strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")+"/v1/dev/edges/"+first+"/stop", d.token)
	played := st.Played
	waitPlayer("playback after its edge was killed", 60*time.Second, func(s devPlayer) bool {
		return s.Played >= played+6 && s.Host != "" && edgeByHost[s.Host] != first
	})
	t.Logf("kept playing over https from %s (pathway %s) after %s was killed", edgeByHost[st.Host], st.Pathway, first)

	// Everything the page loaded (the page, hls.js, steering manifests, playlists, segments)
	// came over https.
	urls, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[location.href].concat(performance.getEntriesByType('resource').map(e => e.name))`))
	if err != nil {
		t.Fatal(err)
	}
	var segs int
	for _, u := range urls {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "blob:") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page loaded %s, not over https", u)
		}
		if pu, err := url.Parse(u); err == nil && (strings.HasSuffix(pu.Path, ".ts") || strings.HasSuffix(pu.Path, ".m4s")) {
			segs++
		}
	}
	if segs == 0 {
		t.Errorf("no segment among the page's resources: %q", urls)
	}
	t.Logf("%d resources loaded over https, %d of them segments", len(urls), segs)
}
