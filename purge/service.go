package purge

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duetcdn/duet/internal/bus"
)

// Token is one API credential. Name is what the audit log records. In flags and environment
// variables a token is written "name:secret".
type Token struct {
	// Name is what the audit log records for the purges sent with the token.
	Name string `yaml:"name"`
	// Secret is the bearer token itself, at least 16 characters.
	Secret string `yaml:"secret"`
}

// UnmarshalText reads "name:secret".
func (t *Token) UnmarshalText(b []byte) error {
	name, secret, ok := strings.Cut(string(b), ":")
	if !ok || name == "" || secret == "" {
		return errors.New(`a token is written "name:secret"`)
	}
	t.Name, t.Secret = name, secret
	return nil
}

// ServiceConfig configures `duet purge serve`.
type ServiceConfig struct {
	// Region is the region this service accepts purges for.
	Region string `yaml:"region"`
	// Regions lists every region (this one included): this region's stream sources the others'.
	Regions []string `yaml:"regions"`
	// Listen is the API address. Default ":8090".
	Listen string `yaml:"listen"`
	// Tokens are the accepted bearer tokens. At least one is required.
	Tokens []Token `yaml:"tokens"`
	// MaxItems bounds urls+prefixes+tags per request. Default 1000.
	MaxItems int `yaml:"max_items"`
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxWait bounds a request's "wait". Default 30s.
	MaxWait time.Duration `yaml:"max_wait"`
	// TickInterval is how often the service proves its region's purge path alive to the edges
	// (a tick in the region's purge stream). Default 1s.
	TickInterval time.Duration `yaml:"tick_interval"`
	// EdgeTTL: an edge whose last heartbeat is older is not expected to acknowledge. Default 5s.
	EdgeTTL time.Duration `yaml:"edge_ttl"`
	// History is how many purges GET /v1/purge/{id} remembers. Default 10000.
	History int `yaml:"history"`
}

// DefaultServiceConfig returns the defaults named in the field comments.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{Listen: ":8090", MaxItems: DefaultMaxItems, MaxBodyBytes: DefaultMaxBody,
		MaxWait: 30 * time.Second, TickInterval: time.Second, EdgeTTL: 5 * time.Second, History: 10000}
}

// Validate reports what to fix.
func (c *ServiceConfig) Validate() error {
	var errs []error
	if c.Region == "" {
		errs = append(errs, errors.New("region is required: the region whose purges this API accepts"))
	} else if err := bus.ValidRegion(c.Region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	}
	found := false
	for _, r := range c.Regions {
		if err := bus.ValidName(r); err != nil {
			errs = append(errs, fmt.Errorf("regions: %w", err))
		}
		found = found || r == c.Region
	}
	if !found && c.Region != "" {
		errs = append(errs, fmt.Errorf("regions must list every region, this one (%q) included", c.Region))
	}
	if len(c.Tokens) == 0 {
		errs = append(errs, errors.New("tokens: at least one bearer token is required"))
	}
	for i, t := range c.Tokens {
		if t.Name == "" || len(t.Secret) < 16 {
			errs = append(errs, fmt.Errorf("tokens[%d]: a name and a secret of at least 16 characters are required", i))
		}
	}
	if c.MaxItems <= 0 || c.MaxBodyBytes <= 0 || c.MaxWait <= 0 || c.TickInterval <= 0 || c.EdgeTTL <= 0 || c.History <= 0 {
		errs = append(errs, errors.New("max_items, max_body_bytes, max_wait, tick_interval, edge_ttl and history must be positive"))
	}
	return errors.Join(errs...)
}

// EdgeAck is one edge's acknowledgement of a purge, as the API reports it.
type EdgeAck struct {
	Edge    string    `json:"edge"`
	Region  string    `json:"region"`
	Applied time.Time `json:"applied"`
	// LatencyMS is the time from acceptance to the edge's apply, in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
	Entries   int     `json:"entries"`
	Error     string  `json:"error,omitempty"`
}

// Status is the API's account of one purge.
type Status struct {
	ID       string    `json:"id"`
	Region   string    `json:"region"`
	Accepted time.Time `json:"accepted"`
	By       string    `json:"by"`
	Sequence uint64    `json:"stream_sequence"`
	Acks     []EdgeAck `json:"acks"`
	// Missing names the edges that were live when the purge was accepted and have not
	// acknowledged it (yet).
	Missing []string `json:"missing"`
	// Complete is true when every expected edge has acknowledged.
	Complete bool `json:"complete"`
}

