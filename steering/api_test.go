package steering_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/steering"
	"github.com/duetcdn/duet/steering/geoip/geoiptest"
	"github.com/duetcdn/duet/steering/health"
)

// Test places: public ranges (the geoip package refuses documentation ranges) put near region
// A (Frankfurt) and region B (Washington).
const (
	nearA = "81.2.69.10"
	nearB = "216.160.83.20"
)

var places = []geoiptest.Place{
	{Network: "81.2.69.0/24", Country: "DE", Lat: 50.0, Lon: 8.5},
	{Network: "216.160.83.0/24", Country: "US", Lat: 39.0, Lon: -77.0},
}

// fakeClock is the test's time: it moves only when the test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeProber fails the URLs it is told to.
type fakeProber struct {
	mu   sync.Mutex
	fail map[string]bool
}

func (p *fakeProber) Probe(_ context.Context, u string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[u] {
		return errors.New("connection refused")
	}
	return nil
}

func (p *fakeProber) set(u string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[u] = fail
}

// recorder records published events.
type recorder struct {
	mu   sync.Mutex
	msgs []health.Change
	subj []string
}

func (r *recorder) Publish(subject string, data []byte) error {
	var c health.Change
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs, r.subj = append(r.msgs, c), append(r.subj, subject)
	return nil
}

type fixture struct {
	srv    *steering.Server
	h      http.Handler
	clock  *fakeClock
	probe  *fakeProber
	events *recorder
	reg    *prometheus.Registry
}

func testConfig() steering.Config {
	cfg := steering.DefaultConfig()
	cfg.Regions = []steering.Region{{Name: "A", Lat: 50.11, Lon: 8.68}, {Name: "B", Lat: 38.9, Lon: -77.04}}
	cfg.DefaultRegion = "A"
	cfg.TrustedProxies = []string{"10.0.0.0/8"}
	return cfg
}

func newFixture(t testing.TB, cfg steering.Config) *fixture {
	t.Helper()
	f := &fixture{clock: &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, probe: &fakeProber{fail: map[string]bool{}},
		events: &recorder{}, reg: prometheus.NewRegistry()}
	srv, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: f.reg,
		GeoIP: geoiptest.Open(t, places...), Prober: f.probe, Events: f.events, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	f.srv, f.h = srv, srv.Handler()
	return f
}

func edgeURL(name string) string { return "http://" + name + ".test:8080" }

func (f *fixture) beat(edges ...string) {
	for _, e := range edges {
		f.beatState(e, bus.StateServing, 3)
	}
}

func (f *fixture) beatState(edge, state string, conns int64) {
	f.srv.Observe(bus.Heartbeat{Edge: edge, Region: strings.ToUpper(edge[:1]), URL: edgeURL(edge), State: state,
		Connections: conns, RequestsPerSec: 100, HitRatio: 0.9, OriginHealthy: true})
}

// fourEdges: regions A and B with two edges each.
func fourEdges(t testing.TB) *fixture {
	f := newFixture(t, testConfig())
	f.beat("a1", "a2", "b1", "b2")
	return f
}

