// Package edge is Duet's edge cache node: it serves viewers over HTTP (fasthttp) from a memory
// tier (ristretto) and a disk tier, fetches misses from an origin with exactly one fetch per
// key however many viewers ask at once, and follows the HTTP caching rules of RFC 9111.
package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/cachekey"
	"github.com/duetcdn/duet/edge/disktier"
	"github.com/duetcdn/duet/edge/memtier"
	"github.com/duetcdn/duet/internal/accesslog"
	"github.com/duetcdn/duet/internal/adminguard"
	"github.com/duetcdn/duet/internal/clientaddr"
	"github.com/duetcdn/duet/internal/cmcd"
	"github.com/duetcdn/duet/internal/signedurl"
	"github.com/duetcdn/duet/internal/tlsconf"
	"github.com/duetcdn/duet/origin"
)

// Origin is what the edge needs from an origin: conditional and ranged reads.
type Origin interface {
	Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error)
}

// Forwarder is implemented by origins that accept methods other than GET and HEAD (HTTP
// origins); the edge passes those requests through uncached.
type Forwarder interface {
	Forward(ctx context.Context, method, path, query string, header http.Header, body io.Reader) (*origin.Response, error)
}

// ManifestRewriter rewrites a playlist or MPD before it is cached, for example to inject HLS or
// DASH content steering so that packaged content needs no change. It returns false to keep the
// original (not a multivariant playlist, already steered, ...).
type ManifestRewriter interface {
	Rewrite(path string, body []byte) ([]byte, bool)
}

// Deps are the edge's collaborators, passed in so that tests can build several edges in one
// process.
type Deps struct {
	Origin   Origin
	Logger   *slog.Logger          // default: discard
	Registry prometheus.Registerer // default: a private registry
	// Gatherer serves /metrics; default: the Registry when it is a *prometheus.Registry.
	Gatherer prometheus.Gatherer
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Rewriter, when set, rewrites .m3u8 and .mpd bodies before they are cached.
	Rewriter ManifestRewriter
	// AccessLogSink, when set, receives the access log instead of the sink access_log names;
	// AccessLogPublisher is the NATS connection of access_log.sink "nats".
	AccessLogSink      accesslog.Sink
	AccessLogPublisher accesslog.Publisher
	// ACME is the ACME client for tls.acme (internal/tlsconf/acme.Start, wired in by the
	// command); without it an edge with tls.acme.domains does not start.
	ACME tlsconf.ACME
}

