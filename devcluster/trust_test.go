package devcluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/purge"
	"github.com/duetcdn/duet/steering"
)

// The attacks of issue 13 on the bus, replayed against `duet dev`'s NATS topology: two regions,
// each its own embedded server with the identities `duet dev` makes, linked by an authenticated
// leafnode (startNATS, as `duet dev` runs it).

// startDevNATS runs the dev cluster's NATS part (regions eu-west and us-east, two edges each) on
// free ports.
func startDevNATS(t *testing.T) *cluster {
	t.Helper()
	for attempt := 0; ; attempt++ {
		c := &cluster{dir: t.TempDir(), layout: layout{offset: 6000 + rand.IntN(170)*100}, edges: 2,
			regions: []*region{{name: "eu-west"}, {name: "us-east"}}, log: slog.New(slog.DiscardHandler)}
		err := c.startNATS(t.Context())
		if err == nil {
			t.Cleanup(c.shutdown)
			return c
		}
		c.shutdown()
		if attempt == 4 {
			t.Fatalf("start the dev NATS: %v", err)
		}
	}
}

// conn is a client of the dev NATS with the identity of a dev process, and the asynchronous
// errors (permission violations) the server sent it.
type conn struct {
	*nats.Conn
	js jetstream.JetStream

	mu   sync.Mutex
	errs []string
}

func (c *conn) violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// connectAs connects to region i's NATS as process proc ("eu-west-1", "purge-us-east", ...).
func connectAs(t *testing.T, c *cluster, i int, proc string) *conn {
	t.Helper()
	seed, ok := c.ids.seeds[proc]
	if !ok {
		t.Fatalf("no identity for %s", proc)
	}
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	cc := &conn{}
	nc, err := nats.Connect(c.regions[i].natsURL, opt, nats.Name(proc), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		cc.mu.Lock()
		cc.errs = append(cc.errs, err.Error())
		cc.mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("connect as %s: %v", proc, err)
	}
	t.Cleanup(nc.Close)
	cc.Conn = nc
	if cc.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return cc
}

// heartbeat is an edge's heartbeat (a struct of plain fields: it always encodes).
func heartbeat(region, edge, url string) []byte {
	b, _ := json.Marshal(bus.Heartbeat{Edge: edge, Region: region, URL: url, State: bus.StateServing, At: time.Now().UTC(), OriginHealthy: true})
	return b
}

// TestDevNATSRefusesStrangers: a process on the machine without one of the identities `duet
// dev` made cannot use NATS at all (before: anyone reaching the port could purge everything).
func TestDevNATSRefusesStrangers(t *testing.T) {
	t.Parallel()
	c := startDevNATS(t)
	for i, r := range c.regions {
		nc, err := nats.Connect(r.natsURL, nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
			t.Fatalf("region %s: an unauthenticated client was let in", r.name)
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("region %s: refused, but not for authorization: %v", r.name, err)
		}
		// A well-formed nkey the server does not know fares no better.
		kp, _ := nkeys.CreateUser()
		seed, _ := kp.Seed()
		stranger := filepath.Join(t.TempDir(), "stranger.nk")
		if err := os.WriteFile(stranger, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		opt, err := nats.NkeyOptionFromSeed(stranger)
		if err != nil {
			t.Fatal(err)
		}
		if nc, err := nats.Connect(r.natsURL, opt, nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Fatalf("region %s: an unknown nkey was let in", r.name)
		}
		_ = connectAs(t, c, i, "steering-"+r.name) // the dev identities are let in
	}
	// The seeds are the process's own: 0600 files in a 0700 directory.
	info, err := os.Stat(c.ids.dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", c.ids.dir, info.Mode().Perm())
	}
	for proc, f := range c.ids.seeds {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("seed of %s has mode %v, want 0600", proc, info.Mode().Perm())
		}
	}
}

