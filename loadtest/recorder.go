package loadtest

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/duetcdn/duet/loadtest/report"
)

// Latencies are recorded in microseconds, up to a minute (longer ones are clamped).
const (
	maxLatencyUS = int64(60 * time.Second / time.Microsecond)
	// maxSeconds bounds the per-second series.
	maxSeconds = 3600
	// maxEvents bounds the events kept for the report (purge storms send many).
	maxEvents = 500
)

// sample is one finished request.
type sample struct {
	// intended is when the request should have been sent (the pacer's schedule), end when the
	// answer was read. end - intended is the latency: a stalled system cannot hide its stall by
	// delaying the requests it would have been sent (coordinated omission).
	intended, end time.Time
	// interval, when > 0, is the client's expected interval between requests (a viewer's
	// segment duration): HdrHistogram's RecordCorrectedValue then back-fills the requests a
	// closed-loop client could not send while it waited.
	interval time.Duration
	failed   bool
	reason   string // why it failed: timeout, refused, "http 503", ...
	hit      int8   // -1: no cache status, 0: miss, 1: hit
	bytes    int64
	edge     string
	region   string
	// segment marks a viewer's segment (the one that finally succeeded or failed after every
	// pathway); prevEdge and prevRegion where that viewer's previous segment came from.
	segment           bool
	prevEdge, prevRgn string
	// stalled marks a segment that arrived after its playback deadline.
	stalled bool
}

type second struct {
	origin           float64 // origin fetches of the edges
	requests, errors int64
	hist             *hdrhistogram.Histogram
	byRegion         map[string]int64
	byEdge           map[string]int64
}

type pendingTakeover struct {
	label  string
	at     time.Time
	edge   string // the stopped edge, or
	region string // the stopped region, or the started one when back is set
	back   bool   // a start: waiting for the first viewer to come back to region
}

// recorder aggregates samples and events. Its methods are safe for concurrent use; mu guards
// every field.
type recorder struct {
	mu   sync.Mutex
	t0   time.Time
	hist *hdrhistogram.Histogram
	secs []*second
	requests, errors, bytes, hits, statuses,
	segments, failedSegments, stalls int64
	// first and last bound the time requests were under way (throughput is over this span,
	// not over uploads or waits before the load).
	first, last time.Time
	events      []report.Event
	pending     []pendingTakeover
	takeovers   []report.Takeover
	regions     []string
	reasons     map[string]int64 // failed requests by reason
	// Viewers' quality of experience: start-up times (µs), time played and time waited for
	// segments, pathway switches.
	startups          *hdrhistogram.Histogram
	starts            int64
	playedT, stalledT time.Duration
	switches          int64
}

func newRecorder(t0 time.Time, regions []string) *recorder {
	return &recorder{t0: t0, hist: hdrhistogram.New(1, maxLatencyUS, 3), startups: hdrhistogram.New(1, maxLatencyUS, 3), regions: regions}
}

// second returns second i, adding the seconds up to it. Called with mu held; 0 <= i < maxSeconds.
func (r *recorder) second(i int) *second {
	for len(r.secs) <= i {
		r.secs = append(r.secs, &second{hist: hdrhistogram.New(1, maxLatencyUS, 2), byRegion: map[string]int64{}, byEdge: map[string]int64{}})
	}
	return r.secs[i]
}

// originFetches records n origin fetches by the edges in the second before at.
func (r *recorder) originFetches(at time.Time, n float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := int(at.Sub(r.t0)/time.Second) - 1; i >= 0 && i < maxSeconds {
		r.second(i).origin += n
	}
}

// started records a viewer's start: d from the start to its first media segment.
func (r *recorder) started(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts++
	_ = r.startups.RecordValue(min(max(d.Microseconds(), 1), maxLatencyUS))
}

// played records a segment's play time and how long playback waited for it.
func (r *recorder) played(d, stalled time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.playedT += d
	r.stalledT += stalled
}

// switched records a viewer's pathway switches.
func (r *recorder) switched(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.switches += int64(n)
}

func (r *recorder) record(s sample) {
	lat := min(max(s.end.Sub(s.intended).Microseconds(), 1), maxLatencyUS)
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.segment {
		r.segments++
		if s.stalled {
			r.stalls++
		}
		if s.failed {
			r.failedSegments++
		} else {
			r.checkTakeover(s)
		}
		return // the segment's requests were recorded one by one
	}
	r.requests++
	r.bytes += s.bytes
	if r.first.IsZero() || s.intended.Before(r.first) {
		r.first = s.intended
	}
	if s.end.After(r.last) {
		r.last = s.end
	}
	if s.interval > 0 {
		_ = r.hist.RecordCorrectedValue(lat, max(s.interval.Microseconds(), 1))
	} else {
		_ = r.hist.RecordValue(lat)
	}
	i := int(s.end.Sub(r.t0) / time.Second)
	if i < 0 || i >= maxSeconds {
		return
	}
	sec := r.second(i)
	sec.requests++
	_ = sec.hist.RecordValue(lat)
	if s.failed {
		r.errors++
		sec.errors++
		if r.reasons == nil {
			r.reasons = map[string]int64{}
		}
		r.reasons[s.reason]++
		return
	}
	if s.hit >= 0 {
		r.statuses++
		r.hits += int64(s.hit)
	}
	if s.region != "" {
		sec.byRegion[s.region]++
	}
	if s.edge != "" {
		sec.byEdge[s.edge]++
	}
}