// Server is one edge node.
type Server struct {
	cfg    Config
	origin Origin
	log    *slog.Logger
	now    func() time.Time
	keys   *cachekey.Normalizer
	store  *store
	fl     flights
	pass   passSet
	m      *metrics
	gather prometheus.Gatherer
	// admin guards the admin listener's /purge and /debug/pprof (admin.go).
	admin *adminguard.Guard
	// rewriter rewrites manifests before they are cached; may be nil.
	rewriter ManifestRewriter
	// tokens are the signed-URL keys the edge accepts; nil when signed_urls has none.
	tokens *signedurl.Keys
	tm     *tokenMetrics
	// cors are the pre-rendered CORS headers (off when cors.allow_origin is empty).
	cors corsHeaders
	// sliceAbove is the Content-Length above which a full GET is not stored whole but answered,
	// and cached, as slices: cache.slice_above, capped by what the disk tier stores whole.
	sliceAbove int64
	// vl is the viewer listener Serve wraps the socket in.
	vl atomic.Pointer[viewerListener]
	// tls terminates TLS on the viewer listener; nil for plain HTTP.
	tls *tlsconf.Terminator
	// dates holds the parsed Date headers responses copy in (date.go).
	dates *dateTemplates
	// realClock is set when now is time.Now: the handler then takes fasthttp's own reading of
	// the request's arrival instead of reading the clock again (docs/performance.md).
	realClock bool

	// trust is when the edge last lost trust and how long an origin confirmation counts.
	trust trustState

	ready atomic.Bool
	// untrusted is set while the edge may have missed purges (its purge stream was lost for
	// longer than the staleness bound, or it has not caught up since it started): a hit is then
	// served only once the origin has confirmed the entry (trust.go) and nothing is served
	// stale. The zero value (trusted) suits an edge that runs without a purge stream.
	untrusted atomic.Bool
	viewer    *fasthttp.Server
	// watch closes viewer connections that are too slow to send a request or idle too long;
	// watchTick is how often it looks.
	watch     *connWatch
	watchTick time.Duration
	// parker holds idle connections without their goroutine and buffers (nil: off).
	parker *parker
	// maxConns is the max_conns in force, fdLimit the open-file limit it was derived from (0:
	// unknown).
	maxConns int
	fdLimit  uint64
	closeMu  sync.Mutex
	closed   bool
	bgCtx    context.Context // background work (revalidations); cancelled at shutdown
	bgCancel context.CancelFunc

	// alog is the access log (nil: off); trusted the proxies whose X-Forwarded-For it believes.
	alog    *accesslog.Logger
	trusted []netip.Prefix
	// idPrefix and idSeq make request ids (accesslog.go).
	idPrefix [8]byte
	idSeq    atomic.Uint64
	// qoe aggregates the players' CMCD reports.
	qoe *cmcd.Stats
	// peer is peer fill (nil: off); budget paces origin requests (nil: no budget).
	peer   *peerFill
	budget *originBudget
	// pf is playlist-driven prefetch (nil: off).
	pf *prefetcher
}

