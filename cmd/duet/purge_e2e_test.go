package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/purge"
)

const testToken = "test-token-0123456789abcdef"

// versionedOrigin serves every path as "<path> v<N>" with a long max-age, so that only a purge
// makes an edge fetch the new version.
type versionedOrigin struct {
	version atomic.Int32
	srv     *httptest.Server
}

func newVersionedOrigin(t testing.TB) *versionedOrigin {
	o := &versionedOrigin{}
	o.version.Store(1)
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, "%s v%d", r.URL.Path, o.version.Load())
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// region is one region of the test topology: its NATS, purge API and edges.
type region struct {
	name    string
	nats    *server.Server
	natsCfg natsserver.Config
	api     string
	stopAPI func()
	edges   []*testEdge
}

type testEdge struct {
	name, url, admin string
	stop             func()
}

func silent() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startRegionNATS(t testing.TB, name string, leafPort int, remotes []string, dir string) (*server.Server, natsserver.Config) {
	t.Helper()
	cfg := natsserver.Config{Region: name, Port: -1, StoreDir: dir, LeafPort: leafPort, LeafRemotes: remotes}
	s, err := natsserver.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start NATS %s: %v", name, err)
	}
	t.Cleanup(s.Shutdown)
	// A restart must come back on the same ports, where edges and the other region reconnect.
	cfg.Port = s.Addr().(*net.TCPAddr).Port
	if leafPort != 0 {
		u, err := url.Parse(natsserver.LeafURL(s))
		if err != nil {
			t.Fatal(err)
		}
		cfg.LeafPort, _ = strconv.Atoi(u.Port())
	}
	return s, cfg
}

func startPurgeAPI(t testing.TB, r *region, regions []string) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := purgeServeConfig{ServiceConfig: purge.DefaultServiceConfig(), NATS: natsConfig{URLs: []string{r.nats.ClientURL()}}}
	cfg.Region, cfg.Regions = r.name, regions
	cfg.Tokens = []purge.Token{{Name: "test", Secret: testToken}}
	cfg.TickInterval = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runPurgeService(ctx, cfg, logger, ln) }()
	r.api = "http://" + ln.Addr().String()
	var once sync.Once
	r.stopAPI = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stopAPI)
	testenv.Eventually(t, 10*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("purge API %s stopped: %v", r.name, err)
		default:
		}
		resp, err := http.Get(r.api + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "purge API %s never ready", r.name)
}

func startNATSEdge(t testing.TB, r *region, name, originURL string, regions []string, bound time.Duration, edits ...func(*edgeRoleConfig)) *testEdge {
	t.Helper()
	cfg := defaultEdgeRoleConfig()
	cfg.Name, cfg.Region = name, r.name
	cfg.Listen, cfg.AdminListen = freeAddr(t), freeAddr(t)
	cfg.Origin = edge.OriginConfig{Type: "http", Config: s3conf.Config{Endpoint: originURL}, Timeout: 5 * time.Second}
	cfg.Disk = edge.DiskConfig{Dir: t.TempDir(), MaxBytes: 64 << 20}
	cfg.Memory = edge.MemoryConfig{MaxBytes: 16 << 20, MaxObjectBytes: 1 << 20}
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.NATS = natsConfig{URLs: []string{r.nats.ClientURL()}}
	cfg.Purge = purgeConsumerConfig{Regions: regions, StalenessBound: bound}
	for _, edit := range edits {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runEdge(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		close(done) // later receives (the cleanup's) return at once
	}()
	e := &testEdge{name: name, url: "http://" + cfg.Listen, admin: "http://" + cfg.AdminListen}
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(e.stop)
	// An edge that could not start says why here, instead of as an edge that never trusts.
	testenv.Eventually(t, 20*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("edge %s stopped while starting: %v", name, err)
		default:
		}
		resp, err := http.Get(e.admin + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, "edge %s never answered on its admin address", name)
	return e
}

// trusted reads the edge's duet_edge_cache_trusted gauge.
func (e *testEdge) trusted() bool {
	resp, err := http.Get(e.admin + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), "\nduet_edge_cache_trusted 1\n")
}

