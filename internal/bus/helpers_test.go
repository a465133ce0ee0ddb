package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
)

// Test credentials of the leafnode listeners.
const (
	leafUser     = "leaf"
	leafPassword = "s3cret"
)

// region is one region's embedded NATS server in a test, with a client connection.
type region struct {
	t    testing.TB
	name string
	cfg  natsserver.Config
	logs *logCapture

	mu  sync.Mutex // guards srv (restart swaps it while cleanups may read it)
	srv *server.Server

	nc *nats.Conn
	js jetstream.JetStream
}

// startRegion starts a region's server (client port random, store in a temp dir) and connects to
// it; both are stopped in t.Cleanup. cfg.Region, StoreDir and Port are filled in when empty.
func startRegion(t testing.TB, name string, cfg natsserver.Config) *region {
	t.Helper()
	cfg.Region = name
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	r := &region{t: t, name: name, logs: &logCapture{}}
	cfg.Logger = slog.New(r.logs)
	r.cfg = cfg
	r.start()
	t.Cleanup(r.stop)
	// Keep the ports: a restart comes back on the same ones, as a real server would.
	r.cfg.Port = r.server().Addr().(*net.TCPAddr).Port
	if cfg.LeafPort != 0 {
		u, err := url.Parse(natsserver.LeafURL(r.server()))
		if err != nil {
			t.Fatalf("leaf url of %s: %v", name, err)
		}
		_, port, _ := net.SplitHostPort(u.Host)
		if r.cfg.LeafPort, err = strconv.Atoi(port); err != nil {
			t.Fatalf("leaf port of %s: %v", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{r.server().ClientURL()}, Name: "test-" + name}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	r.nc = nc
	if r.js, err = jetstream.New(nc); err != nil {
		t.Fatalf("jetstream %s: %v", name, err)
	}
	return r
}

func (r *region) server() *server.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

func (r *region) start() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, r.cfg)
	if err != nil {
		r.t.Fatalf("start region %s: %v", r.name, err)
	}
	r.mu.Lock()
	r.srv = s
	r.mu.Unlock()
}

