package edge

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// OriginMetrics are the edge's series about its origin failover group (duet_edge_origin_*). The
// edge owns their names; origin/failover, which the edge fetches through, updates them (it
// declares what it needs as failover.Metrics).
type OriginMetrics struct {
	up, state         *prometheus.GaugeVec
	failovers, errors *prometheus.CounterVec
}

// NewOriginMetrics registers the origin series on reg.
func NewOriginMetrics(reg prometheus.Registerer) (*OriginMetrics, error) {
	m := &OriginMetrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_up",
			Help: "1 while the origin member's circuit breaker is closed, 0 while it is open or half-open.",
		}, []string{"origin"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_breaker_state",
			Help: "The origin member's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"origin"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_failovers_total",
			Help: "Fetches that moved from one origin member to the next after a failure.",
		}, []string{"from", "to"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_member_errors_total",
			Help: "Failed attempts at an origin member, by reason: error (no answer), timeout, 5xx.",
		}, []string{"origin", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.up, m.state, m.failovers, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register origin failover metrics: %w", err)
		}
	}
	return m, nil
}

func (m *OriginMetrics) OriginUp(member string) prometheus.Gauge {
	return m.up.WithLabelValues(member)
}

func (m *OriginMetrics) BreakerState(member string) prometheus.Gauge {
	return m.state.WithLabelValues(member)
}

func (m *OriginMetrics) MemberErrors(member, reason string) prometheus.Counter {
	return m.errors.WithLabelValues(member, reason)
}

func (m *OriginMetrics) Failovers(from, to string) prometheus.Counter {
	return m.failovers.WithLabelValues(from, to)
}

// PurgeMetrics are the edge's series about its purge consumer (duet_edge_purges_applied_total,
// duet_edge_purge_lag_seconds, duet_edge_cache_trusted, duet_edge_cache_trust_lost_total). The
// edge owns their names; package purge's consumer, which runs inside the edge, updates them (it
// declares what it needs as purge.ConsumerMetrics).
type PurgeMetrics struct {
	applied, trustLost prometheus.Counter
	lag                prometheus.Histogram
	trusted            prometheus.Gauge
}

// NewPurgeMetrics registers the purge consumer's series on reg.
func NewPurgeMetrics(reg prometheus.Registerer) (*PurgeMetrics, error) {
	m := &PurgeMetrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "duet", Subsystem: "edge", Name: "purges_applied_total",
			Help: "Purges this edge applied from its region's purge stream."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "duet", Subsystem: "edge", Name: "purge_lag_seconds",
			Help: "Time from a purge's acceptance to its apply on this edge.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		trusted: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "duet", Subsystem: "edge", Name: "cache_trusted",
			Help: "1 when the edge has heard every region's purges recently and serves its cache; 0 while it revalidates each entry (at most once per staleness bound) before serving it."}),
		trustLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "duet", Subsystem: "edge", Name: "cache_trust_lost_total",
			Help: "Times the edge stopped trusting its cache (purge stream lost for longer than the staleness bound)."}),
	}
	for _, c := range []prometheus.Collector{m.applied, m.lag, m.trusted, m.trustLost} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register purge consumer metrics: %w", err)
		}
	}
	return m, nil
}

func (m *PurgeMetrics) PurgesApplied() prometheus.Counter  { return m.applied }
func (m *PurgeMetrics) PurgeLag() prometheus.Observer      { return m.lag }
func (m *PurgeMetrics) CacheTrusted() prometheus.Gauge     { return m.trusted }
func (m *PurgeMetrics) CacheTrustLost() prometheus.Counter { return m.trustLost }
