package edge

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the edge's Prometheus series. Labels are bounded: cache statuses, tiers and
// result classes, never URLs or keys.
type metrics struct {
	requests      [numCacheStatus]prometheus.Counter
	latency       [numCacheStatus]prometheus.Observer
	bytesMemory   prometheus.Counter // body bytes served from each tier, and streamed from fills
	bytesDisk     prometheus.Counter
	bytesOrigin   prometheus.Counter
	originFetches *prometheus.CounterVec
	originErrors  *prometheus.CounterVec
	originLatency prometheus.Histogram
	originBytes   prometheus.Counter
	collapsed     prometheus.Counter
	purged        *prometheus.CounterVec
	acceptErrors  *prometheus.CounterVec
	// fillsAbandoned counts fills stopped because their last viewer left (bgFill).
	fillsAbandoned prometheus.Counter

	// Plain counters for the edge's own heartbeat (cheaper to read than the Prometheus ones).
	nRequests, nHits atomic.Uint64
	nEgress          atomic.Int64
	nOriginFetches   atomic.Uint64
	nOriginFailures  atomic.Uint64 // connection errors, timeouts, 5xx
}

func newMetrics(reg prometheus.Registerer, st *store, watch *connWatch) *metrics {
	f := promauto.With(reg)
	req := f.NewCounterVec(prometheus.CounterOpts{
		Namespace: "duet", Subsystem: "edge", Name: "requests_total",
		Help: "Viewer requests by how the cache answered them.",
	}, []string{"cache_status"})
	lat := f.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "duet", Subsystem: "edge", Name: "request_duration_seconds",
		Help:    "Time to the response headers, by cache status.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
	}, []string{"cache_status"})
	by := f.NewCounterVec(prometheus.CounterOpts{
		Namespace: "duet", Subsystem: "edge", Name: "served_bytes_total",
		Help: "Body bytes handed to viewers, by the tier they came from (origin: streamed from a fill).",
	}, []string{"tier"})
	m := &metrics{
		bytesMemory: by.WithLabelValues("memory"), bytesDisk: by.WithLabelValues("disk"), bytesOrigin: by.WithLabelValues("origin"),
		originFetches: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_fetches_total",
			Help: "Origin fetches by result (ok, 304, 4xx, 5xx, error).",
		}, []string{"result"}),
		originErrors: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_errors_total",
			Help: "Origin failures by kind (connect, 5xx, body).",
		}, []string{"kind"}),
		originLatency: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_fetch_duration_seconds",
			Help:    "Time to the origin's response headers.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		originBytes: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "origin_bytes_total",
			Help: "Body bytes read from origins.",
		}),
		collapsed: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "collapsed_requests_total",
			Help: "Requests that joined an origin fetch another request had started.",
		}),
		fillsAbandoned: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "fills_abandoned_total",
			Help: "Origin fetches stopped because their last viewer left long before the end (cache.background_fill_percent).",
		}),
		purged: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "purged_entries_total",
			Help: "Entries removed (hard) or marked stale (soft) by purges.",
		}, []string{"mode"}),
		acceptErrors: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "accept_errors_total",
			Help: "Failed accepts of viewer connections (retried after a backoff), by reason (emfile, enfile, enobufs, enomem, econnaborted, timeout, other).",
		}, []string{"reason"}),
	}
	for c := range numCacheStatus {
		m.requests[c] = req.WithLabelValues(c.label())
		m.latency[c] = lat.WithLabelValues(c.label())
	}
	gauge := func(name, help, tier string, fn func() float64) {
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "duet", Subsystem: "edge", Name: name, Help: help,
			ConstLabels: prometheus.Labels{"tier": tier},
		}, fn)
	}
	gauge("tier_bytes", "Bytes held by a cache tier.", "memory", func() float64 { return float64(st.mem.Bytes()) })
	gauge("tier_bytes", "Bytes held by a cache tier.", "disk", func() float64 { return float64(st.disk.Bytes()) })
	gauge("tier_budget_bytes", "The configured budget of a cache tier.", "memory", func() float64 { return float64(st.mem.MaxBytes()) })
	gauge("tier_budget_bytes", "The configured budget of a cache tier.", "disk", func() float64 { return float64(st.disk.Stats().MaxBytes) })
	gauge("tier_items", "Entries held by a cache tier (memory: approximate).", "memory", func() float64 { return float64(st.mem.Len()) })
	gauge("tier_items", "Entries held by a cache tier (memory: approximate).", "disk", func() float64 { return float64(st.disk.Len()) })
	evictions := func(tier string, fn func() float64) {
		f.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "evictions_total",
			Help: "Entries a cache tier evicted to stay within its budget.", ConstLabels: prometheus.Labels{"tier": tier},
		}, fn)
	}
	evictions("memory", func() float64 { return float64(st.mem.Evictions()) })
	evictions("disk", func() float64 { return float64(st.disk.Stats().Evictions) })
	f.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "duet", Subsystem: "edge", Name: "disk_copies_to_memory_total",
		Help: "Disk hits read into memory and offered to the memory tier (one at a time per object).",
	}, func() float64 { return float64(st.copies.Load()) })
	f.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "duet", Subsystem: "edge", Name: "viewer_timeouts_total",
		Help: "Viewer connections closed for sending a request too slowly or staying idle too long.",
	}, func() float64 { return float64(watch.closed.Load()) })
	return m
}

func (m *metrics) observe(cs cacheStatus, start, end time.Time) {
	m.nRequests.Add(1)
	if cs == csHit || cs == csStaleWhileRevalidate || cs == csStaleIfError || cs == csRevalidated {
		m.nHits.Add(1)
	}
	m.requests[cs].Inc()
	m.latency[cs].Observe(end.Sub(start).Seconds())
}

// servedFrom counts the body bytes an answer carries, by where they come from.
func (m *metrics) servedFrom(src body, n int64) {
	if n > 0 {
		m.nEgress.Add(n)
	}
	switch {
	case n <= 0:
	case src.f != nil:
		m.bytesOrigin.Add(float64(n))
	case src.e.tier == "disk":
		m.bytesDisk.Add(float64(n))
	case src.e.meta != nil:
		m.bytesMemory.Add(float64(n))
	}
}
