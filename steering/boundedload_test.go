package steering_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/steering"
	"github.com/duetcdn/duet/steering/geoip/geoiptest"
	"github.com/duetcdn/duet/steering/manifest"
)

// simEdge is an edge as steering sees it through NATS: it announces itself every interval, with
// the viewers the test sent to it as its connections and their egress (bitrate each), and the
// capacities it is given.
type simEdge struct {
	name, region string
	viewers      atomic.Int64
	capConns     int64
	capEgress    float64
}

func (e *simEdge) heartbeat(bitrate float64) bus.Heartbeat {
	n := e.viewers.Load()
	return bus.Heartbeat{Edge: e.name, Region: e.region, URL: edgeURL(e.name), State: bus.StateServing, At: time.Now().UTC(),
		Connections: n, Capacity: e.capConns, CapacityEgressBytesPerSec: e.capEgress, EgressBytesPerSec: float64(n) * bitrate,
		RequestsPerSec: float64(n), OriginHealthy: true}
}

// crowdRun is one flash crowd against a steering service that hears simulated edges' heartbeats
// over a real embedded NATS.
type crowdRun struct {
	edges []*simEdge
	// spillAt is, per edge, how many viewers it had when the first viewer went to region B
	// (nil: none did).
	spillAt map[string]int64
	inB     int64
}

// flashCrowdSteering starts NATS, a steering service on loopback and the edges (4 in region A,
// 2 in B with room), then sends `viewers` viewers near A for one stream, `workers` at a time,
// each to the first edge of its /v1/route answer, which counts it from then on.
func flashCrowdSteering(t *testing.T, viewers int, capConns int64, capEgress, bitrate float64) crowdRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ns, err := natsserver.Start(ctx, natsserver.Config{Region: "A", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	steerNC, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(steerNC.Close)
	edgeNC, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edgeNC.Close)

	cfg := testConfig()
	cfg.TrustedProxies = []string{"127.0.0.1/32"}
	cfg.ViewerBytesPerSec = int(bitrate)
	srv, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		GeoIP: geoiptest.Open(t, places...), Prober: &fakeProber{fail: map[string]bool{}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx, steerNC, ln) }()
	defer func() { cancel(); <-ran }()

	var run crowdRun
	for _, n := range []string{"a1", "a2", "a3", "a4"} {
		run.edges = append(run.edges, &simEdge{name: n, region: "A", capConns: capConns, capEgress: capEgress})
	}
	for _, n := range []string{"b1", "b2"} {
		run.edges = append(run.edges, &simEdge{name: n, region: "B", capConns: 100_000, capEgress: 100_000 * bitrate})
	}
	byName := map[string]*simEdge{}
	for _, e := range run.edges {
		byName[e.name] = e
	}
	// Heartbeats every second (steering's default interval), as edges send them.
	beat := func() {
		for _, e := range run.edges {
			b, _ := json.Marshal(e.heartbeat(bitrate))
			if err := edgeNC.Publish(bus.HealthSubject(e.region, e.name), b); err != nil {
				t.Error(err)
			}
		}
	}
	beat()
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				beat()
			}
		}
	}()
	defer func() { cancel(); <-beating }()

	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	// Wait (bounded) until steering knows every edge.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var topo steering.Topology
		if resp, err := client.Get(base + "/v1/topology"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&topo)
			_ = resp.Body.Close()
		}
		up := 0
		for _, r := range topo.Regions {
			up += r.EdgesUp
		}
		if up == len(run.edges) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("steering knows %d of %d edges after 10s", up, len(run.edges))
		}
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polling interval while steering hears the first heartbeats
	}

	const workers = 8
	var mu sync.Mutex // guards run.spillAt, run.inB
	var next atomic.Int64
	var wg sync.WaitGroup
	target := base + "/v1/route?path=" + url.QueryEscape("/live/final/master.m3u8")
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(viewers) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
				req.Header.Set("X-Forwarded-For", nearA)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var a steering.RouteAnswer
				err = json.NewDecoder(resp.Body).Decode(&a)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || len(a.Edges) == 0 {
					t.Errorf("route: %d %v %+v", resp.StatusCode, err, a)
					return
				}
				e := byName[a.Edges[0].Name]
				if e.region == "B" {
					mu.Lock()
					if run.spillAt == nil {
						run.spillAt = map[string]int64{}
						for _, o := range run.edges {
							run.spillAt[o.name] = o.viewers.Load()
						}
					}
					run.inB++
					mu.Unlock()
				}
				e.viewers.Add(1) // the viewer is now connected there
			}
		})
	}
	wg.Wait()
	return run
}

