// Package loadtest drives load at a running Duet (`duet dev`) and reports what viewers saw:
// throughput, latency percentiles corrected for coordinated omission (HdrHistogram), errors,
// hit ratio, origin offload, and what happened when the scenario stopped edges and regions or
// sent purges. Scenarios: zipf (vegeta at a constant rate over a Zipf-popular catalogue),
// flash-crowd, failover and purge-storm (HLS viewers that follow steering). The report
// package renders the outcome.
package loadtest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/duetcdn/duet/internal/route"
	"github.com/duetcdn/duet/loadtest/report"
)

// Bounds on one run: a load generator must never run away.
const (
	MaxDuration = 10 * time.Minute
	MaxRate     = 50_000
	MaxViewers  = 20_000
	MaxObjects  = 100_000
	MaxObjSize  = 64 << 20
)

// Config is one run. Zero values take the defaults of DefaultConfig where noted.
type Config struct {
	// Control is `duet dev`'s control API. Default http://127.0.0.1:7070.
	Control string
	// ControlToken is the control API's bearer token (`duet dev` prints it and keeps it in its
	// state directory's secrets.json).
	ControlToken string
	// Scenario is one of Scenarios().
	Scenario string
	// Duration of the load, at most MaxDuration. Default 30s.
	Duration time.Duration
	// Rate is zipf's request rate (requests/s, at most MaxRate). Default 200.
	Rate int
	// Viewers is how many HLS viewers flash-crowd, failover and purge-storm run (at most
	// MaxViewers). Default: 2000 for flash-crowd, 20 otherwise.
	Viewers int
	// Ramp is how long flash-crowd takes to start all its viewers. Default 2s.
	Ramp time.Duration
	// Objects and ObjectSize shape zipf's catalogue. Defaults 500 and 64 KiB.
	Objects    int
	ObjectSize int64
	// ZipfS is the Zipf exponent of zipf's popularity. Default 0.9.
	ZipfS float64
	// PurgeRate is purge-storm's purges per second. Default 5.
	PurgeRate float64
	// Speed plays video faster than real time (segments Duration/Speed apart); tests use it to
	// see a whole stream in seconds. Default 1 (real time).
	Speed float64
	// Timeout bounds one request. Default 2s.
	Timeout time.Duration
	// Seed makes the run's random choices repeatable. Default 1.
	Seed uint64
	// AllowRemote lets the run send load to non-loopback addresses (see Guard).
	AllowRemote bool
}

// DefaultConfig is the configuration of `duet loadtest` without flags.
func DefaultConfig() Config {
	return Config{Control: "http://127.0.0.1:7070", Scenario: "zipf", Duration: 30 * time.Second, Rate: 200,
		Ramp: 2 * time.Second, Objects: 500, ObjectSize: 64 << 10, ZipfS: 0.9, PurgeRate: 5, Speed: 1,
		Timeout: 2 * time.Second, Seed: 1}
}

type scenarioFunc func(ctx context.Context, e *env) error

// scenarios are the runnable scenarios by name.
var scenarios = map[string]scenarioFunc{
	"zipf":        runZipf,
	"flash-crowd": runFlashCrowd,
	"failover":    runFailover,
	"purge-storm": runPurgeStorm,
}