// TestDevEdgeIdentityCannotSpeakForOthers: an edge's identity publishes its own heartbeats and
// acknowledgements and reads its region's purges, and the servers refuse the rest: another edge's
// heartbeat or acknowledgement, a purge, a tick, another edge's consumer, deleting the stream.
// Steering's identity cannot publish heartbeats either.
func TestDevEdgeIdentityCannotSpeakForOthers(t *testing.T) {
	t.Parallel()
	c := startDevNATS(t)
	ctx := t.Context()
	purgeSvc := connectAs(t, c, 0, "purge-eu-west")
	if _, err := bus.EnsurePurgeStream(ctx, purgeSvc.js, "eu-west", []string{"us-east"}); err != nil {
		t.Fatalf("the purge service ensures its stream: %v", err)
	}
	watcher := connectAs(t, c, 0, "steering-eu-west")
	got := make(chan *nats.Msg, 64)
	if _, err := watcher.ChanSubscribe(bus.HealthWildcard, got); err != nil {
		t.Fatal(err)
	}
	acks := make(chan *nats.Msg, 64)
	if _, err := purgeSvc.ChanSubscribe(bus.PurgeAckWildcard, acks); err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*conn{watcher, purgeSvc} {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	edge := connectAs(t, c, 0, "eu-west-1")
	steer := connectAs(t, c, 0, "steering-eu-west")
	own := bus.HealthSubject("eu-west", "eu-west-1")
	forged := []string{bus.HealthSubject("eu-west", "eu-west-2"), bus.HealthSubject("us-east", "us-east-1"), bus.HealthSubject("eu-west", "ghost")}
	for _, s := range forged {
		if err := edge.Publish(s, heartbeat("eu-west", strings.TrimPrefix(s, "duet.health.eu-west."), "http://203.0.113.7:8080")); err != nil {
			t.Fatal(err)
		}
	}
	if err := steer.Publish(bus.HealthSubject("eu-west", "eu-west-2"), heartbeat("eu-west", "eu-west-2", "http://203.0.113.7:8080")); err != nil {
		t.Fatal(err)
	}
	if err := steer.Flush(); err != nil {
		t.Fatal(err)
	}
	// Then its own: a connection's messages arrive in order, so whatever the server let through
	// before it has arrived by the time it does.
	if err := edge.Publish(own, heartbeat("eu-west", "eu-west-1", "http://"+c.layout.edge(0, 0))); err != nil {
		t.Fatal(err)
	}
	if err := edge.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Subject != own {
			t.Fatalf("the server let a heartbeat on %s through (forged)", m.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the edge's own heartbeat never arrived")
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(edge.violations()) >= len(forged) && len(steer.violations()) >= 1 },
		"the servers did not report the forged heartbeats as permission violations (edge: %v, steering: %v)", edge.violations(), steer.violations())
	for _, v := range append(edge.violations(), steer.violations()...) {
		if !strings.Contains(v, "Permissions Violation for Publish") {
			t.Errorf("unexpected error: %s", v)
		}
	}

	// Acknowledgements: its own arrive, another edge's do not.
	ack, _ := json.Marshal(bus.PurgeAck{ID: "p1", Edge: "eu-west-2", Region: "eu-west", Applied: time.Now()})
	if err := edge.Publish(bus.PurgeAckSubject("eu-west", "eu-west-2", "p1"), ack); err != nil {
		t.Fatal(err)
	}
	ack, _ = json.Marshal(bus.PurgeAck{ID: "p1", Edge: "eu-west-1", Region: "eu-west", Applied: time.Now()})
	if err := edge.Publish(bus.PurgeAckSubject("eu-west", "eu-west-1", "p1"), ack); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-acks:
		if m.Subject != bus.PurgeAckSubject("eu-west", "eu-west-1", "p1") {
			t.Fatalf("an acknowledgement on %s got through", m.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the edge's own acknowledgement never arrived")
	}

	// The stream: no purge, no tick, no other consumer, no deleting it.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	pctx, cancel := short()
	_, err := bus.PublishPurge(pctx, edge.js, bus.Purge{ID: "evil", Region: "eu-west", Target: purgereq.Target{Prefixes: []string{"/"}}, Accepted: time.Now()})
	cancel()
	if err == nil {
		t.Fatal("an edge stored a purge")
	}
	pctx, cancel = short()
	err = bus.PublishTick(pctx, edge.js, "eu-west", time.Now().Add(24*time.Hour))
	cancel()
	if err == nil {
		t.Fatal("an edge stored a tick")
	}
	pctx, cancel = short()
	_, err = edge.js.CreateOrUpdateConsumer(pctx, bus.PurgeStreamName("eu-west"), jetstream.ConsumerConfig{Durable: bus.EdgeConsumerName("eu-west-2")})
	cancel()
	if err == nil {
		t.Fatal("an edge made another edge's consumer")
	}
	pctx, cancel = short()
	err = edge.js.DeleteStream(pctx, bus.PurgeStreamName("eu-west"))
	cancel()
	if err == nil {
		t.Fatal("an edge deleted the purge stream")
	}
	st, err := purgeSvc.js.Stream(ctx, bus.PurgeStreamName("eu-west"))
	if err != nil {
		t.Fatalf("the purge stream is gone: %v", err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("the purge stream holds %d messages (%v), want none", info.State.Msgs, err)
	}
	// What the edge needs still works: its own consumer.
	if _, err := edge.js.CreateOrUpdateConsumer(ctx, bus.PurgeStreamName("eu-west"), jetstream.ConsumerConfig{
		Durable: bus.EdgeConsumerName("eu-west-1"), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatalf("the edge cannot make its own consumer: %v", err)
	}
}

// recordingProber records every URL steering probes.
type recordingProber struct {
	mu   sync.Mutex
	urls map[string]bool
}

func (p *recordingProber) Probe(_ context.Context, u string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.urls[u] = true
	return nil
}

// TestDevFakeEdgeURLNeverSteered: an edge that announces a URL other than the dev edges' (its
// own identity, its own subject) is neither probed nor sent viewers, and it cannot announce one
// under another edge's name either: steering answers with the real edge only.
func TestDevFakeEdgeURLNeverSteered(t *testing.T) {
	t.Parallel()
	c := startDevNATS(t)
	ctx, cancel := context.WithCancel(t.Context())
	cfg := steering.DefaultConfig()
	cfg.Regions = []steering.Region{{Name: "eu-west", Lat: 53.35, Lon: -6.26}, {Name: "us-east", Lat: 38.9, Lon: -77.04}}
	cfg.EdgeURLs = c.edgeURLs()
	prober := &recordingProber{urls: map[string]bool{}}
	srv, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Prober: prober})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	steer := connectAs(t, c, 0, "steering-eu-west")
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, steer.Conn, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	const fake = "http://203.0.113.7:8080"
	real := "http://" + c.layout.edge(0, 1)
	attacker, honest := connectAs(t, c, 0, "eu-west-1"), connectAs(t, c, 0, "eu-west-2")
	stop := make(chan struct{})
	var beats sync.WaitGroup
	beats.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			_ = attacker.Publish(bus.HealthSubject("eu-west", "eu-west-1"), heartbeat("eu-west", "eu-west-1", fake))
			_ = attacker.Publish(bus.HealthSubject("eu-west", "eu-west-2"), heartbeat("eu-west", "eu-west-2", fake))
			_ = honest.Publish(bus.HealthSubject("eu-west", "eu-west-2"), heartbeat("eu-west", "eu-west-2", real))
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	t.Cleanup(func() { close(stop); beats.Wait() })

	api := "http://" + ln.Addr().String()
	route := func(path string) string {
		resp, err := http.Get(api + "/v1/route?path=" + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return strings.Contains(route("/vod/a/1.ts"), real) },
		"steering never sent viewers to the honest edge %s", real)
	var answers atomic.Int64
	for i := range 50 {
		a := route("/vod/" + string(rune('a'+i%26)) + "/" + string(rune('a'+i/26)) + "/1.ts")
		if strings.Contains(a, "203.0.113.7") {
			t.Fatalf("a steering answer names the fake URL: %s", a)
		}
		if strings.Contains(a, real) {
			answers.Add(1)
		}
	}
	if answers.Load() == 0 {
		t.Fatal("no answer named the honest edge")
	}
	topo, _ := json.Marshal(srv.Topology())
	if strings.Contains(string(topo), "203.0.113.7") {
		t.Fatalf("the topology shows the fake URL: %s", topo)
	}
	probed := func(u string) bool {
		prober.mu.Lock()
		defer prober.mu.Unlock()
		return prober.urls[u]
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return probed(real) }, "steering never probed the honest edge")
	if probed(fake) {
		t.Fatal("steering probed the fake URL")
	}
}

// trustApplier records what the purge consumer tells the cache.
type trustApplier struct{ trusted atomic.Bool }

func (a *trustApplier) ApplyPurge(context.Context, bus.Purge) (int, error) { return 0, nil }
func (a *trustApplier) SetCacheTrusted(v bool)                             { a.trusted.Store(v) }

type consumerMetrics struct{}

func (consumerMetrics) PurgesApplied() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "a"})
}
func (consumerMetrics) PurgeLag() prometheus.Observer {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "b"})
}
func (consumerMetrics) CacheTrusted() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: "c"})
}
func (consumerMetrics) CacheTrustLost() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
}