// New builds an edge: it validates cfg, opens the disk tier (rebuilding its index, so a restarted
// edge serves its warm cache at once) and creates the memory tier. Call Close when done, or let
// Serve do it.
func New(ctx context.Context, cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Origin == nil {
		return nil, fmt.Errorf("%w: no origin", ErrConfig)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		reg := prometheus.NewRegistry()
		deps.Registry, deps.Gatherer = reg, reg
	}
	if deps.Gatherer == nil {
		if g, ok := deps.Registry.(prometheus.Gatherer); ok {
			deps.Gatherer = g
		}
	}
	realClock := deps.Now == nil
	if realClock {
		deps.Now = time.Now
	}
	// CMCD is what a player says about itself: the same object with or without it is one entry,
	// and the origin never sees it.
	ignore := append(slices.Clip(cfg.Cache.IgnoreParams), "CMCD")
	var tokens *signedurl.Keys
	if cfg.SignedURLs.Enabled() {
		ignore = append(slices.Clip(ignore), signedurl.QueryParam) // a token is never part of the key
		t, err := signedurl.NewKeys(cfg.SignedURLs.Keys)
		if err != nil {
			return nil, fmt.Errorf("%w: signed_urls: %w", ErrConfig, err)
		}
		tokens = t
	}
	keys, err := cachekey.New(cachekey.Config{IgnoreParams: ignore, DropQuery: cfg.QueryDropped()})
	if err != nil {
		return nil, fmt.Errorf("%w: cache.ignore_params: %w", ErrConfig, err)
	}
	admin, err := newAdminGuard(cfg)
	if err != nil {
		return nil, err
	}
	log := deps.Logger.With("component", "edge", "edge", cfg.Name)
	dates, err := newDateTemplates()
	if err != nil {
		return nil, err
	}
	s := &Server{dates: dates, cfg: cfg, origin: deps.Origin, log: log, now: deps.Now, keys: keys, gather: deps.Gatherer, admin: admin, rewriter: deps.Rewriter,
		cors: newCORSHeaders(cfg.CORS), realClock: realClock, tokens: tokens}
	s.fl.m = map[string]*flight{}
	s.fl.bg = bgFill{percent: cfg.Cache.BackgroundFillPercent, minBytes: int64(cfg.Cache.BackgroundFillMinBytes)}
	s.pass.m = map[string]time.Time{}

	var st *store
	mem, err := memtier.New(memtier.Config{
		MaxBytes:       int64(cfg.Memory.MaxBytes),
		MaxObjectBytes: int64(cfg.Memory.MaxObjectBytes),
	})
	if err != nil {
		return nil, fmt.Errorf("memory tier: %w", err)
	}
	disk, err := disktier.Open(ctx, disktier.Config{
		Dir:      cfg.Disk.Dir,
		MaxBytes: int64(cfg.Disk.MaxBytes),
		Logger:   deps.Logger.With("edge", cfg.Name),
		OnEvict: func(key string) {
			if st != nil {
				st.evicted(key)
			} else {
				mem.Del(key)
			}
		},
	})
	if err != nil {
		mem.Close()
		return nil, fmt.Errorf("open disk tier %s: %w", cfg.Disk.Dir, err)
	}
	// Objects above cache.slice_above, or too large for the disk tier to hold whole (with room
	// for the metadata), are cached as slices.
	maxObject := int64(cfg.Disk.MaxBytes) / disktier.MaxObjectFraction
	s.sliceAbove = min(int64(cfg.Cache.SliceAbove), maxObject-min(64<<10, maxObject/2))
	st = newStore(mem, disk, log, s.sliceAbove)
	s.store = st
	// The sweep runs every second, or ten times per timeout when one is shorter than 10 s.
	s.watch = newConnWatch(cfg.ReadTimeout, cfg.IdleTimeout, time.Now)
	s.watchTick = min(time.Second, min(cfg.ReadTimeout, cfg.IdleTimeout)/10)
	s.m = newMetrics(deps.Registry, st, s.watch)
	s.qoe = cmcd.NewStats(deps.Registry, deps.Now)
	s.budget = newOriginBudget(cfg.Origin, deps.Registry)
	if s.peer, err = newPeerFill(cfg, deps.Registry); err != nil {
		_ = disk.Close()
		mem.Close()
		return nil, err
	}
	s.pf = newPrefetcher(s, cfg.Prefetch, deps.Registry)
	s.idPrefix = newIDPrefix()
	s.trusted, _ = clientaddr.ParsePrefixes(cfg.AccessLog.TrustedProxies) // checked by Validate
	if s.alog, err = newAccessLog(cfg, deps); err != nil {
		_ = disk.Close()
		mem.Close()
		return nil, fmt.Errorf("access log: %w", err)
	}
	s.tm = newTokenMetrics(deps.Registry)
	s.bgCtx, s.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	fdLimit, err := raiseFileLimit()
	if err != nil {
		log.Warn("open-file limit not raised", "error", err)
	}
	var clamped bool
	s.fdLimit = fdLimit
	s.maxConns, clamped = effectiveMaxConns(cfg.MaxConns, connBudget(fdLimit, cfg.originConns()))
	if clamped {
		log.Warn("max_conns lowered to what the open-file limit allows", "max_conns", cfg.MaxConns,
			"open_files_limit", fdLimit, "allowed", s.maxConns)
	}
	if fdLimit > 0 && fdLimit < 4096 {
		log.Warn("the open-file limit is low: raise the hard limit (LimitNOFILE=, ulimit -Hn) to serve more viewers",
			"open_files_limit", fdLimit, "max_conns", s.maxConns)
	}
	s.viewer = &fasthttp.Server{
		Handler:      s.handle,
		ErrorHandler: s.errorHandler,
		// A viewer that waits for 100 Continue before sending a body over the limit gets the
		// 413 instead.
		ExpectHandler: expectContinue,
		Name:          "duet",
		// Over max_conns fasthttp answers a new connection 503 and closes it at once, so
		// viewer connections alone never exhaust the descriptors.
		Concurrency: s.maxConns,
		// The read buffer bounds the request line and header block: over it fasthttp reports
		// ErrSmallBuffer, answered 414 or 431 by errorHandler.
		ReadBufferSize: int(cfg.MaxHeaderBytes),
		// Coalescing on wrapped connections knows this size (coalesce.go).
		WriteBufferSize: viewerWriteBuffer,
		// Read and idle timeouts are enforced by s.watch, which is cheaper than fasthttp's
		// per-request deadlines. There is no write timeout: large objects to slow viewers take
		// long.
		ConnState:                     s.connState,
		DisableHeaderNamesNormalizing: false,
		NoDefaultContentType:          true,
		NoDefaultDate:                 false, // but for stored and origin Dates (date.go)
		NoDefaultServerHeader:         false,
		ReduceMemoryUsage:             false,
		StreamRequestBody:             true,
		MaxRequestBodySize:            maxRequestBodyBytes,
		Logger:                        fasthttpLogger{log},
	}
	if cfg.TLS.Enabled() {
		if s.tls, err = tlsconf.New(cfg.TLS, log, deps.ACME); err != nil {
			_ = disk.Close()
			mem.Close()
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if v := s.tls.HSTS(); v != "" {
			s.viewer.Handler = withHSTS(s.viewer.Handler, v)
		}
		// Under TLS every write is a record and a syscall, and there is no writev to join two
		// writes: a buffer of one full record sends a response up to 16 KiB, header and body,
		// as one record, and larger bodies in full records (coalesce.go's holding is off).
		s.viewer.WriteBufferSize = tlsWriteBuffer
	}
	return s, nil
}

// withHSTS adds Strict-Transport-Security to every answer of h.
func withHSTS(h fasthttp.RequestHandler, value string) fasthttp.RequestHandler {
	name, v := []byte("Strict-Transport-Security"), []byte(value)
	return func(ctx *fasthttp.RequestCtx) {
		h(ctx)
		ctx.Response.Header.SetCanonical(name, v)
	}
}

// Serve answers viewers on ln and operators on admin until ctx ends, then shuts down
// gracefully: it turns not-ready, waits DrainDelay, stops accepting, lets in-flight responses
// and fills finish within ShutdownTimeout, and closes the tiers.
func (s *Server) Serve(ctx context.Context, ln, admin net.Listener) error {
	adminSrv := &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 4) // viewer, admin, and with TLS redirect and certificates
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go s.watch.run(stopWatch, s.watchTick)
	vl := newViewerListener(ln, s.log, s.m.acceptErrors, int(s.cfg.MaxHeaderBytes), s.cfg.CheckRequestFraming)
	var redirect *http.Server
	if s.tls != nil {
		vl.tls = s.tls.TLSConfig()
		tctx, stopTLS := context.WithCancel(ctx)
		defer stopTLS()
		var err error
		if redirect, err = s.serveTLS(tctx, ln, errc); err != nil {
			_ = ln.Close()
			_ = admin.Close()
			s.Close()
			return err
		}
	}
	if s.cfg.IdleParkAfter > 0 && s.cfg.IdleParkAfter < s.cfg.IdleTimeout && s.tls == nil && s.cfg.CheckRequestFraming {
		p, err := newParker(s.log, s.cfg.IdleTimeout, s.cfg.IdleParkAfter, func(c net.Conn) {
			// Still watched (as parked); fasthttp reports it active as its request arrives.
			if err := s.viewer.ServeConn(c); errors.Is(err, fasthttp.ErrConcurrencyLimit) {
				s.watch.connState(c, fasthttp.StateClosed) // answered 503 and closed
			}
		}, func(c net.Conn) { s.watch.connState(c, fasthttp.StateClosed) }, func() { s.watch.closed.Add(1) })
		if err != nil {
			s.log.Warn("idle connections will not be parked", "error", err)
		} else {
			s.parker = p
			vl.parker, vl.maxConns = p, s.maxConns
			vl.open = func() int { return int(s.viewer.GetOpenConnectionsCount()) }
			s.watch.parkAfter = s.cfg.IdleParkAfter
		}
	}
	s.vl.Store(vl)
	go func() { errc <- s.viewer.Serve(vl) }()
	go func() {
		if err := adminSrv.Serve(admin); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	s.ready.Store(true)
	s.log.Info("edge serving", "listen", ln.Addr().String(), "admin", admin.Addr().String(),
		"memory_bytes", s.cfg.Memory.MaxBytes.String(), "disk_bytes", s.cfg.Disk.MaxBytes.String(),
		"disk_entries", s.store.disk.Len(), "open_files_limit", s.fdLimit, "max_conns", s.maxConns)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.ready.Store(false)
	if serveErr == nil && s.cfg.DrainDelay > 0 {
		s.log.Info("draining", "delay", s.cfg.DrainDelay)
		select {
		case <-time.After(s.cfg.DrainDelay):
		case serveErr = <-errc:
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if s.parker != nil {
		s.parker.close() // parked connections are idle ones, which Shutdown closes too
	}
	if err := s.viewer.ShutdownWithContext(sctx); err != nil {
		s.log.Warn("viewer shutdown incomplete", "error", err)
	}
	s.bgCancel()
	if err := s.fl.wait(sctx); err != nil {
		s.log.Warn("fills still running at shutdown", "error", err)
	}
	_ = adminSrv.Shutdown(sctx)
	if redirect != nil {
		_ = redirect.Shutdown(sctx)
	}
	s.Close()
	s.log.Info("edge stopped")
	return serveErr
}

// ListenAndServe opens the configured listeners and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		s.Close()
		return fmt.Errorf("listen for viewers on %s: %w", s.cfg.Listen, err)
	}
	admin, err := lc.Listen(ctx, "tcp", s.cfg.AdminListen)
	if err != nil {
		_ = ln.Close()
		s.Close()
		return fmt.Errorf("listen for admin on %s: %w", s.cfg.AdminListen, err)
	}
	return s.Serve(ctx, ln, admin)
}

// Close releases the tiers. Idempotent and nil-safe; Serve calls it on shutdown.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.bgCancel()
	_ = s.store.disk.Close()
	s.store.mem.Close()
	_ = s.alog.Close()
}