// record is what the service keeps per purge.
type record struct {
	p        bus.Purge
	seq      uint64
	expected map[string]string // edge → region, live at acceptance
	acks     map[string]bus.PurgeAck
	done     chan struct{} // closed when every expected edge acknowledged
	// stored is closed once the purge's publish has been answered: storeErr (written before
	// the close) says whether the stream holds it. A request repeating the id waits for it, so
	// that no 2xx is given for a purge that may not be stored.
	stored   chan struct{}
	storeErr error
}

// Service is the purge API of one region.
type Service struct {
	cfg ServiceConfig
	cop *http.CrossOriginProtection
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	now func() time.Time
	reg prometheus.Gatherer

	mu      sync.Mutex
	records map[string]*record  // guarded by mu
	order   []string            // ids in acceptance order, for the history bound; guarded by mu
	edges   map[string]edgeSeen // guarded by mu

	tickFailing bool // only the Run goroutine touches it

	subs      []*nats.Subscription // heartbeats and acknowledgements; Close unsubscribes
	closeOnce sync.Once

	accepted prometheus.Counter
	rejected *prometheus.CounterVec
	ackLat   prometheus.Histogram
}

type edgeSeen struct {
	region, state string
	at            time.Time
}

// ServiceOption changes how NewService builds the service (tests).
type ServiceOption func(*Service)

// WithClock sets the service's clock (purges' acceptance times, ticks, edge liveness). Default
// time.Now.
func WithClock(now func() time.Time) ServiceOption { return func(s *Service) { s.now = now } }

// NewService builds the service: it ensures the region's purge stream (sourcing every other
// region's) and subscribes to heartbeats and acknowledgements. Close releases the subscriptions.
func NewService(ctx context.Context, cfg ServiceConfig, nc *nats.Conn, log *slog.Logger, reg *prometheus.Registry, opts ...ServiceOption) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	var others []string
	for _, r := range cfg.Regions {
		if r != cfg.Region {
			others = append(others, r)
		}
	}
	if _, err := bus.EnsurePurgeStream(ctx, js, cfg.Region, others); err != nil {
		return nil, fmt.Errorf("ensure purge stream: %w", err)
	}
	f := promauto.With(reg)
	s := &Service{cfg: cfg, cop: http.NewCrossOriginProtection(), nc: nc, js: js, log: log.With("component", "purge", "region", cfg.Region), now: time.Now, reg: reg,
		records: map[string]*record{}, edges: map[string]edgeSeen{},
		accepted: f.NewCounter(prometheus.CounterOpts{Namespace: "duet", Subsystem: "purge", Name: "accepted_total",
			Help: "Purges accepted and stored in the region's stream."}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{Namespace: "duet", Subsystem: "purge", Name: "rejected_total",
			Help: "Purge requests rejected, by reason."}, []string{"reason"}),
		ackLat: f.NewHistogram(prometheus.HistogramOpts{Namespace: "duet", Subsystem: "purge", Name: "ack_latency_seconds",
			Help: "Time from a purge's acceptance to an edge's apply.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	for _, o := range opts {
		o(s)
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "duet", Subsystem: "purge", Name: "live_edges",
		Help: "Edges whose heartbeat is recent enough to expect their acknowledgements."}, func() float64 {
		return float64(len(s.liveEdges()))
	})
	for _, sub := range []struct {
		subject, what string
		cb            nats.MsgHandler
	}{{bus.HealthWildcard, "heartbeats", s.onHeartbeat}, {bus.PurgeAckWildcard, "acknowledgements", s.onAck}} {
		ns, err := nc.Subscribe(sub.subject, sub.cb)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("subscribe to %s: %w", sub.what, err)
		}
		s.subs = append(s.subs, ns)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("flush subscriptions: %w", err)
	}
	return s, nil
}

// Close stops listening to heartbeats and acknowledgements (the NATS connection is the
// caller's). Idempotent and nil-safe; Run must have returned or never been called.
func (s *Service) Close() {
	if s == nil {
		return
	}
	s.closeOnce.Do(func() {
		for _, sub := range s.subs {
			_ = sub.Unsubscribe()
		}
	})
}

func (s *Service) onHeartbeat(m *nats.Msg) {
	var hb bus.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Edge == "" {
		return
	}
	s.mu.Lock()
	s.edges[hb.Edge] = edgeSeen{region: hb.Region, state: hb.State, at: s.now()}
	s.mu.Unlock()
}