// check asserts acceptance 2 on the region A edges: at least 3 serve, the busiest at most
// 1.3 × the average of the region's edges, none more than 10 % over capa viewers.
func (r crowdRun) check(t *testing.T, capa int64) (counts string) {
	t.Helper()
	var total, busiest int64
	serving := 0
	for _, e := range r.edges[:4] {
		n := e.viewers.Load()
		counts += fmt.Sprintf("%s:%d ", e.name, n)
		total += n
		busiest = max(busiest, n)
		if n > 0 {
			serving++
		}
		if float64(n) > 1.1*float64(capa) {
			t.Errorf("%s serves %d viewers, more than 10%% over its capacity of %d", e.name, n, capa)
		}
	}
	avg := float64(total) / 4
	if serving < 3 {
		t.Errorf("%d edges of region A serve the crowd, want at least 3", serving)
	}
	if float64(busiest) > 1.3*avg {
		t.Errorf("busiest edge serves %d, more than 1.3 × the average %.0f", busiest, avg)
	}
	return counts + fmt.Sprintf("B:%d", r.inB)
}

// TestFlashCrowdBoundedLoad is acceptance 2 of issue 15 at the steering level, with real
// heartbeats over NATS and real HTTP: 2,000 viewers of one stream, arriving faster than the
// edges' heartbeats, spread over region A's edges within the balance bound and their capacity
// (counted in connections), and none goes to region B while A has room.
func TestFlashCrowdBoundedLoad(t *testing.T) {
	const viewers, capa = 2000, 700
	r := flashCrowdSteering(t, viewers, capa, 0, 625_000)
	counts := r.check(t, capa)
	if r.inB != 0 {
		t.Errorf("%d viewers went to region B while A had room", r.inB)
	}
	t.Logf("viewers per edge: %s", counts)
}

// TestFlashCrowdSpillsWhenRegionFull: the same crowd with region A's capacity (in egress: 400
// viewers' worth per edge, 1,600 in all) under the crowd: A's edges fill to their capacity and
// not past it by more than 10 %, and the first viewer goes to region B only once every A edge is
// full (within the few viewers in flight when a heartbeat lands).
func TestFlashCrowdSpillsWhenRegionFull(t *testing.T) {
	const viewers, capa, bitrate = 2000, 400, 625_000
	r := flashCrowdSteering(t, viewers, 100_000, capa*bitrate, bitrate)
	counts := r.check(t, capa)
	if r.inB == 0 || r.spillAt == nil {
		t.Fatalf("no viewer went to region B though A is full: %s", counts)
	}
	for _, e := range r.edges[:4] {
		if at := r.spillAt[e.name]; float64(at) < 0.95*capa {
			t.Errorf("the first viewer went to B while %s had %d viewers of its %d", e.name, at, capa)
		}
	}
	if r.inB < viewers-4*capa*1.1 {
		t.Errorf("%d viewers in B: A took more than its capacity (%s)", r.inB, counts)
	}
	t.Logf("viewers per edge: %s; when the first went to B: %v", counts, r.spillAt)
}