func (e *testEdge) get(t testing.TB, path string) (string, string) {
	t.Helper()
	resp, err := http.Get(e.url + path)
	if err != nil {
		t.Fatalf("%s %s: %v", e.name, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.Header.Get("X-Cache")
}

func purgeVia(t testing.TB, api string, req purge.Request) purge.Status {
	t.Helper()
	st, err := (&purge.Client{BaseURL: api, Token: testToken}).Purge(t.Context(), req)
	if err != nil {
		t.Fatalf("purge via %s: %v", api, err)
	}
	return st
}

// TestPurgeAcrossRegions is the purge promise in a 2 regions x 2 edges topology on embedded NATS.
func TestPurgeAcrossRegions(t *testing.T) {
	origin := newVersionedOrigin(t)
	regions := []string{"A", "B"}
	a := &region{name: "A"}
	b := &region{name: "B"}
	dirA, dirB := t.TempDir(), t.TempDir()
	a.nats, a.natsCfg = startRegionNATS(t, "A", -1, nil, dirA)
	b.nats, b.natsCfg = startRegionNATS(t, "B", 0, []string{natsserver.LeafURL(a.nats)}, dirB)
	startPurgeAPI(t, a, regions)
	startPurgeAPI(t, b, regions)
	const bound = 2 * time.Second
	for _, r := range []*region{a, b} {
		for i := 1; i <= 2; i++ {
			r.edges = append(r.edges, startNATSEdge(t, r, fmt.Sprintf("%s%d", strings.ToLower(r.name), i), origin.srv.URL, regions, bound))
		}
	}
	all := append(append([]*testEdge{}, a.edges...), b.edges...)
	for _, e := range all {
		testenv.Eventually(t, 20*time.Second, e.trusted, "edge %s never trusted its cache", e.name)
	}
	for _, e := range all {
		e.get(t, "/show/seg1.ts")
		if body, x := e.get(t, "/show/seg1.ts"); x != "HIT" || body != "/show/seg1.ts v1" {
			t.Fatalf("%s: %s %q (trusted %v)", e.name, x, body, e.trusted())
		}
	}

	// 1. A purge accepted in A, with wait, is applied by all four edges, each named.
	origin.version.Store(2)
	st := purgeVia(t, a.api, purge.Request{Target: purgereq.Target{URLs: []string{"/show/seg1.ts"}}, Wait: "5s"})
	if !st.Complete || len(st.Acks) != 4 {
		t.Fatalf("purge with wait: %d acks, missing %v", len(st.Acks), st.Missing)
	}
	for _, ack := range st.Acks {
		t.Logf("purge %s: edge %s (%s) applied after %.2f ms", st.ID, ack.Edge, ack.Region, ack.LatencyMS)
	}
	for _, e := range all {
		if body, _ := e.get(t, "/show/seg1.ts"); body != "/show/seg1.ts v2" {
			t.Fatalf("%s still serves %q after the purge", e.name, body)
		}
	}
	// The CLI prints one line per edge.
	var out strings.Builder
	if err := run(t.Context(), []string{"purge", "tag", "show", "--api", a.api, "--token", testToken, "--wait", "5s"}, &out, io.Discard, nil); err != nil {
		t.Fatalf("duet purge tag: %v\n%s", err, out.String())
	}
	for _, name := range []string{"a1", "a2", "b1", "b2"} {
		if !strings.Contains(out.String(), "\n"+name+" ") {
			t.Fatalf("CLI table lacks edge %s:\n%s", name, out.String())
		}
	}
	t.Logf("duet purge tag show --wait 5s:\n%s", out.String())
	if err := run(t.Context(), []string{"purge", "url", "/x", "--api", a.api}, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("CLI without a token: %v", err)
	}
	if err := run(t.Context(), []string{"purge", "url", "nope", "--api", a.api, "--token", testToken}, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("CLI with a bad URL: %v", err)
	}

	// 2. Cut region B off (its NATS stops). Purges accepted in A meanwhile: once B's edges have
	// passed their staleness bound they revalidate everything, so they never serve purged bytes.
	for _, e := range all {
		e.get(t, "/show/seg2.ts") // cache v2 everywhere
	}
	b.nats.Shutdown()
	b.nats.WaitForShutdown()
	cut := time.Now()
	origin.version.Store(3)
	st = purgeVia(t, a.api, purge.Request{Target: purgereq.Target{URLs: []string{"/show/seg2.ts"}}, Wait: "3s"})
	if len(st.Missing) != 2 {
		t.Fatalf("during the cut: missing %v, want B's two edges named", st.Missing)
	}
	for _, e := range b.edges {
		testenv.Eventually(t, 10*time.Second, func() bool { return !e.trusted() }, "%s kept trusting its cache while cut off", e.name)
		t.Logf("%s stopped trusting its cache %s after the cut", e.name, time.Since(cut).Round(time.Millisecond))
		if body, x := e.get(t, "/show/seg2.ts"); body != "/show/seg2.ts v3" {
			t.Fatalf("%s served purged bytes %q (%s) after its staleness bound", e.name, body, x)
		}
	}
	// 3. The link returns: B's edges apply the purge they missed and trust their caches again.
	healed := time.Now()
	var err error
	b.nats, err = natsserver.Start(t.Context(), b.natsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.nats.Shutdown)
	for _, e := range b.edges {
		testenv.Eventually(t, 60*time.Second, e.trusted, "%s never trusted its cache again after the link returned", e.name)
		t.Logf("%s trusted its cache again %s after the link returned", e.name, time.Since(healed).Round(time.Millisecond))
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		got, err := (&purge.Client{BaseURL: a.api, Token: testToken}).Get(t.Context(), st.ID)
		return err == nil && got.Complete
	}, "region A's API never received B's acknowledgements after the heal")
}

// twoRegions starts A (leafnode hub) and B (its leaf), a purge API in each, and two edges per
// region, and waits until every edge trusts its cache.
func twoRegions(t testing.TB, origin *versionedOrigin, bound time.Duration) (a, b *region, all []*testEdge) {
	t.Helper()
	regions := []string{"A", "B"}
	a, b = &region{name: "A"}, &region{name: "B"}
	a.nats, a.natsCfg = startRegionNATS(t, "A", -1, nil, t.TempDir())
	b.nats, b.natsCfg = startRegionNATS(t, "B", 0, []string{natsserver.LeafURL(a.nats)}, t.TempDir())
	startPurgeAPI(t, a, regions)
	startPurgeAPI(t, b, regions)
	for _, r := range []*region{a, b} {
		for i := 1; i <= 2; i++ {
			r.edges = append(r.edges, startNATSEdge(t, r, fmt.Sprintf("%s%d", strings.ToLower(r.name), i), origin.srv.URL, regions, bound))
		}
	}
	all = append(append(all, a.edges...), b.edges...)
	for _, e := range all {
		testenv.Eventually(t, 20*time.Second, e.trusted, "edge %s never trusted its cache", e.name)
	}
	return a, b, all
}

// TestPurgeWithRegionAGone: with region A's NATS and purge API gone entirely, purges through B
// still reach B's edges, and A's edges once A returns. A stopped edge is named as missing.
func TestPurgeWithRegionAGone(t *testing.T) {
	origin := newVersionedOrigin(t)
	a, b, all := twoRegions(t, origin, 2*time.Second)
	for _, e := range all {
		e.get(t, "/live/seg9.ts")
	}
	// A stopped edge is named as missing (its last heartbeat is still recent).
	a.edges[1].stop()
	st := purgeVia(t, b.api, purge.Request{Target: purgereq.Target{URLs: []string{"/nothing-cached"}}, Wait: "1s"})
	if len(st.Missing) != 1 || st.Missing[0] != "a2" || len(st.Acks) != 3 {
		t.Fatalf("with a2 stopped: acks %d, missing %v", len(st.Acks), st.Missing)
	}

	// Region A goes away: its purge API, then its NATS.
	a.stopAPI()
	a.nats.Shutdown()
	a.nats.WaitForShutdown()
	origin.version.Store(2)
	st = purgeVia(t, b.api, purge.Request{Target: purgereq.Target{URLs: []string{"/live/seg9.ts"}}, Wait: "3s"})
	acked := map[string]bool{}
	for _, ack := range st.Acks {
		acked[ack.Edge] = true
	}
	if !acked["b1"] || !acked["b2"] {
		t.Fatalf("with A gone, B's edges did not apply B's purge: acks %v missing %v", st.Acks, st.Missing)
	}
	for _, e := range b.edges {
		if body, _ := e.get(t, "/live/seg9.ts"); body != "/live/seg9.ts v2" {
			t.Fatalf("%s serves %q after the purge", e.name, body)
		}
	}
	// A returns: its stream sources B's purge, and a1 applies it before it trusts its cache.
	var err error
	a.nats, err = natsserver.Start(t.Context(), a.natsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.nats.Shutdown)
	back := time.Now()
	startPurgeAPI(t, a, []string{"A", "B"})
	a1 := a.edges[0]
	testenv.Eventually(t, 60*time.Second, a1.trusted, "a1 never trusted its cache after A returned")
	t.Logf("a1 trusted its cache again %s after A returned", time.Since(back).Round(time.Millisecond))
	if body, x := a1.get(t, "/live/seg9.ts"); body != "/live/seg9.ts v2" {
		t.Fatalf("a1 serves %q (%s) after A returned", body, x)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		got, err := (&purge.Client{BaseURL: b.api, Token: testToken}).Get(t.Context(), st.ID)
		if err != nil {
			return false
		}
		for _, ack := range got.Acks {
			if ack.Edge == "a1" {
				return true
			}
		}
		return false
	}, "a1's acknowledgement of B's purge never reached B's API")
}