// CacheTrusted reports the current setting.
func (s *Server) CacheTrusted() bool { return !s.untrusted.Load() }

// MaxConns is the max_conns in force: configured or derived from the open-file limit, and
// clamped to it.
func (s *Server) MaxConns() int { return s.maxConns }

// connState is the viewer server's ConnState hook.
func (s *Server) connState(c net.Conn, state fasthttp.ConnState) {
	s.watch.connState(c, state)
	switch state {
	case fasthttp.StateActive:
		if vc, ok := c.(*viewerConn); ok {
			vc.atIdle = false // a request is being read (maybe from fasthttp's buffer alone)
		}
	case fasthttp.StateIdle:
		if vc, ok := c.(*viewerConn); ok {
			vc.rearm()
			vc.idle()
		}
	case fasthttp.StateClosed:
		if _, ok := c.(*viewerConn); !ok {
			if vl := s.vl.Load(); vl != nil {
				vl.closedConn()
			}
		}
	}
}

// Ready reports whether the edge takes traffic.
func (s *Server) Ready() bool { return s.ready.Load() }

// passSet remembers keys whose responses could not be shared, so their requests go straight to
// the origin instead of queueing behind each other ("hit-for-pass").
type passSet struct {
	mu sync.Mutex
	m  map[string]time.Time // key → until; guarded by mu
}

// maxPassKeys bounds the set; past it, the set starts over (the cost is a collapsed fetch).
const maxPassKeys = 100_000

func (p *passSet) add(key string, until time.Time) {
	p.mu.Lock()
	if len(p.m) >= maxPassKeys {
		clear(p.m)
	}
	p.m[key] = until
	p.mu.Unlock()
}

func (p *passSet) has(key string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.m[key]
	if ok && now.After(until) {
		delete(p.m, key)
		return false
	}
	return ok
}

func (p *passSet) remove(key string) {
	p.mu.Lock()
	delete(p.m, key)
	p.mu.Unlock()
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "source", "fasthttp")
}