// TestLoadUnknownIsNeverOverloaded: an edge whose heartbeat announces no capacity (as edges
// before issue 15 may, when edge_capacity is not set either) has an unknown load: steering keeps
// its streams on it whatever it sends there, and the topology says "unknown" (-1). With a
// connection capacity in the heartbeat, steering counts the viewers it sends until the next
// heartbeat: the same crowd then moves on, and the topology shows the estimated load.
func TestLoadUnknownIsNeverOverloaded(t *testing.T) {
	f := fourEdges(t) // heartbeats without any capacity, 3 connections each
	const path = "/live/final/master.m3u8"
	first := f.route(t, path, nearA).Edges[0].Name
	for range 500 {
		if got := f.route(t, path, nearA).Edges[0].Name; got != first {
			t.Fatalf("a stream moved from %s to %s though no load is known", first, got)
		}
	}
	for _, r := range f.srv.Topology().Regions {
		for _, e := range r.Edges {
			if e.Load != -1 {
				t.Errorf("%s: load %v, want -1 (unknown)", e.Name, e.Load)
			}
		}
	}

	for _, e := range []string{"a1", "a2"} {
		f.srv.Observe(bus.Heartbeat{Edge: e, Region: "A", URL: edgeURL(e), State: bus.StateServing, Connections: 0, Capacity: 100})
	}
	seen := map[string]int{}
	for range 100 {
		seen[f.route(t, path, nearA).Edges[0].Name]++
	}
	// The stream's edge takes up to 1.25 × the average (62.5 of 100), the other the rest.
	if seen["a1"]+seen["a2"] != 100 || max(seen["a1"], seen["a2"]) > 63 {
		t.Fatalf("100 viewers between two edges of 100 connections: %v", seen)
	}
	for _, e := range f.srv.Topology().Regions[0].Edges {
		if want := float64(seen[e.Name]) / 100; math.Abs(e.Load-want) > 1e-9 {
			t.Errorf("%s: estimated load %v, want %v", e.Name, e.Load, want)
		}
	}
	// A heartbeat replaces the estimate with what the edge reports.
	f.srv.Observe(bus.Heartbeat{Edge: "a1", Region: "A", URL: edgeURL("a1"), State: bus.StateServing, Connections: 10, Capacity: 100})
	if e := f.srv.Topology().Regions[0].Edges[0]; e.Name != "a1" || e.Load != 0.1 {
		t.Errorf("after a heartbeat: %s load %v, want a1 0.1", e.Name, e.Load)
	}
}

// TestSteeringMovesCountAsViewers: a player that a steering manifest moves to another edge is
// counted on that edge until its next heartbeat; a player that stays where it is is not counted
// again (its connection is in its edge's heartbeat already).
func TestSteeringMovesCountAsViewers(t *testing.T) {
	f := newFixture(t, testConfig())
	for _, e := range []string{"a1", "a2", "b1", "b2"} {
		f.srv.Observe(bus.Heartbeat{Edge: e, Region: strings.ToUpper(e[:1]), URL: edgeURL(e), State: bus.StateServing, Capacity: 100})
	}
	load := func() map[string]float64 {
		out := map[string]float64{}
		for _, r := range f.srv.Topology().Regions {
			for _, e := range r.Edges {
				out[e.Name] = e.Load
			}
		}
		return out
	}
	const path = "/live/show/master.m3u8"
	// Near A, reloading while on b1 (not the session's first answer): moved to A.
	d, _ := f.steer(t, "/v1/steer/hls?path="+path+"&base=b1&_HLS_pathway=b1&duet_pathway=b1", nearA, manifest.ContentTypeHLS)
	to := d.Priority[0]
	if !strings.HasPrefix(to, "a") {
		t.Fatalf("player near A on b1 not moved to A: %v", d.Priority)
	}
	if l := load(); math.Abs(l[to]-0.01) > 1e-9 || l["b1"] != 0 {
		t.Fatalf("after a move to %s: loads %v, want %s at 0.01 (one viewer of 100)", to, l, to)
	}
	// The same player, now on that edge, reloads: it stays, and is not counted again.
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&base=b1&_HLS_pathway="+to+"&duet_pathway="+to, nearA, manifest.ContentTypeHLS)
	if d.Priority[0] != to {
		t.Fatalf("player on %s moved again: %v", to, d.Priority)
	}
	if l := load(); math.Abs(l[to]-0.01) > 1e-9 {
		t.Fatalf("a player that stayed was counted again: %v", l)
	}
}