// get sends a request from a trusted proxy on behalf of client (X-Forwarded-For).
func (f *fixture) get(target, client string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = "10.0.0.1:40000"
	if client != "" {
		req.Header.Set("X-Forwarded-For", client)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

func (f *fixture) route(t *testing.T, path, client string) steering.RouteAnswer {
	t.Helper()
	w := f.get("/v1/route?path="+url.QueryEscape(path), client)
	if w.Code != http.StatusOK {
		t.Fatalf("route %s for %s: %d %s", path, client, w.Code, w.Body)
	}
	var a steering.RouteAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func names(a steering.RouteAnswer) []string {
	var out []string
	for _, e := range a.Edges {
		out = append(out, e.Name)
	}
	return out
}

func TestEmptyTableAnswers503NeverARedirect(t *testing.T) {
	f := newFixture(t, testConfig())
	for _, target := range []string{"/v1/route?path=/vod/a/1.ts", "/r/vod/a/1.ts", "/v1/steer/hls?path=/vod/a/m.m3u8", "/v1/steer/dash", "/readyz"} {
		w := f.get(target, nearA)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "no edges known") {
			t.Errorf("%s: %d %q location %q", target, w.Code, w.Body, w.Header().Get("Location"))
		}
	}
	// Every edge down: 503 too, with the other reason.
	f.beat("a1")
	f.clock.Add(4 * time.Second)
	f.srv.Check(t.Context())
	w := f.get("/r/vod/a/1.ts", nearA)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "no healthy edge") {
		t.Fatalf("all down: %d %s", w.Code, w.Body)
	}
}

func TestViewersGoToTheNearestRegion(t *testing.T) {
	f := fourEdges(t)
	for _, tc := range []struct {
		client, region, reason string
		located                bool
	}{
		{nearA, "A", "nearest", true},
		{nearB, "B", "nearest", true},
		{"192.168.7.7", "A", "default-region", false}, // private: the default region
		{"8.8.8.8", "A", "default-region", false},     // not in the test database
	} {
		a := f.route(t, "/vod/show/720p/1.ts", tc.client)
		if a.Region != tc.region || a.Reason != tc.reason || a.Located != tc.located || a.Client != tc.client {
			t.Errorf("%s: %+v", tc.client, a)
		}
		if len(a.Edges) != 4 || a.Edges[0].Region != tc.region || a.Edges[1].Region != tc.region || a.Edges[2].Region == tc.region {
			t.Errorf("%s: edges %+v, want both of %s then the other region", tc.client, a.Edges, tc.region)
		}
		if a.Edges[0].URL != edgeURL(a.Edges[0].Name) || a.Key != "/vod/show" {
			t.Errorf("%s: %+v", tc.client, a)
		}
	}
	// Without a trusted proxy, X-Forwarded-For is ignored: the peer is the client.
	req := httptest.NewRequest(http.MethodGet, "/v1/route?path=/vod/x/1.ts", nil)
	req.RemoteAddr = nearB + ":5000"
	req.Header.Set("X-Forwarded-For", nearA)
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	if !strings.Contains(w.Body.String(), `"region":"B"`) {
		t.Fatalf("untrusted X-Forwarded-For was believed: %s", w.Body)
	}
}

func TestOneStreamOneEdge(t *testing.T) {
	f := fourEdges(t)
	used := map[string]int{}
	for s := range 40 {
		var first string
		for _, p := range []string{"master.m3u8", "720p/index.m3u8", "720p/seg1.ts", "1080p/seg9.ts"} {
			a := f.route(t, fmt.Sprintf("/vod/stream%d/%s", s, p), nearA)
			if first == "" {
				first = a.Edges[0].Name
			} else if a.Edges[0].Name != first {
				t.Fatalf("stream %d: %s went to %s, its stream to %s", s, p, a.Edges[0].Name, first)
			}
		}
		used[first]++
	}
	if used["a1"] == 0 || used["a2"] == 0 {
		t.Fatalf("40 streams all on one edge: %v", used)
	}
	// Deterministic: the same answer from another instance that saw the same heartbeats.
	g := fourEdges(t)
	for s := range 10 {
		p := fmt.Sprintf("/vod/stream%d/seg.ts", s)
		if x, y := names(f.route(t, p, nearB)), names(g.route(t, p, nearB)); !slices.Equal(x, y) {
			t.Fatalf("%s: %v vs %v", p, x, y)
		}
	}
	t.Logf("40 streams over A's edges: %v", used)
}

func TestRedirect(t *testing.T) {
	f := fourEdges(t)
	a := f.route(t, "/vod/show/720p/seg 1.ts", nearB)
	w := f.get("/r/vod/show/720p/seg%201.ts?token=abc", nearB)
	if w.Code != http.StatusFound {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if got, want := w.Header().Get("Location"), a.Edges[0].URL+"/vod/show/720p/seg%201.ts?token=abc"; got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Duet-Reason") != "nearest" {
		t.Fatalf("headers %v", w.Header())
	}
}

func TestBadInputIs400WithAReason(t *testing.T) {
	f := fourEdges(t)
	for _, tc := range []struct{ target, xff, want string }{
		{"/v1/route", nearA, "path is required"},
		{"/v1/route?path=vod/a.ts", nearA, "does not start with /"},
		{"/v1/route?path=/vod/../etc/passwd", nearA, `".." segment`},
		{"/v1/route?path=/vod//a.ts", nearA, "empty segment"},
		{"/v1/route?path=/a&path=/b", nearA, "more than once"},
		{"/v1/route?path=/vod/a%00.ts", nearA, "control character"},
		{"/v1/route?path=%zz", nearA, "malformed query"},
		{"/v1/route?path=/vod/a.ts", "not-an-ip", "X-Forwarded-For"},
		{"/r/vod/a.ts", "999.1.1.1, 10.0.0.2", "X-Forwarded-For"},
		{"/v1/steer/hls?_HLS_throughput=fast", nearA, "_HLS_throughput"},
		{"/v1/steer/hls?_HLS_pathway=bad%20id", nearA, "_HLS_pathway"},
		{"/v1/steer/hls?path=relative", nearA, "does not start with /"},
		{"/v1/steer/dash?_DASH_throughput=1,2,3&_DASH_pathway=A", nearA, "_DASH_throughput"},
		{"/v1/steer/dash?_DASH_pathway=%22A,B%22&_DASH_throughput=-5", nearA, "_DASH_throughput"},
	} {
		w := f.get(tc.target, tc.xff)
		var body struct{ Error string }
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusBadRequest || !strings.Contains(body.Error, tc.want) {
			t.Errorf("%s (xff %q): %d %q, want 400 mentioning %q", tc.target, tc.xff, w.Code, w.Body, tc.want)
		}
	}
}

func TestMissedHeartbeatsDrainingAndProbes(t *testing.T) {
	f := fourEdges(t)
	has := func(edge string) bool {
		for s := range 30 {
			if slices.Contains(names(f.route(t, fmt.Sprintf("/vod/s%d/1.ts", s), nearA)), edge) {
				return true
			}
		}
		return false
	}
	// 1. a1 stops sending heartbeats; the others keep on. 3 s later it is still there, after
	// that it is gone from every answer.
	for range 3 {
		f.clock.Add(time.Second)
		f.beat("a2", "b1", "b2")
		f.srv.Check(t.Context())
	}
	if !has("a1") {
		t.Fatal("a1 gone after 3 s of silence, before a 4th missed heartbeat")
	}
	f.clock.Add(500 * time.Millisecond)
	f.beat("a2", "b1", "b2")
	f.srv.Check(t.Context())
	if has("a1") {
		t.Fatal("a1 still answered after 3 missed heartbeats")
	}
	// Back with its next heartbeat.
	f.beat("a1")
	if !has("a1") {
		t.Fatal("a1 not back after a heartbeat")
	}

	// 2. a2 drains: it gets no new viewers, and its streams go to a1 (same region).
	f.beatState("a2", bus.StateDraining, 50)
	for s := range 30 {
		a := f.route(t, fmt.Sprintf("/vod/s%d/1.ts", s), nearA)
		if slices.Contains(names(a), "a2") || a.Edges[0].Name != "a1" {
			t.Fatalf("draining a2 in an answer: %v (%s)", names(a), a.Reason)
		}
	}
	f.beat("a2")

	// 3. b1 fails its probes (still sending heartbeats): gone after the second failure.
	f.probe.set(edgeURL("b1"), true)
	f.srv.Check(t.Context())
	if a := f.route(t, "/vod/x/1.ts", nearB); !slices.Contains(names(a), "b1") {
		t.Fatal("b1 gone after one failed probe")
	}
	f.srv.Check(t.Context())
	for s := range 30 {
		if a := f.route(t, fmt.Sprintf("/vod/s%d/1.ts", s), nearB); slices.Contains(names(a), "b1") {
			t.Fatalf("b1 answered after 2 failed probes: %v", names(a))
		}
	}
	f.probe.set(edgeURL("b1"), false)
	f.srv.Check(t.Context())
	if !slices.Contains(names(f.route(t, "/vod/x/1.ts", nearB)), "b1") {
		t.Fatal("b1 not back after answering a probe")
	}

	// 4. All of A down: A's viewers go to B.
	f.probe.set(edgeURL("a1"), true)
	f.probe.set(edgeURL("a2"), true)
	f.srv.Check(t.Context())
	f.srv.Check(t.Context())
	a := f.route(t, "/vod/x/1.ts", nearA)
	if a.Region != "B" || a.Reason != "spill-unhealthy" || len(a.Edges) != 2 {
		t.Fatalf("A down: %+v", a)
	}

	// The changes were published on duet.events.edge and counted.
	f.events.mu.Lock()
	defer f.events.mu.Unlock()
	var downs []string
	for i, c := range f.events.msgs {
		if f.events.subj[i] != bus.EventSubject("edge") {
			t.Fatalf("published on %s", f.events.subj[i])
		}
		if c.To == "down" {
			downs = append(downs, c.Edge+":"+c.Reason)
		}
	}
	want := []string{"a1:missed-heartbeats", "b1:failed-probes", "a1:failed-probes", "a2:failed-probes"}
	if !slices.Equal(downs, want) {
		t.Fatalf("down events %v, want %v", downs, want)
	}
}

func TestTopologyStatusAndMetrics(t *testing.T) {
	f := fourEdges(t)
	f.probe.set(edgeURL("b2"), true)
	f.srv.Check(t.Context())
	f.srv.Check(t.Context())
	w := f.get("/v1/topology", "")
	var top steering.Topology
	if err := json.Unmarshal(w.Body.Bytes(), &top); err != nil || w.Code != 200 {
		t.Fatalf("%d %s %v", w.Code, w.Body, err)
	}
	if len(top.Regions) != 2 || top.Regions[0].Name != "A" || top.Regions[0].Health != "up" || top.Regions[1].Health != "degraded" {
		t.Fatalf("regions: %+v", top.Regions)
	}
	b2 := top.Regions[1].Edges[1]
	if b2.Name != "b2" || b2.State != "down" || b2.DownReason != "failed-probes" || b2.FailedProbes != 2 || b2.Announced != "serving" {
		t.Fatalf("b2: %+v", b2)
	}
	if r := top.Regions[0]; r.EdgesUp != 2 || r.Load != 6 || r.HitRatio < 0.89 || r.HitRatio > 0.91 {
		t.Fatalf("A: %+v", r)
	}
	w = f.get("/", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "v1/topology") || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status page: %d %s", w.Code, w.Header())
	}
	if w := f.get("/nope", ""); w.Code != 404 {
		t.Fatalf("/nope: %d", w.Code)
	}
	f.route(t, "/vod/a/1.ts", nearA)
	f.route(t, "/vod/a/1.ts", "192.168.1.1")
	w = f.get("/metrics", "")
	body := w.Body.String()
	for _, want := range []string{
		`duet_steering_decisions_total{api="route",reason="nearest"} 1`,
		`duet_steering_decisions_total{api="route",reason="default-region"} 1`,
		`duet_steering_geoip_misses_total 1`,
		`duet_steering_edges{state="up"} 3`,
		`duet_steering_edges{state="down"} 1`,
		`duet_steering_edge_transitions_total{to="down"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if w := f.get("/healthz", ""); w.Code != 200 {
		t.Fatal("healthz")
	}
	if w := f.get("/readyz", ""); w.Code != 200 {
		t.Fatal("readyz with edges up")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*steering.Config)
		want string
	}{
		{func(c *steering.Config) { c.Regions = nil }, "at least one region"},
		{func(c *steering.Config) { c.Regions[1].Name = "A" }, "listed twice"},
		{func(c *steering.Config) { c.Regions[0].Lat = 91 }, "latitude"},
		{func(c *steering.Config) { c.Regions[0].Name = "a.b" }, "name"},
		{func(c *steering.Config) { c.DefaultRegion = "C" }, "default_region"},
		{func(c *steering.Config) { c.TrustedProxies = []string{"10.0.0.0/99"} }, "trusted_proxies"},
		{func(c *steering.Config) { c.ManifestTTL = time.Millisecond }, "manifest_ttl"},
		{func(c *steering.Config) { c.BasePathway = "A" }, "base_pathway"},
		{func(c *steering.Config) { c.Listen = "nope" }, "listen"},
		{func(c *steering.Config) { c.ProbeInterval = -time.Second }, "probe_interval"},
		{func(c *steering.Config) { c.ProbePath = "readyz" }, "probe_path"},
		{func(c *steering.Config) { c.BalancePercent = 90 }, "balance_percent"},
		{func(c *steering.Config) { c.BalanceFloorPercent = 101 }, "balance_floor_percent"},
		{func(c *steering.Config) { c.ViewerBytesPerSec = -1 }, "viewer_bytes_per_sec"},
	} {
		cfg := testConfig()
		tc.edit(&cfg)
		_, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
		if !errors.Is(err, steering.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q: %v", tc.want, err)
		}
	}
	var r steering.Region
	if err := r.UnmarshalText([]byte("us:38.9:-77.04")); err != nil || r.Name != "us" || r.Lon != -77.04 {
		t.Fatalf("%+v %v", r, err)
	}
	if err := r.UnmarshalText([]byte("eu:DE")); err != nil || r.Lat < 47 || r.Lat > 55 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"x", "x:1", "x:1:y", "x:ZZ"} {
		if err := r.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func BenchmarkRouteHandler(b *testing.B) {
	f := fourEdges(b)
	paths := make([]string, 256)
	for i := range paths {
		paths[i] = fmt.Sprintf("/v1/route?path=/vod/title-%d/720p/seg-%d.ts", i, i*7)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		req := httptest.NewRequest(http.MethodGet, paths[0], nil)
		req.RemoteAddr = "10.0.0.1:40000"
		req.Header.Set("X-Forwarded-For", nearA)
		for pb.Next() {
			r := req.Clone(context.Background())
			r.URL, _ = url.Parse(paths[i%len(paths)])
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
			_, _ = io.Copy(io.Discard, w.Body)
			i++
		}
	})
}

// A signed URL's path form goes to its stream's edge (the token is not part of the content
// key, so viewers with different tokens share the edge's cache) and keeps its token in the
// Location; so does the query form.
func TestRedirectKeepsSignedURLToken(t *testing.T) {
	f := fourEdges(t)
	plain := f.route(t, "/vod/show/master.m3u8", nearB)
	for _, tok := range []string{"1.k1.2000000000.L3ZvZC9zaG93Lw..abc", "1.k2.2000000001.L3ZvZC8.10.0.0.1.xyz"} {
		a := f.route(t, "/_t/"+tok+"/vod/show/master.m3u8", nearB)
		if a.Edges[0].Name != plain.Edges[0].Name || a.Key != plain.Key {
			t.Fatalf("token %s: edge %s key %s, the stream's are %s %s", tok, a.Edges[0].Name, a.Key, plain.Edges[0].Name, plain.Key)
		}
		w := f.get("/r/_t/"+tok+"/vod/show/master.m3u8", nearB)
		if got, want := w.Header().Get("Location"), plain.Edges[0].URL+"/_t/"+tok+"/vod/show/master.m3u8"; w.Code != http.StatusFound || got != want {
			t.Fatalf("%d Location %q, want %q", w.Code, got, want)
		}
		w = f.get("/r/vod/show/master.m3u8?duet_token="+tok, nearB)
		if got, want := w.Header().Get("Location"), plain.Edges[0].URL+"/vod/show/master.m3u8?duet_token="+tok; got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
	}
}
