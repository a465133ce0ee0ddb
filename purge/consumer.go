package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
)

// Applier is what the consumer needs from an edge's cache.
type Applier interface {
	// ApplyPurge removes (or, soft, marks stale) what the purge names; it must be idempotent.
	ApplyPurge(ctx context.Context, p bus.Purge) (entries int, err error)
	// SetCacheTrusted tells the cache whether it may serve entries without revalidating them:
	// false while the edge may have missed purges.
	SetCacheTrusted(trusted bool)
}

// ConsumerConfig configures an edge's purge consumer.
type ConsumerConfig struct {
	// Edge and Region name the edge; the durable consumer is named after the edge.
	Edge   string
	Region string
	// Regions lists every region whose purges the edge must hear about (its own included).
	Regions []string
	// StalenessBound: when the edge has not heard a recent tick from every region for this long,
	// it stops trusting its cache until it has caught up. Default 10s.
	StalenessBound time.Duration
	// Now is the clock the staleness bound is measured with. Default time.Now.
	Now func() time.Time
}

// ConsumerMetrics are the series the consumer updates. They are the edge's (the consumer runs
// inside it): the edge registers them (edge.NewPurgeMetrics, as duet_edge_*) and the consumer only
// updates them.
type ConsumerMetrics interface {
	// PurgesApplied counts the purges the edge applied.
	PurgesApplied() prometheus.Counter
	// PurgeLag observes the seconds from a purge's acceptance to its apply.
	PurgeLag() prometheus.Observer
	// CacheTrusted is 1 while the edge trusts its cache, 0 while it has the origin confirm each
	// entry before serving it (at most once per staleness bound).
	CacheTrusted() prometheus.Gauge
	// CacheTrustLost counts the times the edge stopped trusting its cache.
	CacheTrustLost() prometheus.Counter
}

// Consumer applies a region's purge stream to one edge and acknowledges every purge.
type Consumer struct {
	cfg ConsumerConfig
	nc  *nats.Conn
	js  jetstream.JetStream
	app Applier
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	lastTick map[string]time.Time // region → newest tick time seen; guarded by mu
	future   map[string]bool      // region → its last tick was from the future (logged once); guarded by mu
	caughtUp bool                 // the consumer has delivered everything pending; guarded by mu
	trusted  bool                 // what the applier was last told; guarded by mu

	applied    prometheus.Counter
	applyLag   prometheus.Observer
	trustedG   prometheus.Gauge
	trustLosts prometheus.Counter
}

