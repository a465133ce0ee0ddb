package announce

import (
	"context"
	"encoding/json"
	"log/slog"
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
