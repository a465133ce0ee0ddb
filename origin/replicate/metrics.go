package replicate

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are a replicator's Prometheus metrics. Labels are bounded: region names (from the
// configuration) and fixed operation names.
type metrics struct {
	lag        prometheus.Histogram
	backlog    prometheus.Gauge
	bytes      *prometheus.CounterVec // from
	objects    *prometheus.CounterVec // from, op
	errors     *prometheus.CounterVec // op
	healed     *prometheus.CounterVec // op
	autoPurges prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	const ns, sub = "duet", "replicate"
	return &metrics{
		lag: f.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "lag_seconds",
			Help:    "Time from an object change in another region (its event) to the change committed in this region's bucket.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		backlog: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "backlog",
			Help: "Origin events not yet applied by this replicator (pending plus unacknowledged)."}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_total",
			Help: "Bytes copied into this region's bucket, by source region."}, []string{"from"}),
		objects: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "objects_total",
			Help: "Objects copied (op=put) or deleted (op=delete) in this region's bucket, by source region."}, []string{"from", "op"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Failed attempts, by operation (put, delete, purge, sweep, tombstone, event); events are retried."}, []string{"op"}),
		healed: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sweep_healed_total",
			Help: "Objects the anti-entropy sweep copied (op=put) or deleted (op=delete) that events had missed."}, []string{"op"}),
		autoPurges: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "auto_purges_total",
			Help: "Object URLs purged automatically because the object changed in this region's bucket."}),
	}
}
