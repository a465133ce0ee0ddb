package viewerstate

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus metrics (duet_viewer_state_*).
type metrics struct {
	reads, writes, erasures, conflicts prometheus.Counter
	lag                                *prometheus.HistogramVec
	bytes, keys                        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reads:    prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_viewer_state_reads_total", Help: "Viewer state reads (titles and settings)."}),
		writes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_viewer_state_writes_total", Help: "Viewer state writes stored in this region."}),
		erasures: prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_viewer_state_erasures_total", Help: "Viewers erased in this region."}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_viewer_state_conflicts_resolved_total",
			Help: "Fields for which a read or write picked one region's copy over another region's differing copy (hybrid logical clock, last writer wins)."}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "duet_viewer_state_replication_lag_seconds",
			Help:    "From a viewer state write in region from to its arrival in region to (by the writer's hybrid logical clock, so clock skew between regions shows).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"from", "to"}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "duet_viewer_state_bucket_bytes", Help: "Size of this region's viewer state bucket (every region's copies)."}),
		keys:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "duet_viewer_state_bucket_keys", Help: "Keys in this region's viewer state bucket (every region's copies)."}),
	}
	for _, c := range []prometheus.Collector{m.reads, m.writes, m.erasures, m.conflicts, m.lag, m.bytes, m.keys} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register viewer state metrics: %w", err)
		}
	}
	return m, nil
}
