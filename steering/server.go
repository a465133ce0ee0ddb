// Package steering is Duet's content steering service (`duet steering`): the global load
// balancer that sends each viewer to the nearest healthy edge with room, keeps one stream on one
// edge, and moves viewers away from a failing edge or region within seconds.
//
// A Server joins the pieces:
//
//   - the health table (package health), fed by edge heartbeats from NATS (bus.HealthWildcard)
//     and by active probes of each edge's public URL (Prober);
//   - the client's address (package clientaddr: X-Forwarded-For only from trusted proxies) and
//     location (package geoip; unknown and private addresses start from the default region);
//   - the routing choice (package hrw): nearest healthy region with room, rendezvous hashing of
//     the content key with bounded load inside it;
//   - the answers (api.go): JSON (/v1/route), redirects (/r/{path}), HLS and DASH steering
//     manifests (package manifest; /v1/steer/hls, /v1/steer/dash), the topology
//     (/v1/topology), a status page (/), and /healthz, /readyz, /metrics.
//
// Each instance decides alone from its own table; instances that see the same heartbeats give
// the same answers.
package steering

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/accesslog"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/clientaddr"
	"github.com/duetcdn/duet/internal/viewerstate"
	"github.com/duetcdn/duet/steering/geoip"
	"github.com/duetcdn/duet/steering/health"
	"github.com/duetcdn/duet/steering/hrw"
)

// Publisher is the part of a NATS connection the service publishes events with.
type Publisher interface {
	Publish(subject string, data []byte) error
}

// Deps are the Server's dependencies. Logger and Registry are required.
type Deps struct {
	Logger *slog.Logger
	// Registry gets the service's metrics; Gatherer serves /metrics (nil: the Registry, when it
	// is a *prometheus.Registry).
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	// GeoIP is the location database; nil: Config.GeoIPDatabase is opened (or the embedded
	// default), and closed by Close.
	GeoIP *geoip.DB
	// Prober checks edges; nil: a DialProber, or an HTTPProber when Config.ProbePath is set.
	Prober Prober
	// Events, when set, receives state changes on bus.EventSubject("edge") (JSON health.Change).
	Events Publisher
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// AccessLogSink, when set, receives the access log instead of the sink access_log names;
	// AccessLogPublisher is the NATS connection of access_log.sink "nats".
	AccessLogSink      accesslog.Sink
	AccessLogPublisher accesslog.Publisher
	// HSTS is the Strict-Transport-Security value sent with every answer (when the listener
	// Run is given speaks TLS); "": none.
	HSTS string
}

// Server is one steering instance.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	geo     *geoip.DB
	ownGeo  bool
	trusted []netip.Prefix
	edgeURL []edgeURLPattern
	picker  *hrw.Picker
	table   *health.Table
	prober  Prober
	events  Publisher
	hsts    string
	m       *metrics
	gather  prometheus.Gatherer
	bufs    sync.Pool // *hrw.Buffer

	viewMu sync.Mutex           // serialises rebuilds, so an older view never replaces a newer one
	view   atomic.Pointer[view] // what decisions read
	// pending is, per edge (health.Key), the load steering sent it since its last heartbeat;
	// guarded by viewMu. Views share the pointers; a heartbeat resets its edge's.
	pending map[string]*hrw.Pending
	warned  sync.Map // region name → struct{}: unknown regions already logged

	// alog is the access log (nil: off).
	alog *accesslog.Logger

	reg         prometheus.Registerer
	viewers     atomic.Pointer[viewerstate.Store] // nil until open (Run), or when off
	viewerLimit *viewerLimiter

	closeOnce sync.Once
}