// TestKilledEdgeNeverServesWhatWasPurgedMeanwhile: kill -9 an edge, purge objects it holds on
// disk while it is down, restart it: it never serves them (it revalidates everything until it
// has applied the purges it missed).
func TestKilledEdgeNeverServesWhatWasPurgedMeanwhile(t *testing.T) {
	origin := newVersionedOrigin(t)
	a := &region{name: "A"}
	a.nats, a.natsCfg = startRegionNATS(t, "A", 0, nil, t.TempDir())
	startPurgeAPI(t, a, []string{"A"})
	disk := t.TempDir()
	args := []string{"--name", "k1", "--region", "A", "--origin.type", "http", "--origin.endpoint", origin.srv.URL,
		"--disk.dir", disk, "--nats.urls", a.nats.ClientURL(), "--purge.regions", "A", "--purge.staleness_bound", "2s"}
	p := startEdgeProc(t, args...)
	ep := &testEdge{name: "k1", url: p.url, admin: p.admin}
	testenv.Eventually(t, 20*time.Second, ep.trusted, "edge never trusted its cache")
	paths := []string{"/vod/k/seg1.ts", "/vod/k/seg2.ts", "/vod/k/big.mp4"}
	for _, path := range paths {
		ep.get(t, path)
		if body, x := ep.get(t, path); x != "HIT" || !strings.HasSuffix(body, " v1") {
			t.Fatalf("%s: %s %q", path, x, body)
		}
	}
	p.kill9(t)
	origin.version.Store(2)
	st := purgeVia(t, a.api, purge.Request{Target: purgereq.Target{Prefixes: []string{"/vod/k/"}}, Wait: "1s"})
	if len(st.Missing) != 1 || st.Missing[0] != "k1" {
		t.Fatalf("the killed edge is not named missing: %v", st.Missing)
	}
	p = startEdgeProc(t, args...)
	ep = &testEdge{name: "k1", url: p.url, admin: p.admin}
	// From its first answer on, the restarted edge never serves the purged v1.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !ep.trusted(); {
		for _, path := range paths {
			if body, x := ep.get(t, path); !strings.HasSuffix(body, " v2") {
				t.Fatalf("restarted edge served %q (%s) for %s, purged while it was down", body, x, path)
			}
		}
	}
	testenv.Eventually(t, 20*time.Second, ep.trusted, "restarted edge never trusted its cache")
	for _, path := range paths {
		if body, _ := ep.get(t, path); !strings.HasSuffix(body, " v2") {
			t.Fatalf("%s: %q after catching up", path, body)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		got, err := (&purge.Client{BaseURL: a.api, Token: testToken}).Get(t.Context(), st.ID)
		return err == nil && got.Complete
	}, "the restarted edge's acknowledgement never arrived")
}