// TestDevFutureTickDoesNotExtendTrust: region us-east's purge path falls silent after storing one
// tick dated a day ahead (its purge service's clock, or whoever held its identity); an edge of
// eu-west stops trusting its cache after its staleness bound all the same (before: for a day).
func TestDevFutureTickDoesNotExtendTrust(t *testing.T) {
	t.Parallel()
	c := startDevNATS(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	svcs := map[string]*conn{"eu-west": connectAs(t, c, 0, "purge-eu-west"), "us-east": connectAs(t, c, 1, "purge-us-east")}
	for r, other := range map[string]string{"eu-west": "us-east", "us-east": "eu-west"} {
		if _, err := bus.EnsurePurgeStream(ctx, svcs[r].js, r, []string{other}); err != nil {
			t.Fatal(err)
		}
	}
	var usEastSilent atomic.Bool
	var ticks sync.WaitGroup
	ticks.Go(func() {
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for ctx.Err() == nil {
			for r, nc := range svcs {
				if r == "us-east" && usEastSilent.Load() {
					continue
				}
				tctx, tcancel := context.WithTimeout(ctx, 2*time.Second)
				_ = bus.PublishTick(tctx, nc.js, r, time.Now())
				tcancel()
			}
			select {
			case <-ctx.Done():
			case <-tk.C:
			}
		}
	})
	defer ticks.Wait()
	defer cancel()

	edge := connectAs(t, c, 0, "eu-west-1")
	app := &trustApplier{}
	cons, err := purge.NewConsumer(purge.ConsumerConfig{Edge: "eu-west-1", Region: "eu-west", Regions: []string{"eu-west", "us-east"},
		StalenessBound: time.Second}, edge.Conn, app, slog.New(slog.DiscardHandler), consumerMetrics{})
	if err != nil {
		t.Fatal(err)
	}
	var run sync.WaitGroup
	run.Go(func() { _ = cons.Run(ctx) })
	defer run.Wait()
	defer cancel()
	testenv.Eventually(t, 30*time.Second, app.trusted.Load, "the edge never trusted its cache with both regions ticking")

	// us-east's last word: a tick dated a day ahead; then nothing.
	usEastSilent.Store(true)
	tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
	err = bus.PublishTick(tctx, svcs["us-east"].js, "us-east", time.Now().Add(24*time.Hour))
	tcancel()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return !app.trusted.Load() },
		"the edge still trusts its cache long after us-east fell silent: the future tick extended its trust")
}