// New checks cfg and builds a Server. It starts nothing: see Run, or drive it with Observe and
// Check (tests).
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if deps.Logger == nil || deps.Registry == nil {
		return nil, fmt.Errorf("%w: Logger and Registry are required", ErrInvalidConfig)
	}
	s := &Server{cfg: cfg, log: deps.Logger.With("component", "steering"), now: deps.Now, geo: deps.GeoIP,
		prober: deps.Prober, events: deps.Events, gather: deps.Gatherer, hsts: deps.HSTS}
	if s.now == nil {
		s.now = time.Now
	}
	if s.gather == nil {
		if g, ok := deps.Registry.(prometheus.Gatherer); ok {
			s.gather = g
		}
	}
	s.trusted, _ = clientaddr.ParsePrefixes(cfg.TrustedProxies) // checked by fill
	s.edgeURL, _ = parseEdgeURLPatterns(cfg.EdgeURLs)           // checked by fill
	if len(s.edgeURL) == 0 {
		s.log.Warn("edge_urls is empty: steering accepts any http(s) URL an edge announces; list your edges' URLs")
	}
	var err error
	if s.picker, err = hrw.New(hrw.Config{EdgeLoadFactor: float64(cfg.EdgeLoadPercent) / 100,
		RegionLoadFactor: float64(cfg.RegionLoadPercent) / 100, BalanceFactor: float64(cfg.BalancePercent) / 100,
		BalanceFloor:  float64(cfg.BalanceFloorPercent) / 100,
		DefaultRegion: cfg.DefaultRegion}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if s.table, err = health.New(health.Config{HeartbeatInterval: cfg.HeartbeatInterval, MissedHeartbeats: cfg.MissedHeartbeats,
		FailedProbes: cfg.FailedProbes, ForgetAfter: cfg.ForgetAfter}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if s.prober == nil {
		if cfg.ProbePath != "tcp" {
			client, err := probeClient(cfg)
			if err != nil {
				return nil, err
			}
			s.prober = &HTTPProber{Client: client, Path: cfg.ProbePath}
		} else {
			s.prober = &DialProber{}
		}
	}
	if s.geo == nil {
		if cfg.GeoIPDatabase != "" {
			s.geo, err = geoip.Open(cfg.GeoIPDatabase)
		} else {
			s.geo, err = geoip.Default()
		}
		if err != nil {
			return nil, fmt.Errorf("open GeoIP database: %w", err)
		}
		s.ownGeo = true
	}
	s.m = newMetrics(deps.Registry)
	s.reg = deps.Registry
	s.viewerLimit = newViewerLimiter(cfg.ViewerState.RequestsPerMinute)
	if s.alog, err = newAccessLog(cfg, deps, deps.Registry, "steering"); err != nil {
		if s.ownGeo {
			_ = s.geo.Close()
		}
		return nil, fmt.Errorf("access log: %w", err)
	}
	s.bufs.New = func() any { return new(hrw.Buffer) }
	s.pending = map[string]*hrw.Pending{}
	s.rebuild()
	return s, nil
}

// Close releases the GeoIP database New opened. Nil-safe and idempotent.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	var err error
	s.closeOnce.Do(func() {
		if s.ownGeo {
			err = s.geo.Close()
		}
		_ = s.alog.Close()
	})
	return err
}

// Config returns the Server's Config with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Observe takes one heartbeat into the health table.
func (s *Server) Observe(hb bus.Heartbeat) {
	s.m.heartbeats.Inc()
	if err := s.checkHeartbeat(hb); err != nil {
		s.m.ignored.Inc()
		if _, seen := s.warned.LoadOrStore(hb.Region+"/"+hb.Edge, struct{}{}); !seen {
			s.log.Warn("heartbeat ignored", "edge_id", hb.Edge, "region", hb.Region, "error", err)
		}
		return
	}
	s.apply(s.table.Heartbeat(hb, s.now()))
	// The heartbeat's load includes the viewers sent before it (those that arrived): start
	// counting again. After the rebuild, so no decision sees the old load without them.
	s.viewMu.Lock()
	p := s.pending[health.Key(hb.Region, hb.Edge)]
	s.viewMu.Unlock()
	if p != nil {
		p.Reset()
	}
}

func (s *Server) checkHeartbeat(hb bus.Heartbeat) error {
	if err := bus.ValidName(hb.Edge); err != nil {
		return fmt.Errorf("edge name: %w", err)
	}
	if _, ok := s.regionIndex(hb.Region); !ok {
		return fmt.Errorf("region %q is not configured", hb.Region)
	}
	return checkEdgeURL(hb.URL, hb.Edge, hb.Region, s.edgeURL)
}

func (s *Server) regionIndex(name string) (int, bool) {
	for i, r := range s.cfg.Regions {
		if r.Name == name {
			return i, true
		}
	}
	return 0, false
}

