package failover

import "github.com/prometheus/client_golang/prometheus"

// Error reasons, the values of the errors series' reason label.
const (
	reasonError   = "error"   // no answer: connection refused or reset, DNS, TLS...
	reasonTimeout = "timeout" // no answer within the member's timeout (origin.ErrTimeout)
	reason5xx     = "5xx"     // the member answered with a server error
)

// Metrics are the series a group updates. They belong to whoever fetches through the group
// (the edge registers them as duet_edge_origin_*: edge.NewOriginMetrics); the group only updates
// them. Labels are member names, which come from the config, so their number is bounded.
type Metrics interface {
	// OriginUp is 1 while the member's breaker is closed, 0 while it is open or half-open.
	OriginUp(member string) prometheus.Gauge
	// BreakerState is the member's breaker: 0 closed, 1 half-open, 2 open.
	BreakerState(member string) prometheus.Gauge
	// MemberErrors counts failed attempts at the member, by reason: error, timeout, 5xx.
	MemberErrors(member, reason string) prometheus.Counter
	// Failovers counts fetches that moved from one member to the next after a failure.
	Failovers(from, to string) prometheus.Counter
}

// unservedMetrics are kept and never served: for a group without Config.Metrics.
type unservedMetrics struct{}

func (unservedMetrics) OriginUp(string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: "origin_up"})
}

func (unservedMetrics) BreakerState(string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: "origin_breaker_state"})
}

func (unservedMetrics) MemberErrors(string, string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "origin_member_errors_total"})
}

func (unservedMetrics) Failovers(string, string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "origin_failovers_total"})
}
