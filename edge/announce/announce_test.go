package announce

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/testenv"
)

type fakeEdge struct{ serving atomic.Bool }

func (f *fakeEdge) Stats() Stats {
	return Stats{Serving: f.serving.Load(), Requests: 10, Hits: 9, Connections: 3}
}

type capture struct {
	mu   sync.Mutex
	subj []string
	hbs  []bus.Heartbeat
}

func (c *capture) Publish(subject string, data []byte) error {
	var hb bus.Heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		return err
	}
	c.mu.Lock()
	c.subj = append(c.subj, subject)
	c.hbs = append(c.hbs, hb)
	c.mu.Unlock()
	return nil
}

func (c *capture) last() (string, bus.Heartbeat, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hbs) == 0 {
		return "", bus.Heartbeat{}, 0
	}
	return c.subj[len(c.subj)-1], c.hbs[len(c.hbs)-1], len(c.hbs)
}

// TestDrainingIsAnnouncedAtOnce: the edge's switch to draining goes out without waiting for the
// next beat, and the announcer's last word is "draining".
func TestDrainingIsAnnouncedAtOnce(t *testing.T) {
	src := &fakeEdge{}
	src.serving.Store(true)
	pub := &capture{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	cfg := Config{Edge: "e1", Region: "eu", URL: "http://e1:8080", Interval: time.Hour, Capacity: 1000}
	go func() { done <- Run(ctx, pub, cfg, src, slog.New(slog.DiscardHandler)) }()
	testenv.Eventually(t, 5*time.Second, func() bool { _, hb, _ := pub.last(); return hb.State == "serving" }, "no first heartbeat")
	subj, hb, _ := pub.last()
	if subj != "duet.health.eu.e1" || hb.URL != "http://e1:8080" || hb.Capacity != 1000 || hb.Connections != 3 {
		t.Fatalf("heartbeat %s %+v", subj, hb)
	}
	src.serving.Store(false)
	testenv.Eventually(t, 5*time.Second, func() bool { _, hb, _ := pub.last(); return hb.State == "draining" }, "draining not announced before the next beat (an hour away)")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, hb, _ := pub.last(); hb.State != "draining" {
		t.Fatalf("last heartbeat %q", hb.State)
	}
}

func TestHeartbeatRates(t *testing.T) {
	prev := Stats{Requests: 100, Hits: 50, EgressBytes: 1000, OriginFetches: 10, OriginFailures: 0}
	cur := Stats{Serving: true, Requests: 300, Hits: 230, EgressBytes: 3000, OriginFetches: 20, OriginFailures: 3}
	hb := Heartbeat(Config{Edge: "e", Region: "r"}, cur, prev, 2*time.Second, time.Now())
	if hb.RequestsPerSec != 100 || hb.EgressBytesPerSec != 1000 || hb.HitRatio != 0.9 || !hb.OriginHealthy {
		t.Fatalf("%+v", hb)
	}
	cur.OriginFailures = 10 // 10 of the last 10 fetches failed
	if hb := Heartbeat(Config{}, cur, prev, time.Second, time.Now()); hb.OriginHealthy {
		t.Fatal("origin reported healthy with every fetch failing")
	}
}

// TestHeartbeatOrigins: an edge with fallback origins reports each one, and is origin-healthy
// while any of them is usable, even when no fetch in the interval showed the failure.
func TestHeartbeatOrigins(t *testing.T) {
	var origins []bus.OriginHealth
	cfg := Config{Edge: "e", Region: "r", Origins: func() []bus.OriginHealth { return origins }}
	idle := Stats{Serving: true}
	origins = []bus.OriginHealth{{Name: "eu", Healthy: false, State: "open"}, {Name: "us", Healthy: true, State: "closed"}}
	hb := Heartbeat(cfg, idle, idle, time.Second, time.Now())
	if !hb.OriginHealthy || len(hb.Origins) != 2 || hb.Origins[0].Name != "eu" || hb.Origins[0].State != "open" {
		t.Fatalf("primary open, fallback closed: %+v", hb)
	}
	origins[1].State, origins[1].Healthy = "half-open", false
	if hb := Heartbeat(cfg, idle, idle, time.Second, time.Now()); !hb.OriginHealthy {
		t.Fatal("a half-open origin (being tested) counts as usable")
	}
	origins[1].State = "open"
	if hb := Heartbeat(cfg, idle, idle, time.Second, time.Now()); hb.OriginHealthy {
		t.Fatal("origin reported healthy with every breaker open")
	}
	// Without a failover group the heartbeat carries no list, as before.
	if hb := Heartbeat(Config{Edge: "e", Region: "r"}, idle, idle, time.Second, time.Now()); hb.Origins != nil || !hb.OriginHealthy {
		t.Fatalf("single origin: %+v", hb)
	}
}

// TestHeartbeatCapacities: the configured capacities go out in every heartbeat; without them the
// fields are absent from the JSON (steering then takes the load as unknown in that dimension).
func TestHeartbeatCapacities(t *testing.T) {
	cfg := Config{Edge: "e", Region: "r", Capacity: 500, CapacityEgressBytesPerSec: 1.25e9, CapacityCPU: 3.5}
	hb := Heartbeat(cfg, Stats{Connections: 7}, Stats{}, time.Second, time.Now())
	if hb.Capacity != 500 || hb.CapacityEgressBytesPerSec != 1.25e9 || hb.CapacityCPU != 3.5 || hb.Connections != 7 {
		t.Fatalf("heartbeat %+v", hb)
	}
	b, _ := json.Marshal(Heartbeat(Config{Edge: "e", Region: "r"}, Stats{}, Stats{}, time.Second, time.Now()))
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	for _, k := range []string{"capacity", "capacity_egress_bytes_per_sec", "capacity_cpu"} {
		if _, ok := raw[k]; ok {
			t.Errorf("%s sent without a capacity configured: %s", k, b)
		}
	}
}

// TestSmootherRisesAtOnceFallsSlowly: a burst shows in full in the heartbeat after it; when it
// stops, the reported egress decays with EgressTau (about e⁻¹ after one), not at once.
func TestSmootherRisesAtOnceFallsSlowly(t *testing.T) {
	var s Smoother
	if got := s.Update(0, time.Second); got != 0 {
		t.Fatalf("idle: %v", got)
	}
	if got := s.Update(1e6, time.Second); got != 1e6 {
		t.Fatalf("burst reported as %v, want 1e6 at once", got)
	}
	var got float64
	for range 3 {
		got = s.Update(0, time.Second)
	}
	// After the burst, the average is 1e6·(1−e^(−1/3)); three quiet seconds multiply it by e⁻¹.
	want := 1e6 * (1 - math.Exp(-1.0/3)) * math.Exp(-1)
	if math.Abs(got-want) > 1 {
		t.Fatalf("3s after the burst: %v, want %v", got, want)
	}
	// A steady rate is reported as itself.
	for range 30 {
		got = s.Update(5e5, time.Second)
	}
	if math.Abs(got-5e5) > 1 {
		t.Fatalf("steady 5e5 reported as %v", got)
	}
	if got := s.Update(math.NaN(), time.Second); math.IsNaN(got) {
		t.Fatal("NaN rate leaked into the average")
	}
}

// TestRunSmoothsEgress: heartbeats from Run carry the smoothed egress: after the edge stops
// sending, the next heartbeats still report most of the rate it had.
func TestRunSmoothsEgress(t *testing.T) {
	src := &egressEdge{}
	pub := &capture{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, pub, Config{Edge: "e1", Region: "eu", URL: "http://e1:8080", Interval: 100 * time.Millisecond}, src, slog.New(slog.DiscardHandler))
	}()
	defer func() { cancel(); <-done }()
	// 10 MB within one interval, then nothing.
	testenv.Eventually(t, 5*time.Second, func() bool { _, _, n := pub.last(); return n >= 1 }, "no first heartbeat")
	src.bytes.Store(10e6)
	testenv.Eventually(t, 5*time.Second, func() bool { _, hb, _ := pub.last(); return hb.EgressBytesPerSec > 0 }, "the burst never showed")
	_, _, n := pub.last()
	testenv.Eventually(t, 5*time.Second, func() bool { _, _, m := pub.last(); return m >= n+2 }, "no heartbeats after the burst")
	// Two intervals of nothing later (0.2 s of a 3 s time constant), most of the average is left.
	if _, hb, _ := pub.last(); hb.EgressBytesPerSec <= 0 {
		t.Fatalf("egress reported as %v right after a burst: the average did not hold", hb.EgressBytesPerSec)
	}
}

type egressEdge struct{ bytes atomic.Int64 }

func (e *egressEdge) Stats() Stats { return Stats{Serving: true, EgressBytes: e.bytes.Load()} }
