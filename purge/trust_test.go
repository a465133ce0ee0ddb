package purge

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// trustRecorder is an Applier that records what the consumer tells it about trust.
type trustRecorder struct {
	mu    sync.Mutex
	calls []bool
}

func (r *trustRecorder) ApplyPurge(context.Context, bus.Purge) (int, error) { return 0, nil }
func (r *trustRecorder) SetCacheTrusted(v bool) {
	r.mu.Lock()
	r.calls = append(r.calls, v)
	r.mu.Unlock()
}
func (r *trustRecorder) told() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.calls...)
}

type testConsumerMetrics struct {
	reg           *prometheus.Registry
	applied, lost prometheus.Counter
	lag           prometheus.Histogram
	trusted       prometheus.Gauge
}

func newTestConsumerMetrics() *testConsumerMetrics {
	m := &testConsumerMetrics{
		reg:     prometheus.NewRegistry(),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "applied"}),
		lost:    prometheus.NewCounter(prometheus.CounterOpts{Name: "lost"}),
		lag:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lag"}),
		trusted: prometheus.NewGauge(prometheus.GaugeOpts{Name: "trusted"}),
	}
	m.reg.MustRegister(m.applied, m.lost, m.lag, m.trusted)
	return m
}

// value reads a counter's or gauge's value by name.
func (m *testConsumerMetrics) value(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			x := mf.GetMetric()[0]
			return x.GetGauge().GetValue() + x.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (m *testConsumerMetrics) PurgesApplied() prometheus.Counter  { return m.applied }
func (m *testConsumerMetrics) PurgeLag() prometheus.Observer      { return m.lag }
func (m *testConsumerMetrics) CacheTrusted() prometheus.Gauge     { return m.trusted }
func (m *testConsumerMetrics) CacheTrustLost() prometheus.Counter { return m.lost }

// TestConsumerTrust drives evaluate and setTrusted with a clock the test holds, over a real
// embedded NATS with two regions' purge streams: the cache is trusted only while every region's
// latest tick is within the staleness bound, and the applier hears of each change once.
func TestConsumerTrust(t *testing.T) {
	// Two regions linked as in production (B a leafnode of A): A's stream sources B's ticks.
	a, err := natsserver.Start(t.Context(), natsserver.Config{Region: "A", Port: -1, LeafPort: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	b, err := natsserver.Start(t.Context(), natsserver.Config{Region: "B", Port: -1, StoreDir: t.TempDir(),
		LeafRemotes: []string{natsserver.LeafURL(a)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	for deadline := time.Now().Add(10 * time.Second); a.NumLeafNodes() == 0; time.Sleep(10 * time.Millisecond) { //nolint:forbidigo // the poll interval of a deadline loop
		if time.Now().After(deadline) {
			t.Fatal("B never linked to A")
		}
	}
	js := map[string]jetstream.JetStream{}
	var nc *nats.Conn
	for _, r := range []struct {
		name, other string
		url         string
	}{{"A", "B", a.ClientURL()}, {"B", "A", b.ClientURL()}} {
		conn, err := nats.Connect(r.url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		if js[r.name], err = jetstream.New(conn); err != nil {
			t.Fatal(err)
		}
		if _, err := bus.EnsurePurgeStream(t.Context(), js[r.name], r.name, []string{r.other}); err != nil {
			t.Fatal(err)
		}
		if r.name == "A" {
			nc = conn
		}
	}
	// A bound of an hour keeps Run's own evaluation (every bound/20) out of the test: the test
	// calls evaluate itself, after each step of its clock.
	const bound = time.Hour
	// The clock starts three hours back and stays behind the real one: a tick is believed only up
	// to when the stream stored it (server time), so one dated ahead of that would be ignored.
	clk := &fakeClock{t: time.Now().Add(-3 * time.Hour)}
	app, m := &trustRecorder{}, newTestConsumerMetrics()
	c, err := NewConsumer(ConsumerConfig{Edge: "A-1", Region: "A", Regions: []string{"A", "B"}, StalenessBound: bound, Now: clk.Now},
		nc, app, slog.New(slog.DiscardHandler), m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	heard := func(region string, after time.Time) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			c.mu.Lock()
			at, ok := c.lastTick[region]
			up := c.caughtUp
			c.mu.Unlock()
			if ok && !at.Before(after) && up {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("region %s's tick (at or after %s) never reached the consumer", region, after)
			}
			time.Sleep(10 * time.Millisecond) //nolint:forbidigo // the poll interval of a deadline loop
		}
	}
	tick := func(region string) {
		t.Helper()
		at := clk.Now()
		if err := bus.PublishTick(t.Context(), js[region], region, at); err != nil {
			t.Fatal(err)
		}
		heard(region, at)
	}
	verdict := func(step string, want bool) {
		t.Helper()
		c.evaluate()
		if c.Trusted() != want {
			t.Fatalf("%s: trusted %v, want %v", step, !want, want)
		}
		if g := m.value(t, "trusted"); (g == 1) != want {
			t.Fatalf("%s: gauge %v", step, g)
		}
	}

	verdict("nothing heard", false)
	tick("A")
	verdict("only region A heard", false)
	tick("B")
	verdict("both regions heard", true)
	clk.Add(bound - time.Second)
	verdict("just within the bound", true)
	clk.Add(2 * time.Second)
	verdict("past the bound", false)
	verdict("still past the bound", false)
	if got := m.value(t, "lost"); got != 1 {
		t.Fatalf("trust lost counted %v times, want 1", got)
	}
	if c.setTrusted(false) {
		t.Fatal("setTrusted reported a change that was none")
	}
	tick("A")
	verdict("A fresh, B stale", false)
	tick("B")
	verdict("both fresh again", true)
	// Run starts untrusted; then each change once: trusted, lost, trusted again.
	if got, want := app.told(), []bool{false, true, false, true}; !slices.Equal(got, want) {
		t.Fatalf("applier told %v, want %v", got, want)
	}
}
