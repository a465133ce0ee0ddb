package cmcd

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Limits of the aggregation, which keep its memory and its metrics' cardinality bounded.
const (
	// MaxContentLabels is how many content ids (cid) get a label value of their own, first come
	// first served; the others are counted under "other", requests without one under "none".
	MaxContentLabels = 50
	// MaxSessions is how many sessions are followed at once; a new session beyond it counts in
	// the metrics but not in the QoE summary until others expire.
	MaxSessions = 10000
	// SessionWindow: a session that sent nothing for this long has ended.
	SessionWindow = 30 * time.Second
	// RecentSessions is how many of the latest sessions a Summary lists.
	RecentSessions = 10
)

// Summary is the viewers' quality of experience as their players report it, over the sessions
// seen within SessionWindow: what an edge's heartbeat carries to the status page.
type Summary struct {
	// Sessions is the number of sessions (distinct sid) seen.
	Sessions int `json:"sessions"`
	// Rebuffering is how many of them reported buffer starvation (bs).
	Rebuffering int `json:"rebuffering"`
	// MedianBufferMS is the median of the sessions' last buffer length (bl), -1 when none sent one.
	MedianBufferMS int64 `json:"median_buffer_ms"`
	// MedianThroughputKbps is the median of the sessions' last measured throughput (mtp), -1
	// when none sent one.
	MedianThroughputKbps int64 `json:"median_throughput_kbps"`
	// Recent are the sessions heard from last, newest first.
	Recent []Session `json:"recent,omitempty"`
}

// Session is one player session's latest report.
type Session struct {
	ID             string    `json:"sid"`
	ContentID      string    `json:"cid,omitempty"`
	BufferMS       int64     `json:"buffer_ms"`       // last bl, -1: never sent
	ThroughputKbps int64     `json:"throughput_kbps"` // last mtp, -1: never sent
	Rebuffering    bool      `json:"rebuffering"`     // bs within the window
	LastSeen       time.Time `json:"last_seen"`
	starvedAt      time.Time
}

// Stats aggregates reports into Prometheus metrics (per content id, bounded) and a per-session
// table for Summary. Safe for concurrent use.
type Stats struct {
	requests   *prometheus.CounterVec
	starved    *prometheus.CounterVec
	startup    *prometheus.CounterVec
	buffer     *prometheus.HistogramVec
	throughput *prometheus.HistogramVec
	bitrate    *prometheus.HistogramVec
	invalid    prometheus.Counter

	mu       sync.Mutex
	contents map[string]struct{} // the content ids with a label of their own
	sessions map[string]*Session
}

// NewStats registers the metrics (subsystem "cmcd") on reg; now is the clock of the session
// gauges.
func NewStats(reg prometheus.Registerer, now func() time.Time) *Stats {
	f := promauto.With(reg)
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "duet", Subsystem: "cmcd", Name: name, Help: help}
	}
	s := &Stats{
		requests: f.NewCounterVec(opts("requests_total", "Requests that carried CMCD, by content id (cid: the first 50, then \"other\"; \"none\") and object type (ot)."), []string{"content", "object_type"}),
		starved:  f.NewCounterVec(opts("buffer_starvation_total", "Requests whose player reported that its buffer ran dry (bs): rebuffering."), []string{"content"}),
		startup:  f.NewCounterVec(opts("startup_requests_total", "Requests a player needed urgently (su): start-up or seek."), []string{"content"}),
		buffer: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: "duet", Subsystem: "cmcd", Name: "buffer_length_seconds",
			Help: "The player's buffer length (bl) at each request.", Buckets: []float64{.5, 1, 2, 4, 8, 15, 30, 60}}, []string{"content"}),
		throughput: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: "duet", Subsystem: "cmcd", Name: "measured_throughput_bits_per_second",
			Help: "The throughput the player measured (mtp).", Buckets: prometheus.ExponentialBuckets(250e3, 2, 10)}, []string{"content"}),
		bitrate: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: "duet", Subsystem: "cmcd", Name: "encoded_bitrate_bits_per_second",
			Help: "The encoded bitrate (br) of the objects requested, by object type.", Buckets: prometheus.ExponentialBuckets(64e3, 2, 10)}, []string{"object_type"}),
		invalid:  f.NewCounter(opts("invalid_total", "Requests whose CMCD could not be read (ignored; the request was served).")),
		contents: map[string]struct{}{},
		sessions: map[string]*Session{},
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "duet", Subsystem: "cmcd", Name: "sessions",
		Help: "Player sessions (CMCD sid) heard from in the last 30 s."}, func() float64 {
		sessions, _ := s.count(now())
		return float64(sessions)
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "duet", Subsystem: "cmcd", Name: "rebuffering_sessions",
		Help: "Player sessions that reported buffer starvation (bs) in the last 30 s."}, func() float64 {
		_, rebuffering := s.count(now())
		return float64(rebuffering)
	})
	return s
}

