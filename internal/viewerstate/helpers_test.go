package viewerstate_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/viewerstate"
)

// region is one region's embedded NATS server and its viewer state store in a test.
type region struct {
	name  string
	srv   *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	store *viewerstate.Store
	reg   *prometheus.Registry
}

const (
	leafUser, leafPassword = "leaf", "s3cret"
	testRetention          = time.Hour
)

func startServer(t testing.TB, cfg natsserver.Config) *server.Server {
	t.Helper()
	cfg.StoreDir, cfg.Port = t.TempDir(), -1
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start NATS of %s: %v", cfg.Region, err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// openStore connects to srv (as creds, when given) and opens region's store, running it until
// the test ends.
func openStore(t testing.TB, name string, srv *server.Server, regions []string, cc bus.ConnConfig) *region {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cc.URLs, cc.Name = []string{srv.ClientURL()}, "test-"+name
	nc, err := bus.Connect(ctx, cc, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	st, err := viewerstate.Open(ctx, js, viewerstate.Config{Region: name, Regions: regions, Retention: testRetention, MaxBytes: 64 << 20},
		viewerstate.Deps{Logger: slog.New(slog.DiscardHandler), Registry: reg})
	if err != nil {
		t.Fatalf("open the store of %s: %v", name, err)
	}
	rctx, rcancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(rctx) }()
	t.Cleanup(func() { rcancel(); <-done })
	return &region{name: name, srv: srv, nc: nc, js: js, store: st, reg: reg}
}

// linkedPair starts regions A (leafnode listener) and B (dialling A through a proxy that can cut
// the link) with their stores.
func linkedPair(t testing.TB) (a, b *region, link *tcpProxy) {
	t.Helper()
	sa := startServer(t, natsserver.Config{Region: "A", LeafPort: -1, LeafUser: leafUser, LeafPassword: leafPassword})
	u, err := url.Parse(natsserver.LeafURL(sa))
	if err != nil {
		t.Fatal(err)
	}
	link = newTCPProxy(t, u.Host)
	u.Host, u.User = link.addr(), url.UserPassword(leafUser, leafPassword)
	sb := startServer(t, natsserver.Config{Region: "B", LeafRemotes: []string{u.String()}})
	regions := []string{"A", "B"}
	return openStore(t, "A", sa, regions, bus.ConnConfig{}), openStore(t, "B", sb, regions, bus.ConnConfig{}), link
}

// tcpProxy forwards TCP connections to a target, and can cut them (a partition between two
// regions that both keep running).
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
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_, _ = c.Close(), up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, up) })
		p.wg.Go(func() { p.pipe(up, c) })
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_, _ = dst.Close(), src.Close()
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
