package edge

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"github.com/duetcdn/duet/edge/object"
)

// ErrOriginBudget: the edge's budget of origin requests (origin.max_requests_per_sec) is spent
// and the request could not wait for it (the queue is full, or the wait would exceed
// origin.max_wait). Viewers get 503 with Retry-After.
var ErrOriginBudget = errors.New("origin request budget exhausted")

// originBudget paces origin requests to origin.max_requests_per_sec: a token bucket of one
// token, so that requests are spaced evenly and no second of the origin's sees more than the
// budget, with a bounded queue of requests waiting for their turn.
type originBudget struct {
	lim      *rate.Limiter
	perSec   float64
	maxQueue int64
	maxWait  time.Duration
	queued   atomic.Int64

	waits, refused prometheus.Counter
	waited         prometheus.Counter // seconds
}

func newOriginBudget(cfg OriginConfig, reg prometheus.Registerer) *originBudget {
	if cfg.MaxRequestsPerSec <= 0 {
		return nil
	}
	f := promauto.With(reg)
	b := &originBudget{
		lim: rate.NewLimiter(rate.Limit(cfg.MaxRequestsPerSec), 1), perSec: cfg.MaxRequestsPerSec,
		maxQueue: int64(cfg.MaxQueue), maxWait: cfg.MaxWait,
		waits: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_budget_waits_total",
			Help: "Origin requests that waited for the origin budget (origin.max_requests_per_sec).",
		}),
		refused: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_budget_refused_total",
			Help: "Origin requests refused because the origin budget was exhausted (viewers got 503 or a stale entry).",
		}),
		waited: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_budget_wait_seconds_total",
			Help: "Time origin requests spent waiting for the origin budget: the time the edge spends at its budget.",
		}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "duet", Subsystem: "edge", Name: "origin_budget_queue",
		Help: "Origin requests waiting for the origin budget now.",
	}, func() float64 { return float64(b.queued.Load()) })
	return b
}

// wait takes a turn from the budget, waiting for it up to max_wait in a queue of max_queue;
// noWait takes one only when it is free now (a stale entry can answer meanwhile). nil-safe.
func (b *originBudget) wait(ctx context.Context, noWait bool) error {
	if b == nil {
		return nil
	}
	if b.queued.Add(1) > b.maxQueue {
		b.queued.Add(-1)
		b.refused.Inc()
		return ErrOriginBudget
	}
	defer b.queued.Add(-1)
	// A turn is refused before it is reserved, never reserved and then given back: a
	// cancelled reservation returns its token to the bucket as if it had never been taken,
	// which lets later requests go early and a second hold more than the budget (measured:
	// 510 requests in five seconds at 100/s). The wait the bucket would ask now decides.
	if ahead := 1 - b.lim.Tokens(); ahead > 0 {
		d := time.Duration(ahead / b.perSec * float64(time.Second))
		if noWait || d > b.maxWait {
			b.refused.Inc()
			return ErrOriginBudget
		}
	}
	d := b.lim.Reserve().Delay()
	if d == 0 {
		return nil
	}
	b.waits.Inc()
	b.waited.Add(d.Seconds())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		// The turn stays spent: the origin's budget is kept even if a turn goes unused.
		return ctx.Err()
	}
}

// retryAfter is the Retry-After of a 503 for the budget: the time the queue takes to drain,
// at least a second.
func (b *originBudget) retryAfter() int {
	if b == nil {
		return 1
	}
	return max(1, int(math.Ceil(float64(b.queued.Load()+1)/b.perSec)))
}

// standsIn tells whether a stale entry may answer instead of a fill that failed with err: under
// stale-if-error, and, when the origin budget is what failed, while soft-purged or within
// stale-while-revalidate (the refill comes at the budget's pace, viewers are served meanwhile).
func (s *Server) standsIn(stale *object.Meta, err error, now time.Time) bool {
	if stale == nil || s.untrusted.Load() {
		return false
	}
	if usableOnError(stale, now) {
		return true
	}
	return errors.Is(err, ErrOriginBudget) && s.canWaitOut(stale, now)
}

// canWaitOut: a stale entry that may be served while the origin budget is exhausted.
func (s *Server) canWaitOut(stale *object.Meta, now time.Time) bool {
	return stale.Flags&object.SoftPurged != 0 ||
		!stale.MustRevalidate && age(stale, now) < stale.FreshFor+stale.StaleWhileRevalidate
}