// Scenarios lists the scenario names, sorted.
func Scenarios() []string {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (c *Config) validate() error {
	if _, ok := scenarios[c.Scenario]; !ok {
		return fmt.Errorf("%w %q: use one of %s", ErrUnknownScenario, c.Scenario, strings.Join(Scenarios(), ", "))
	}
	def := DefaultConfig()
	if c.Viewers == 0 {
		c.Viewers = 20
		if c.Scenario == "flash-crowd" {
			c.Viewers = 2000
		}
	}
	c.Control = cmp.Or(c.Control, def.Control)
	c.Duration, c.Ramp, c.Timeout = cmp.Or(c.Duration, def.Duration), cmp.Or(c.Ramp, def.Ramp), cmp.Or(c.Timeout, def.Timeout)
	c.Rate, c.Objects, c.ObjectSize = cmp.Or(c.Rate, def.Rate), cmp.Or(c.Objects, def.Objects), cmp.Or(c.ObjectSize, def.ObjectSize)
	c.ZipfS, c.PurgeRate, c.Speed = cmp.Or(c.ZipfS, def.ZipfS), cmp.Or(c.PurgeRate, def.PurgeRate), cmp.Or(c.Speed, 1)
	c.Seed = cmp.Or(c.Seed, def.Seed)
	c.Ramp = min(c.Ramp, c.Duration) // a short run starts its crowd within the run
	switch {
	case c.Duration < 0 || c.Duration > MaxDuration:
		return fmt.Errorf("%w: duration %s: use up to %s", ErrConfig, c.Duration, MaxDuration)
	case c.Rate < 0 || c.Rate > MaxRate:
		return fmt.Errorf("%w: rate %d: use 1..%d requests/s", ErrConfig, c.Rate, MaxRate)
	case c.Viewers < 0 || c.Viewers > MaxViewers:
		return fmt.Errorf("%w: viewers %d: use 1..%d", ErrConfig, c.Viewers, MaxViewers)
	case c.Objects < 0 || c.Objects > MaxObjects:
		return fmt.Errorf("%w: objects %d: use 1..%d", ErrConfig, c.Objects, MaxObjects)
	case c.ObjectSize < 0 || c.ObjectSize > MaxObjSize:
		return fmt.Errorf("%w: object size %d: use 1..%d bytes", ErrConfig, c.ObjectSize, MaxObjSize)
	case c.Ramp < 0:
		return fmt.Errorf("%w: ramp %s: use 0..duration", ErrConfig, c.Ramp)
	case c.Timeout < 0 || c.Timeout > time.Minute:
		return fmt.Errorf("%w: timeout %s: use up to 1m", ErrConfig, c.Timeout)
	case !(c.ZipfS > 0):
		return fmt.Errorf("%w: zipf exponent %v: use s > 0", ErrConfig, c.ZipfS)
	case !(c.PurgeRate > 0) || c.PurgeRate > 1000:
		return fmt.Errorf("%w: purge rate %v: use up to 1000 purges/s", ErrConfig, c.PurgeRate)
	case !(c.Speed > 0) || c.Speed > 1000:
		return fmt.Errorf("%w: speed %v: use 0 < speed <= 1000", ErrConfig, c.Speed)
	}
	return nil
}

// Deps are a run's collaborators.
type Deps struct {
	Logger *slog.Logger // default: discard
	// Client sends the load; default: one with a transport sized for the run.
	Client *http.Client
	// Control, when set, replaces the HTTP client of Config.Control (tests).
	Control Control
}

// env is what a running scenario works with.
type env struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	control Control
	cluster *Cluster
	guard   Guard
	rec     *recorder
	router  *router
	t0      time.Time

	mu     sync.Mutex // guards byURL and tables
	byURL  map[string][2]string
	tables []report.Table
}

// whois names the edge and region of a route edge, preferring the cluster's names.
func (e *env) whois(re route.Edge) (name, region string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if nr, ok := e.byURL[re.URL]; ok {
		return nr[0], nr[1]
	}
	return re.Name, re.Region
}

func (e *env) table(t report.Table) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tables = append(e.tables, t)
}

// event records an event now.
func (e *env) event(kind, target, detail string) {
	e.log.Info("event", "kind", kind, "target", target, "detail", detail)
	e.rec.event(time.Now(), kind, target, detail)
}

// rng returns a random source derived from the seed and a stream number.
func (e *env) rng(stream uint64) *rand.Rand { return rand.New(rand.NewPCG(e.cfg.Seed, stream)) }

// Validate reports what to fix in cfg before anything runs (the scenario, bounds, and a
// control URL off loopback without AllowRemote).
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return Guard{AllowRemote: c.AllowRemote}.Check("control URL", c.Control)
}