// Invalid counts a report that could not be read.
func (s *Stats) Invalid() { s.invalid.Inc() }

// Observe counts one request's report, received at now.
func (s *Stats) Observe(d *Data, now time.Time) {
	s.mu.Lock()
	content := s.contentLabel(d.ContentID)
	if d.SessionID != "" {
		s.track(d, now)
	}
	s.mu.Unlock()
	ot := d.ObjectType
	if ot == "" {
		ot = "none"
	}
	s.requests.WithLabelValues(content, ot).Inc()
	if d.Starved {
		s.starved.WithLabelValues(content).Inc()
	}
	if d.Startup {
		s.startup.WithLabelValues(content).Inc()
	}
	if d.BufferLength >= 0 {
		s.buffer.WithLabelValues(content).Observe(float64(d.BufferLength) / 1000)
	}
	if d.Throughput >= 0 {
		s.throughput.WithLabelValues(content).Observe(float64(d.Throughput) * 1000)
	}
	if d.Bitrate >= 0 {
		s.bitrate.WithLabelValues(ot).Observe(float64(d.Bitrate) * 1000)
	}
}

// contentLabel is cid's label value; s.mu is held.
func (s *Stats) contentLabel(cid string) string {
	if cid == "" {
		return "none"
	}
	if _, ok := s.contents[cid]; ok {
		return cid
	}
	if len(s.contents) < MaxContentLabels {
		s.contents[cid] = struct{}{}
		return cid
	}
	return "other"
}

// track updates d's session; s.mu is held.
func (s *Stats) track(d *Data, now time.Time) {
	ss, ok := s.sessions[d.SessionID]
	if !ok {
		if len(s.sessions) >= MaxSessions {
			s.expire(now)
			if len(s.sessions) >= MaxSessions {
				return
			}
		}
		ss = &Session{ID: d.SessionID, BufferMS: -1, ThroughputKbps: -1}
		s.sessions[d.SessionID] = ss
	}
	ss.LastSeen = now
	if d.ContentID != "" {
		ss.ContentID = d.ContentID
	}
	if d.BufferLength >= 0 {
		ss.BufferMS = d.BufferLength
	}
	if d.Throughput >= 0 {
		ss.ThroughputKbps = d.Throughput
	}
	if d.Starved {
		ss.starvedAt = now
	}
}

// expire forgets the sessions that ended; s.mu is held.
func (s *Stats) expire(now time.Time) {
	for id, ss := range s.sessions {
		if now.Sub(ss.LastSeen) > SessionWindow {
			delete(s.sessions, id)
		}
	}
}

// count is how many sessions were heard from within SessionWindow of now, and how many of them
// rebuffered.
func (s *Stats) count(now time.Time) (sessions, rebuffering int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if now.Sub(ss.LastSeen) <= SessionWindow {
			sessions++
			if !ss.starvedAt.IsZero() && now.Sub(ss.starvedAt) <= SessionWindow {
				rebuffering++
			}
		}
	}
	return sessions, rebuffering
}

// Summary describes the sessions seen within SessionWindow of now. It is nil when there are
// none (a heartbeat then carries no QoE).
func (s *Stats) Summary(now time.Time) *Summary {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	s.expire(now)
	all := make([]Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		c := *ss
		c.Rebuffering = !ss.starvedAt.IsZero() && now.Sub(ss.starvedAt) <= SessionWindow
		all = append(all, c)
	}
	s.mu.Unlock()
	if len(all) == 0 {
		return nil
	}
	sum := &Summary{Sessions: len(all)}
	var bufs, tps []int64
	for _, ss := range all {
		if ss.Rebuffering {
			sum.Rebuffering++
		}
		if ss.BufferMS >= 0 {
			bufs = append(bufs, ss.BufferMS)
		}
		if ss.ThroughputKbps >= 0 {
			tps = append(tps, ss.ThroughputKbps)
		}
	}
	sum.MedianBufferMS, sum.MedianThroughputKbps = median(bufs), median(tps)
	slices.SortFunc(all, func(a, b Session) int { return b.LastSeen.Compare(a.LastSeen) })
	sum.Recent = all[:min(len(all), RecentSessions)]
	return sum
}

// median is the middle value (the lower of the two middle ones), -1 for none.
func median(v []int64) int64 {
	if len(v) == 0 {
		return -1
	}
	slices.Sort(v)
	return v[(len(v)-1)/2]
}