// stop shuts the region's server down (idempotent).
func (r *region) stop() {
	r.mu.Lock()
	s := r.srv
	r.srv = nil
	r.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// restart stops the server and starts it again on the same ports and store; the region's client
// connection reconnects by itself.
func (r *region) restart() {
	r.t.Helper()
	r.stop()
	r.start()
}

// leafRemote is the URL other regions dial to link to r, with the test credentials.
func (r *region) leafRemote() string {
	r.t.Helper()
	return withUser(r.t, natsserver.LeafURL(r.server()), leafUser, leafPassword)
}

func withUser(t testing.TB, raw, user, password string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// watch runs WatchSources for the region's purge stream until the test ends (stopped before the
// servers are).
func (r *region) watch(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := bus.WatchSources(ctx, r.js, r.name, slog.New(r.logs)); err != nil {
			t.Errorf("watch sources of %s: %v", r.name, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// ensureStream creates the region's purge stream sourcing others.
func (r *region) ensureStream(t testing.TB, others ...string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := bus.EnsurePurgeStream(ctx, r.js, r.name, others)
	if err != nil {
		t.Fatalf("ensure purge stream of %s: %v", r.name, err)
	}
	return st
}

// publishPurge stores a purge with id in the region's stream.
func (r *region) publishPurge(t testing.TB, id string) *jetstream.PubAck {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ack, err := bus.PublishPurge(ctx, r.js, bus.Purge{ID: id, Region: r.name,
		Target: purgereq.Target{URLs: []string{"https://cdn.example/" + id}}, Accepted: time.Now().UTC(), By: "test"})
	if err != nil {
		t.Fatalf("publish purge %s in %s: %v", id, r.name, err)
	}
	return ack
}

// hasPurge reports whether the region's stream holds purge id of region from.
func (r *region) hasPurge(t testing.TB, from, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	st, err := r.js.Stream(ctx, bus.PurgeStreamName(r.name))
	if err != nil {
		return false
	}
	_, err = st.GetLastMsgForSubject(ctx, bus.PurgeSubject(from, id))
	return err == nil
}

// purgeIDs lists, in stream order, the ids of region from's purges in r's stream.
func (r *region) purgeIDs(t testing.TB, from string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	oc, err := r.js.OrderedConsumer(ctx, bus.PurgeStreamName(r.name), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"duet.purge." + from + ".cmd.>"},
	})
	if err != nil {
		t.Fatalf("ordered consumer on %s: %v", bus.PurgeStreamName(r.name), err)
	}
	info, err := oc.Info(ctx)
	if err != nil {
		t.Fatalf("ordered consumer info: %v", err)
	}
	n := int(info.NumPending)
	var ids []string
	for len(ids) < n {
		batch, err := oc.Fetch(n-len(ids), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch from %s: %v", bus.PurgeStreamName(r.name), err)
		}
		got := 0
		for m := range batch.Messages() {
			var p bus.Purge
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				t.Fatalf("purge message %s: %v", m.Subject(), err)
			}
			ids = append(ids, p.ID)
			got++
		}
		if got == 0 {
			t.Fatalf("fetch from %s: %d of %d messages: %v", bus.PurgeStreamName(r.name), len(ids), n, batch.Error())
		}
	}
	return ids
}

// waitCore waits until a core message published in from reaches a subscriber in to (publishing
// again every 10 ms, since interest takes a moment to cross a link), and returns how long it took.
func waitCore(t testing.TB, from, to *region, subject string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	sub, err := to.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("subscribe %s in %s: %v", subject, to.name, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := to.nc.Flush(); err != nil {
		t.Fatalf("flush %s: %v", to.name, err)
	}
	testenv.Eventually(t, timeout, func() bool {
		if err := from.nc.Publish(subject, []byte("probe")); err != nil {
			return false
		}
		_, err := sub.NextMsg(10 * time.Millisecond)
		return err == nil
	}, "a core message on %s from %s never reached %s", subject, from.name, to.name)
	return time.Since(start)
}

// linkPair starts regions A (leafnode listener) and B (a leafnode of A, dialling dial(A's leaf
// URL)) and waits until core NATS crosses both ways.
func linkPair(t testing.TB, dial func(string) string) (a, b *region) {
	t.Helper()
	a = startRegion(t, "A", natsserver.Config{LeafPort: -1, LeafUser: leafUser, LeafPassword: leafPassword})
	remote := a.leafRemote()
	if dial != nil {
		remote = dial(remote)
	}
	b = startRegion(t, "B", natsserver.Config{LeafRemotes: []string{remote}})
	waitCore(t, b, a, "test.link.ba", 10*time.Second)
	waitCore(t, a, b, "test.link.ab", 10*time.Second)
	return a, b
}

// logCapture is a slog handler that keeps the messages it is given (levels and attributes
// flattened), for tests to look for a server log line.
type logCapture struct {
	mu    sync.Mutex // guards lines
	lines []string
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	if len(l.lines) > 5000 {
		l.lines = l.lines[len(l.lines)-4000:]
	}
	l.mu.Unlock()
	return nil
}

// contains reports whether a kept line contains s.
func (l *logCapture) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// tcpProxy forwards TCP connections to a target, and can cut them (a network partition between
// two regions that both keep running).
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex // guards cut and conns
	cut   bool
	conns map[net.Conn]struct{}
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

// addr is the proxy's listening address.
func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c, up) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// track registers a connection pair unless the proxy was cut meanwhile (then closes them).
func (p *tcpProxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		_ = a.Close()
		_ = b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// setCut cuts (closing every connection, refusing new ones) or heals the link.
func (p *tcpProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

func (p *tcpProxy) close() {
	_ = p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return u
}

// dumpLogs prints the regions' captured logs (server and WatchSources) when the test
// fails, or always with DUET_BUS_LOGS=1.
func dumpLogs(t testing.TB, regions ...*region) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("DUET_BUS_LOGS") != "1" {
			return
		}
		for _, r := range regions {
			r.logs.mu.Lock()
			for _, l := range r.logs.lines {
				if strings.Contains(l, "nats_level=trace") {
					continue
				}
				t.Logf("%s: %s", r.name, l)
			}
			r.logs.mu.Unlock()
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
