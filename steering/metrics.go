package steering

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/duetcdn/duet/steering/hrw"
)

// metrics are the service's Prometheus series; every label value is bounded.
type metrics struct {
	decisions     *prometheus.CounterVec // by reason (hrw.Reasons) and api (route, redirect, hls, dash)
	geoipMisses   prometheus.Counter
	badRequests   *prometheus.CounterVec // by api
	heartbeats    prometheus.Counter
	ignored       prometheus.Counter
	transitions   *prometheus.CounterVec // by to-state
	edges         *prometheus.GaugeVec   // by state: the table's size
	probeFailures prometheus.Counter
}

var apis = []string{"route", "redirect", "hls", "dash"}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		decisions: f.NewCounterVec(prometheus.CounterOpts{Namespace: "duet", Subsystem: "steering", Name: "decisions_total",
			Help: "Routing decisions, by the reason for the first choice and by API."}, []string{"reason", "api"}),
		geoipMisses: f.NewCounter(prometheus.CounterOpts{Namespace: "duet", Subsystem: "steering", Name: "geoip_misses_total",
			Help: "Decisions for clients the GeoIP database could not place (private, unknown): they start from the default region."}),
		badRequests: f.NewCounterVec(prometheus.CounterOpts{Namespace: "duet", Subsystem: "steering", Name: "bad_requests_total",
			Help: "Requests refused with 400, by API."}, []string{"api"}),
		heartbeats: f.NewCounter(prometheus.CounterOpts{Namespace: "duet", Subsystem: "steering", Name: "heartbeats_total",
			Help: "Edge heartbeats received."}),
		ignored: f.NewCounter(prometheus.CounterOpts{Namespace: "duet", Subsystem: "steering", Name: "heartbeats_ignored_total",
			Help: "Heartbeats ignored: unreadable, or from a region not configured."}),
		transitions: f.NewCounterVec(prometheus.CounterOpts{Namespace: "duet", Subsystem: "steering", Name: "edge_transitions_total",
			Help: "Edge state changes, by the new state."}, []string{"to"}),
		edges: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "duet", Subsystem: "steering", Name: "edges",
			Help: "Edges in the health table, by state."}, []string{"state"}),
		probeFailures: f.NewCounter(prometheus.CounterOpts{Namespace: "duet", Subsystem: "steering", Name: "probe_failures_total",
			Help: "Failed active probes of edges."}),
	}
	for _, r := range hrw.Reasons() {
		for _, a := range apis {
			m.decisions.WithLabelValues(string(r), a)
		}
	}
	for _, a := range append(slices.Clone(apis), "viewers") {
		m.badRequests.WithLabelValues(a)
	}
	for _, s := range []string{"up", "draining", "down", "forgotten"} {
		m.transitions.WithLabelValues(s)
		if s != "forgotten" {
			m.edges.WithLabelValues(s)
		}
	}
	return m
}