// Run runs one scenario against the cluster behind cfg.Control and returns its summary.
func Run(ctx context.Context, cfg Config, deps Deps) (*report.Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	guard := Guard{AllowRemote: cfg.AllowRemote}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Client == nil {
		tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second, DisableCompression: true}
		defer tr.CloseIdleConnections()
		deps.Client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if deps.Control == nil {
		deps.Control = NewHTTPControl(cfg.Control, cfg.ControlToken, &http.Client{Transport: deps.Client.Transport, Timeout: 5 * time.Second})
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cluster, err := deps.Control.Cluster(cctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("read the cluster from %s: %w", cfg.Control, err)
	}
	if err := cluster.check(guard); err != nil {
		return nil, err
	}
	var regions, steerings []string
	for _, r := range cluster.Regions {
		regions = append(regions, r.Name)
		if r.Steering != "" {
			steerings = append(steerings, r.Steering)
		}
	}
	if len(steerings) == 0 {
		return nil, fmt.Errorf("%w: the cluster has no steering URL", ErrConfig)
	}
	e := &env{
		cfg: cfg, log: deps.Logger.With("component", "loadtest", "scenario", cfg.Scenario), client: deps.Client,
		control: deps.Control, cluster: cluster, guard: guard, byURL: cluster.edgeByURL(),
		router: &router{client: &http.Client{Transport: deps.Client.Transport, Timeout: cfg.Timeout}, guard: guard, steerings: steerings},
	}
	before := e.scrapeAll(ctx)
	e.t0 = time.Now()
	e.rec = newRecorder(e.t0, regions)
	// The run is bounded: scenarios stop at Duration, and this deadline catches any that would not.
	rctx, rcancel := context.WithTimeout(ctx, cfg.Duration+cfg.Timeout+30*time.Second)
	defer rcancel()
	sctx, scancel := context.WithCancel(rctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); e.sampleOrigin(sctx, maps.Clone(before)) }()
	runErr := scenarios[cfg.Scenario](rctx, e)
	scancel()
	<-sampled
	elapsed := time.Since(e.t0)
	after := e.scrapeAll(ctx)

	s := &report.Summary{Scenario: cfg.Scenario, Control: cfg.Control, Started: e.t0}
	e.rec.summary(s, elapsed)
	s.OriginOffload = -1
	var served, origin float64
	for name, a := range after {
		if b, ok := before[name]; ok {
			d := delta(b, a)
			served += d.ServedBytes
			origin += d.OriginBytes
		}
	}
	if served > 0 {
		s.OriginOffload = max(0, 1-origin/served)
	} else {
		s.Notes = append(s.Notes, "origin offload: no edge /metrics could be read before and after the run")
	}
	s.Tables = e.tables
	if runErr != nil {
		return s, fmt.Errorf("scenario %s: %w", cfg.Scenario, runErr)
	}
	return s, nil
}

// sampleOrigin records the edges' origin fetches every second until ctx ends.
func (e *env) sampleOrigin(ctx context.Context, prev map[string]edgeCounters) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			var n float64
			for name, c := range e.scrapeAll(ctx) {
				if p, ok := prev[name]; ok {
					n += delta(p, c).OriginFetches
				}
				prev[name] = c
			}
			e.rec.originFetches(now, n)
		}
	}
}

// scrapeAll reads every edge's counters; edges that do not answer are left out.
func (e *env) scrapeAll(ctx context.Context) map[string]edgeCounters {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := map[string]edgeCounters{}
	for _, r := range e.cluster.Regions {
		for _, ed := range r.Edges {
			if ed.Admin == "" {
				continue
			}
			c, err := scrape(ctx, e.client, ed.Admin)
			if err != nil {
				e.log.Debug("scrape edge metrics", "edge", ed.Name, "err", err)
				continue
			}
			out[ed.Name] = c
		}
	}
	return out
}