// checkTakeover resolves the pending takeovers this successful segment answers: a viewer that
// was on the stopped edge (region) is now served by another one. Called with mu held.
func (r *recorder) checkTakeover(s sample) {
	keep := r.pending[:0]
	for _, p := range r.pending {
		moved := (p.edge != "" && s.prevEdge == p.edge && s.edge != p.edge) ||
			(!p.back && p.region != "" && s.prevRgn == p.region && s.region != p.region) ||
			(p.back && s.prevRgn != "" && s.prevRgn != p.region && s.region == p.region)
		if s.end.After(p.at) && moved {
			r.takeovers = append(r.takeovers, report.Takeover{Event: p.label, Region: s.region, Edge: s.edge, After: s.end.Sub(p.at), Found: true})
			continue
		}
		keep = append(keep, p)
	}
	r.pending = keep
}

// event records something done to the system at `at`. Stops start waiting for a takeover.
func (r *recorder) event(at time.Time, kind, target, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) < maxEvents {
		r.events = append(r.events, report.Event{At: at.Sub(r.t0), Kind: kind, Target: target, Detail: detail})
	}
	switch kind {
	case "edge-stop":
		r.pending = append(r.pending, pendingTakeover{label: kind + " " + target, at: at, edge: target})
	case "region-stop":
		r.pending = append(r.pending, pendingTakeover{label: kind + " " + target, at: at, region: target})
	case "region-start":
		r.pending = append(r.pending, pendingTakeover{label: kind + " " + target, at: at, region: target, back: true})
	}
}

func pct(h *hdrhistogram.Histogram, q float64) float64 {
	return float64(h.ValueAtQuantile(q)) / 1000
}

// summary fills the request, latency and time series fields of s.
func (r *recorder) summary(s *report.Summary, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Duration = elapsed
	s.Requests, s.Errors, s.Bytes = r.requests, r.errors, r.bytes
	if span := r.last.Sub(r.first); span > 0 {
		s.Throughput = float64(r.requests) / span.Seconds()
	}
	s.Latency = report.Percentiles{P50: pct(r.hist, 50), P90: pct(r.hist, 90), P99: pct(r.hist, 99), P999: pct(r.hist, 99.9),
		Max: float64(r.hist.Max()) / 1000}
	s.HitRatio = -1
	if r.statuses > 0 {
		s.HitRatio = float64(r.hits) / float64(r.statuses)
	}
	s.Segments, s.FailedSegments, s.Stalls = r.segments, r.failedSegments, r.stalls
	s.Starts, s.PathwaySwitches, s.RebufferRatio = r.starts, r.switches, -1
	if r.starts > 0 {
		s.Startup = report.Percentiles{P50: pct(r.startups, 50), P90: pct(r.startups, 90), P99: pct(r.startups, 99),
			P999: pct(r.startups, 99.9), Max: float64(r.startups.Max()) / 1000}
	}
	if t := r.playedT + r.stalledT; t > 0 {
		s.RebufferRatio = r.stalledT.Seconds() / t.Seconds()
	}
	s.ErrorsByReason = r.reasons
	s.Regions = r.regions
	s.Events = append([]report.Event(nil), r.events...)
	s.Takeovers = append([]report.Takeover(nil), r.takeovers...)
	for _, p := range r.pending {
		s.Takeovers = append(s.Takeovers, report.Takeover{Event: p.label})
	}
	n := min(maxSeconds, int(elapsed/time.Second)+1)
	for i := range n {
		if i >= len(r.secs) { // quiet seconds at the end still show on the charts
			s.Seconds = append(s.Seconds, report.Second{At: time.Duration(i) * time.Second})
			continue
		}
		sec := r.secs[i]
		s.Seconds = append(s.Seconds, report.Second{
			At: time.Duration(i) * time.Second, Requests: sec.requests, Errors: sec.errors,
			P50: pct(sec.hist, 50), P90: pct(sec.hist, 90), P99: pct(sec.hist, 99),
			ByRegion: sec.byRegion, ByEdge: sec.byEdge, OriginRequests: sec.origin,
		})
	}
}