func (s *Service) onAck(m *nats.Msg) {
	var a bus.PurgeAck
	if err := json.Unmarshal(m.Data, &a); err != nil || a.ID == "" || a.Edge == "" {
		return
	}
	// The subject names the sender, and the servers let an edge publish only under its own name:
	// an acknowledgement that claims another edge is not believed.
	if region, edge, ok := bus.PurgeAckSender(m.Subject); !ok || region != a.Region || edge != a.Edge {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[a.ID]
	if !ok {
		return // another region's purge, or one older than the history
	}
	if _, dup := r.acks[a.Edge]; dup {
		return
	}
	r.acks[a.Edge] = a
	s.ackLat.Observe(a.Applied.Sub(r.p.Accepted).Seconds())
	if r.complete() {
		select {
		case <-r.done:
		default:
			close(r.done)
		}
	}
}

func (r *record) complete() bool {
	for e := range r.expected {
		if _, ok := r.acks[e]; !ok {
			return false
		}
	}
	return true
}

// liveEdges lists the edges heard from within EdgeTTL (draining ones included: they still
// serve what they have, so they must still apply purges).
func (s *Service) liveEdges() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	live := map[string]string{}
	for e, seen := range s.edges {
		if now.Sub(seen.at) <= s.cfg.EdgeTTL {
			live[e] = seen.region
		}
	}
	return live
}

// Run serves the API on ln and ticks until ctx ends.
func (s *Service) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	s.log.Info("purge service listening", "listen", ln.Addr().String())
	// Keep the region's stream sourcing the others: after a cut heals, a source would otherwise
	// wait out its retry backoff (about 40 s seen) before it catches up.
	watchDone := make(chan struct{})
	wctx, stopWatch := context.WithCancel(ctx)
	go func() {
		defer close(watchDone)
		_ = bus.WatchSources(wctx, s.js, s.cfg.Region, s.log)
	}()
	defer func() { stopWatch(); <-watchDone }()
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	s.tick(ctx)
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			return nil
		case err := <-errc:
			return err
		case <-t.C:
			s.tick(ctx)
		}
	}
}