// NewConsumer validates cfg. m receives the consumer's metrics.
func NewConsumer(cfg ConsumerConfig, nc *nats.Conn, app Applier, log *slog.Logger, m ConsumerMetrics) (*Consumer, error) {
	if cfg.StalenessBound == 0 {
		cfg.StalenessBound = 10 * time.Second
	}
	var errs []error
	for _, n := range []string{cfg.Edge, cfg.Region} {
		if err := bus.ValidName(n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(cfg.Regions) == 0 {
		errs = append(errs, errors.New("purge consumer: regions must list every region"))
	}
	if cfg.StalenessBound < 0 {
		errs = append(errs, errors.New("purge consumer: staleness bound must be positive"))
	}
	if m == nil {
		errs = append(errs, errors.New("purge consumer: no metrics"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Consumer{cfg: cfg, nc: nc, js: js, app: app, log: log.With("component", "purge-consumer"), now: now,
		lastTick: map[string]time.Time{}, future: map[string]bool{},
		applied: m.PurgesApplied(), applyLag: m.PurgeLag(), trustedG: m.CacheTrusted(), trustLosts: m.CacheTrustLost(),
	}, nil
}

// Run consumes until ctx ends. The cache starts untrusted: a (re)started edge serves nothing
// unrevalidated until it has applied every purge it missed.
func (c *Consumer) Run(ctx context.Context) error {
	c.app.SetCacheTrusted(false)
	stream := bus.PurgeStreamName(c.cfg.Region)
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = c.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:           "edge-" + c.cfg.Edge,
			AckPolicy:         jetstream.AckExplicitPolicy,
			DeliverPolicy:     jetstream.DeliverAllPolicy,
			AckWait:           30 * time.Second,
			MaxAckPending:     10000,
			InactiveThreshold: 7 * 24 * time.Hour,
		})
		if err == nil {
			break
		}
		c.log.Warn("purge consumer not ready, retrying", "stream", stream, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { c.handle(ctx, m) }, jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.log.Debug("purge consumer", "error", err)
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", stream, err)
	}
	defer cc.Stop()
	// A consumer with nothing pending has caught up even before any message arrives.
	if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
		c.mu.Lock()
		c.caughtUp = true
		c.mu.Unlock()
	}
	t := time.NewTicker(max(c.cfg.StalenessBound/20, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.evaluate()
		}
	}
}

func (c *Consumer) handle(ctx context.Context, m jetstream.Msg) {
	subj := m.Subject()
	switch {
	case strings.HasSuffix(subj, ".tick"):
		var t bus.Tick
		if err := json.Unmarshal(m.Data(), &t); err == nil {
			if region, at, ok := c.tickTime(subj, t, m); ok {
				c.mu.Lock()
				if at.After(c.lastTick[region]) {
					c.lastTick[region] = at
				}
				c.mu.Unlock()
			}
		}
		_ = m.Ack()
	default:
		var p bus.Purge
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			c.log.Error("unreadable purge message dropped", "subject", subj, "error", err)
			_ = m.Term()
			return
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := c.app.ApplyPurge(actx, p)
		cancel()
		applied := c.now().UTC()
		ack := bus.PurgeAck{ID: p.ID, Edge: c.cfg.Edge, Region: c.cfg.Region, Applied: applied, Entries: n}
		if err != nil {
			// The applier applies what it can and names what it could not (an item no cached
			// key can match); redelivering would not change that, so the purge is acknowledged
			// with the error for the API to show.
			c.log.Warn("purge applied in part", "purge_id", p.ID, "error", err)
			ack.Error = err.Error()
		}
		// A plain ack: if it is lost the purge is delivered again and applied again, which is
		// harmless (purges are idempotent), while waiting for the server to confirm every ack
		// would cap an edge at one purge per round trip.
		_ = m.Ack()
		c.applied.Inc()
		c.applyLag.Observe(applied.Sub(p.Accepted).Seconds())
		if b, err := json.Marshal(ack); err == nil {
			_ = c.nc.Publish(bus.PurgeAckSubject(c.cfg.Region, c.cfg.Edge, p.ID), b)
		}
	}
	if md, err := m.Metadata(); err == nil {
		c.mu.Lock()
		c.caughtUp = md.NumPending == 0
		c.mu.Unlock()
	}
}

// MaxTickSkew is how far a tick's own time may be ahead of the time its stream stored it (or of
// the edge's clock) before the tick is ignored: the clocks of the purge service, the NATS servers
// and the edges differ by that much at most when they are kept by NTP.
const MaxTickSkew = 2 * time.Second

// tickTime is what a tick proves: that its region's purges up to the returned time are in the
// stream. A tick is not believed beyond what was heard: its time is the earliest of its own (set
// by its region's purge service), the server-assigned time its message was stored in this region's
// stream (for a tick sourced from another region, when it arrived here), and the edge's clock. A
// tick that claims a time beyond MaxTickSkew ahead of either is ignored: it would keep the cache
// trusted after its region falls silent (a tick dated a day ahead, a day). Its region is its
// subject's (the servers let only that region's purge service write it), not what it says.
func (c *Consumer) tickTime(subject string, t bus.Tick, m jetstream.Msg) (string, time.Time, bool) {
	region, ok := strings.CutSuffix(strings.TrimPrefix(subject, "duet.purge."), ".tick")
	if !ok || subject != bus.PurgeTickSubject(region) || (t.Region != "" && t.Region != region) {
		c.log.Warn("tick ignored: its subject and its region disagree", "subject", subject, "tick_region", t.Region)
		return "", time.Time{}, false
	}
	md, err := m.Metadata()
	if err != nil {
		return "", time.Time{}, false
	}
	now := c.now()
	future := t.At.After(md.Timestamp.Add(MaxTickSkew)) || t.At.After(now.Add(MaxTickSkew))
	c.mu.Lock()
	was := c.future[region]
	c.future[region] = future
	c.mu.Unlock()
	if future {
		if !was {
			c.log.Warn("tick from the future ignored: it does not extend the cache's trust (check the purge service's clock)",
				"region", region, "tick_at", t.At, "stored_at", md.Timestamp, "skew_allowed", MaxTickSkew)
		}
		return "", time.Time{}, false
	}
	at := t.At
	if md.Timestamp.Before(at) {
		at = md.Timestamp
	}
	if now.Before(at) {
		at = now
	}
	return region, at, true
}

// evaluate decides whether the cache may be trusted: the stream is caught up and every region's
// latest tick is within the staleness bound.
func (c *Consumer) evaluate() {
	now := c.now()
	c.mu.Lock()
	ok := c.caughtUp
	var stale []string
	for _, r := range c.cfg.Regions {
		if at, seen := c.lastTick[r]; !seen || now.Sub(at) > c.cfg.StalenessBound {
			ok = false
			stale = append(stale, r)
		}
	}
	c.mu.Unlock()
	if c.setTrusted(ok) && !ok {
		c.log.Warn("cache no longer trusted: purges may be missing; each entry is revalidated before it is served, then at most once per staleness bound", "regions_not_heard", stale)
	}
}

// setTrusted tells the applier when trust changes; it reports whether it changed.
func (c *Consumer) setTrusted(v bool) bool {
	c.mu.Lock()
	changed := c.trusted != v
	c.trusted = v
	c.mu.Unlock()
	if !changed {
		return false
	}
	c.app.SetCacheTrusted(v)
	if v {
		c.trustedG.Set(1)
		c.log.Info("cache trusted: every region's purges are current")
	} else {
		c.trustedG.Set(0)
		c.trustLosts.Inc()
	}
	return true
}

// StalenessBound is the bound in force (the configured one, or the default).
func (c *Consumer) StalenessBound() time.Duration { return c.cfg.StalenessBound }

// Trusted reports the consumer's current verdict.
func (c *Consumer) Trusted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trusted
}
