package failover

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Error reasons, the values of duet_edge_origin_member_errors_total's reason label.
const (
	reasonError   = "error"   // no answer: connection refused or reset, DNS, TLS...
	reasonTimeout = "timeout" // no answer within the member's timeout (origin.ErrTimeout)
	reason5xx     = "5xx"     // the member answered with a server error
)

// metrics are the group's series. Labels are member names, which come from the config, so their
// number is bounded by the number of members.
type metrics struct {
	up        *prometheus.GaugeVec
	state     *prometheus.GaugeVec
	failovers *prometheus.CounterVec
	errors    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
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