// tick proves the region's purge path alive; failures are logged when they start and end, not
// at every tick.
func (s *Service) tick(ctx context.Context) {
	// A slow store delays a tick rather than dropping it (the next one follows anyway).
	tctx, cancel := context.WithTimeout(ctx, max(s.cfg.TickInterval, 2*time.Second))
	defer cancel()
	err := bus.PublishTick(tctx, s.js, s.cfg.Region, s.now())
	switch {
	case err != nil && !s.tickFailing:
		s.log.Warn("ticks not stored: edges everywhere will stop trusting their caches after their staleness bound", "error", err)
	case err == nil && s.tickFailing:
		s.log.Info("ticks stored again")
	}
	s.tickFailing = err != nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/purge", s.servePurge)
	mux.HandleFunc("GET /v1/purge/{id}", s.serveStatus)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.nc.IsConnected() {
			http.Error(w, "not ready: not connected to NATS", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return mux
}

// authorise returns the token's name, or "" when the request carries no valid token.
func (s *Service) authorise(r *http.Request) string {
	h := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return ""
	}
	name := ""
	for _, t := range s.cfg.Tokens {
		// Compare every token in constant time, and do not stop at a match: the time taken says
		// nothing about which token, or how much of one, was right.
		if subtle.ConstantTimeCompare([]byte(secret), []byte(t.Secret)) == 1 {
			name = t.Name
		}
	}
	return name
}

func (s *Service) reject(w http.ResponseWriter, status int, reason, msg string) {
	s.rejected.WithLabelValues(reason).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(encodeJSON(map[string]string{"error": msg}))
}

func (s *Service) servePurge(w http.ResponseWriter, r *http.Request) {
	by := s.authorise(r)
	if by == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="duet-purge"`)
		s.reject(w, http.StatusUnauthorized, "auth", "missing or wrong bearer token")
		return
	}
	// A browser cannot attach the token to a cross-site request without a CORS preflight this
	// API never answers; refusing cross-site and non-JSON requests as well keeps it that way
	// should a token ever sit in a cookie or a proxy add it.
	if err := s.cop.Check(r); err != nil {
		s.reject(w, http.StatusForbidden, "cross_site", "cross-site request refused: "+err.Error())
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.reject(w, http.StatusUnsupportedMediaType, "content_type", "send the purge as Content-Type: application/json")
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	req, wait, err := DecodeRequest(body, s.cfg.MaxItems, s.cfg.MaxWait)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, http.StatusRequestEntityTooLarge, "size", fmt.Sprintf("body larger than %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		s.reject(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	rec, fresh, err := s.accept(r.Context(), req, by)
	if err != nil {
		s.log.Error("purge not stored", "error", err)
		s.reject(w, http.StatusServiceUnavailable, "store", "purge not stored, nothing applied: "+err.Error())
		return
	}
	if fresh {
		s.log.Info("purge accepted", "purge_id", rec.p.ID, "by", by, "urls", len(req.URLs), "prefixes", len(req.Prefixes),
			"tags", len(req.Tags), "soft", req.Soft, "first", firstItem(req), "stream_sequence", rec.seq, "expected_edges", len(rec.expected))
	}
	status := http.StatusAccepted
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-rec.done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/purge/"+rec.p.ID)
	w.WriteHeader(status)
	_, _ = w.Write(encodeJSON(s.status(rec)))
}

func firstItem(r Request) string {
	for _, l := range [][]string{r.URLs, r.Prefixes, r.Tags} {
		if len(l) > 0 {
			return l[0]
		}
	}
	return ""
}

// accept stores a purge in the region's stream (once per id) and starts tracking it. It returns
// only once the stream holds the purge, or with the error that kept it out: a request that
// repeats the id of one still being stored waits for that store, and fails with it.
func (s *Service) accept(ctx context.Context, req Request, by string) (*record, bool, error) {
	id := req.ID
	if id == "" {
		id = nuid.Next()
	}
	s.mu.Lock()
	if rec, ok := s.records[id]; ok {
		s.mu.Unlock()
		return s.awaitStored(ctx, rec)
	}
	s.mu.Unlock()
	p := bus.Purge{ID: id, Region: s.cfg.Region, Target: req.Target, Accepted: s.now().UTC(), By: by}
	rec := &record{p: p, expected: s.liveEdges(), acks: map[string]bus.PurgeAck{}, done: make(chan struct{}),
		stored: make(chan struct{})}
	// Track before publishing: an edge can apply and acknowledge before PublishPurge returns.
	s.mu.Lock()
	if old, ok := s.records[id]; ok { // a concurrent request with the same id won
		s.mu.Unlock()
		return s.awaitStored(ctx, old)
	}
	s.records[id] = rec
	s.order = append(s.order, id)
	for len(s.order) > s.cfg.History {
		delete(s.records, s.order[0])
		s.order = s.order[1:]
	}
	if len(rec.expected) == 0 {
		close(rec.done)
	}
	s.mu.Unlock()
	// The store must not depend on this request staying: requests repeating the id wait for it.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ack, err := bus.PublishPurge(pctx, s.js, p)
	s.mu.Lock()
	if err != nil {
		if s.records[id] == rec {
			delete(s.records, id)
			if i := slices.Index(s.order, id); i >= 0 {
				s.order = slices.Delete(s.order, i, i+1)
			}
		}
		rec.storeErr = err
	} else {
		rec.seq = ack.Sequence
	}
	close(rec.stored)
	s.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	s.accepted.Inc()
	return rec, true, nil
}

// awaitStored waits until rec's store has been answered (or ctx ends) and reports its outcome.
func (s *Service) awaitStored(ctx context.Context, rec *record) (*record, bool, error) {
	select {
	case <-rec.stored:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("gave up waiting for the first request with this id to store it: %w", ctx.Err())
	}
	s.mu.Lock()
	err := rec.storeErr
	s.mu.Unlock()
	if err != nil {
		return nil, false, fmt.Errorf("the first request with this id failed to store it: %w", err)
	}
	return rec, false, nil
}

func (s *Service) serveStatus(w http.ResponseWriter, r *http.Request) {
	if s.authorise(r) == "" {
		s.reject(w, http.StatusUnauthorized, "auth", "missing or wrong bearer token")
		return
	}
	s.mu.Lock()
	rec, ok := s.records[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		s.reject(w, http.StatusNotFound, "unknown", "no purge with this id accepted here (or it is older than the history)")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(encodeJSON(s.status(rec)))
}

func (s *Service) status(rec *record) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{ID: rec.p.ID, Region: rec.p.Region, Accepted: rec.p.Accepted, By: rec.p.By, Sequence: rec.seq,
		Acks: []EdgeAck{}, Missing: []string{}}
	for _, a := range rec.acks {
		st.Acks = append(st.Acks, EdgeAck{Edge: a.Edge, Region: a.Region, Applied: a.Applied,
			LatencyMS: float64(a.Applied.Sub(rec.p.Accepted).Microseconds()) / 1000, Entries: a.Entries, Error: a.Error})
	}
	for e := range rec.expected {
		if _, ok := rec.acks[e]; !ok {
			st.Missing = append(st.Missing, e)
		}
	}
	sort.Slice(st.Acks, func(i, j int) bool { return st.Acks[i].Edge < st.Acks[j].Edge })
	sort.Strings(st.Missing)
	st.Complete = len(st.Missing) == 0
	return st
}