// observeMsg decodes a heartbeat message from NATS. The subject names the sender (the servers
// let an edge publish only its own, bus.Identity.Permissions): a heartbeat that speaks for
// another edge or region than its subject is ignored.
func (s *Server) observeMsg(subject string, data []byte) {
	var hb bus.Heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		s.m.ignored.Inc()
		s.log.Debug("unreadable heartbeat", "error", err)
		return
	}
	if subject != bus.HealthSubject(hb.Region, hb.Edge) {
		s.m.ignored.Inc()
		if _, seen := s.warned.LoadOrStore(subject, struct{}{}); !seen {
			s.log.Warn("heartbeat ignored: it names another edge than its subject", "subject", subject, "edge_id", hb.Edge, "region", hb.Region)
		}
		return
	}
	s.Observe(hb)
}

// Check runs one round of active probes of every edge in the table (concurrently, each bounded
// by ProbeTimeout), records the results, and then re-judges the table (missed heartbeats,
// forgotten edges).
func (s *Server) Check(ctx context.Context) {
	snap, _ := s.table.Snapshot(0)
	type result struct {
		region, edge string
		err          error
	}
	results := make([]result, len(snap.Edges))
	var wg sync.WaitGroup
	for i, e := range snap.Edges {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
			defer cancel()
			results[i] = result{e.Heartbeat.Region, e.Heartbeat.Edge, s.prober.Probe(pctx, e.Heartbeat.URL)}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: the failures are ours
	}
	now := s.now()
	var changes []health.Change
	for _, r := range results {
		if r.err != nil {
			s.m.probeFailures.Inc()
		}
		changes = append(changes, s.table.Probed(r.region, r.edge, r.err, now)...)
	}
	changes = append(changes, s.table.Tick(now)...)
	s.apply(changes)
}

// apply logs and publishes state changes and refreshes the view decisions read.
func (s *Server) apply(changes []health.Change) {
	for _, c := range changes {
		s.m.transitions.WithLabelValues(c.To).Inc()
		lvl := slog.LevelInfo
		if c.To == "down" {
			lvl = slog.LevelWarn
		}
		s.log.LogAttrs(context.Background(), lvl, "edge state changed", slog.String("edge_id", c.Edge), //nolint:contextcheck // logging only
			slog.String("region", c.Region), slog.String("url", c.URL), slog.String("from", c.From),
			slog.String("to", c.To), slog.String("reason", c.Reason))
		if s.events != nil {
			if b, err := json.Marshal(c); err == nil {
				if err := s.events.Publish(bus.EventSubject("edge"), b); err != nil {
					s.log.Warn("publish edge event", "error", err)
				}
			}
		}
	}
	s.rebuild()
}

// Run serves the HTTP API on ln, subscribes to heartbeats on nc (nil: Observe is fed by the
// caller) and probes the edges, until ctx ends; then it shuts the HTTP server down (5s at most).
// When Deps.Events was nil, state changes are published on nc. Call Run once.
func (s *Server) Run(ctx context.Context, nc *nats.Conn, ln net.Listener) error {
	if nc != nil {
		if s.events == nil {
			s.events = nc // before anything that publishes starts
		}
		sub, err := nc.Subscribe(bus.HealthWildcard, func(m *nats.Msg) { s.observeMsg(m.Subject, m.Data) })
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", bus.HealthWildcard, err)
		}
		defer sub.Unsubscribe() //nolint:errcheck // best effort at exit
		if err := nc.Flush(); err != nil {
			return fmt.Errorf("subscribe to %s: %w", bus.HealthWildcard, err)
		}
	}
	viewersDone := make(chan struct{})
	vctx, vcancel := context.WithCancel(ctx)
	defer func() { vcancel(); <-viewersDone }()
	go func() {
		defer close(viewersDone)
		if nc != nil && s.cfg.ViewerState.Region != "" {
			s.runViewerState(vctx, nc)
		}
	}()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		s.probeLoop(ctx)
	}()
	s.log.Info("steering serving", "listen", ln.Addr().String(), "regions", len(s.cfg.Regions))
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-probed
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) probeLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			func() {
				defer func() {
					if r := recover(); r != nil {
						s.log.Error("probe round panicked", "panic", r)
					}
				}()
				s.Check(ctx)
			}()
		}
	}
}