// TestFullRegionKeepsItsViewers: when region A is full, new viewers near A go to B, but a
// player already on an A edge stays there on its steering reloads: moving every viewer of a
// full region would empty it, and the next reloads would fill it again.
func TestFullRegionKeepsItsViewers(t *testing.T) {
	f := newFixture(t, testConfig())
	for _, e := range []string{"a1", "a2", "b1", "b2"} {
		conns := int64(0)
		if e[0] == 'a' {
			conns = 100 // at capacity
		}
		f.srv.Observe(bus.Heartbeat{Edge: e, Region: strings.ToUpper(e[:1]), URL: edgeURL(e), State: bus.StateServing, Connections: conns, Capacity: 100})
	}
	const path = "/live/show/master.m3u8"
	if a := f.route(t, path, nearA); a.Region != "B" || a.Reason != "spill-load" {
		t.Fatalf("a new viewer near A with A full went to %s (%s)", a.Region, a.Reason)
	}
	d, _ := f.steer(t, "/v1/steer/hls?path="+path+"&base=a1&_HLS_pathway=a1&duet_pathway=a1", nearA, manifest.ContentTypeHLS)
	if d.Priority[0] != "a1" || !strings.HasPrefix(d.Priority[1], "b") {
		t.Fatalf("a player on a1 in the full region A, reloading: PATHWAY-PRIORITY %v, want a1 first then B", d.Priority)
	}
}

// FuzzHeartbeatLoad: whatever load and capacities a heartbeat claims (it comes from the
// network), steering still answers with every edge, and the load it shows is -1 (unknown) or a
// finite, non-negative utilisation, also after counting viewers sent to the edge.
func FuzzHeartbeatLoad(f *testing.F) {
	f.Add(int64(3), int64(100), 1e6, 1e9, 0.5, 4.0)
	f.Add(int64(0), int64(0), 0.0, 0.0, 0.0, 0.0)
	f.Add(int64(-5), int64(-1), -1.0, -1e9, -2.0, -1.0)
	f.Add(int64(1<<62), int64(1), 1e308, 1e-308, 1e308, 1e-308)
	f.Add(int64(1), int64(1<<62), 1e-308, 1e308, 1e-308, 1e308)
	f.Fuzz(func(t *testing.T, conns, capConns int64, egress, capEgress, cpu, capCPU float64) {
		f := newFixture(t, testConfig())
		f.beat("a2", "b1")
		f.srv.Observe(bus.Heartbeat{Edge: "a1", Region: "A", URL: edgeURL("a1"), State: bus.StateServing, Connections: conns,
			Capacity: capConns, EgressBytesPerSec: egress, CapacityEgressBytesPerSec: capEgress, CPU: cpu, CapacityCPU: capCPU})
		for range 3 {
			w := f.get("/v1/route?path=/live/x/seg.ts", nearA)
			var a steering.RouteAnswer
			if err := json.Unmarshal(w.Body.Bytes(), &a); w.Code != http.StatusOK || err != nil || len(a.Edges) != 3 {
				t.Fatalf("route: %d %s", w.Code, w.Body)
			}
		}
		for _, r := range f.srv.Topology().Regions {
			for _, e := range r.Edges {
				if e.Load != -1 && (math.IsNaN(e.Load) || math.IsInf(e.Load, 0) || e.Load < 0) {
					t.Fatalf("%s: load %v", e.Name, e.Load)
				}
			}
		}
	})
}
