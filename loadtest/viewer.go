package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	pathpkg "path"
	"strings"
	"syscall"
	"time"

	"github.com/duetcdn/duet/internal/route"
)

// maxPlaylist bounds a playlist body.
const maxPlaylist = 4 << 20

// answer is one HTTP exchange with an edge.
type answer struct {
	status int
	body   []byte // kept only when asked for
	n      int64
	hit    int8
	err    error
}

// cacheHit reads RFC 9211 Cache-Status (a "hit" parameter, stale hits included), else
// X-Cache (HIT or STALE): 1 hit, 0 miss, -1 neither header.
func cacheHit(h http.Header) int8 {
	if cs := h.Get("Cache-Status"); cs != "" {
		for _, p := range strings.Split(cs, ";") {
			if strings.TrimSpace(p) == "hit" {
				return 1
			}
		}
		return 0
	}
	if x := strings.ToUpper(h.Get("X-Cache")); x != "" {
		if strings.HasPrefix(x, "HIT") || strings.HasPrefix(x, "STALE") {
			return 1
		}
		return 0
	}
	return -1
}

// reason classes a failed answer for the report ("" when it did not fail).
func reason(a answer) string {
	switch {
	case a.err == nil:
		return ""
	case a.status >= 400:
		return fmt.Sprintf("http %d", a.status)
	case errors.Is(a.err, context.DeadlineExceeded) || os.IsTimeout(a.err):
		return "timeout"
	case errors.Is(a.err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(a.err, syscall.ECONNRESET) || errors.Is(a.err, io.ErrUnexpectedEOF) || errors.Is(a.err, io.EOF):
		return "reset"
	}
	return "other"
}

// get fetches u within timeout; keep keeps the body (playlists).
func get(ctx context.Context, client *http.Client, u string, timeout time.Duration, keep bool) answer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return answer{err: err, hit: -1}
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err, hit: -1}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, hit: cacheHit(resp.Header)}
	if keep {
		a.body, a.err = io.ReadAll(io.LimitReader(resp.Body, maxPlaylist))
		a.n = int64(len(a.body))
	} else {
		a.n, a.err = io.Copy(io.Discard, resp.Body)
	}
	if a.err == nil && resp.StatusCode >= 400 {
		a.err = fmt.Errorf("%s: %s", u, resp.Status)
	}
	return a
}

// routeTTL is how long a viewer keeps a route before asking again, like HLS content
// steering's TTL: viewers that moved away during an outage come back once it is over.
const routeTTL = 10 * time.Second

// viewer plays an HLS stream the way a player that follows steering does. It asks steering for
// the route and loads the multivariant playlist from the first edge (as /r/ redirects a player).
// When the playlist has content steering (EXT-X-CONTENT-STEERING), the viewer follows it with
// hls.js's rules (see steering, in pathways.go); when every pathway has failed, it starts again
// from the route, as the player page reloads the stream. Without content steering it retries a
// failed request on the next edge of the route, then asks steering again.
type viewer struct {
	env     *env
	home    int // index of the steering asked first
	rng     *rand.Rand
	route   route.Answer // steering's answer: its key, region, reason and edges
	routeAt time.Time
	stale   bool // ask steering again before the next request
	prev    [2]string
	// CMCD (CTA-5004) the viewer sends with each request, as hls.js does: its session and
	// content ids, its last measured throughput (kbps, 0: none yet), a stall to report, and
	// whether the next segment is its first (start-up).
	sid, cid string
	mtp      int64
	starved  bool
	started  bool
	steer    *steering // the content steering of the stream playing; nil without
	served   string    // base URL of the edge that answered the last routed request
}

// play plays path (a multivariant playlist) until `until`, from the start again when the
// stream ends.
func (v *viewer) play(ctx context.Context, path string, until time.Time) {
	for ctx.Err() == nil && time.Now().Before(until) {
		if !v.once(ctx, path, until) {
			// Nothing to play (no route, no playlist): back off a little, bounded by until.
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// once plays the stream once; false when it could not start.
func (v *viewer) once(ctx context.Context, path string, until time.Time) bool {
	if v.sid == "" {
		v.sid = fmt.Sprintf("%016x%016x", v.rng.Uint64(), v.rng.Uint64())
	}
	v.cid, v.started = cmcdContent(path), false
	began := time.Now()
	v.steer = nil
	master, ok := v.fetch(ctx, path, began, 0, true, false)
	if !ok {
		return false
	}
	variants, err := parseMaster(path, master)
	if err != nil {
		v.env.log.Warn("bad multivariant playlist", "path", path, "err", err)
		return false
	}
	if uri, pathway, ok := steeringTag(master); ok && v.served != "" {
		if su, err := url.Parse(v.served + path); err == nil {
			if abs, err := su.Parse(uri); err == nil {
				v.steer = newSteering(abs.String(), pathway, v.served, v.env.router.guard)
				v.steer.load(ctx, v.env.client, v.env.cfg.Timeout, time.Now())
			}
		}
	}
	defer func() {
		if v.steer != nil {
			v.env.rec.switched(v.steer.switches)
		}
	}()
	media := variants[v.rng.IntN(len(variants))]
	body, ok := v.fetch(ctx, media, time.Now(), 0, true, false)
	if !ok {
		return false
	}
	segs, err := parseMedia(media, body)
	if err != nil {
		v.env.log.Warn("bad media playlist", "path", media, "err", err)
		return false
	}
	// Real-time pace: segment i is due when the previous ones would have played.
	due := time.Now()
	started := false
	// The stream ends when its last segment has played (or at `until`), not when it was fetched:
	// a viewer must not start again while it is still watching.
	for _, s := range segs {
		if !sleepUntil(ctx, earliest(due, until)) || !due.Before(until) {
			return true
		}
		interval := time.Duration(float64(s.duration) / v.env.cfg.Speed)
		_, ok := v.fetch(ctx, s.path, due, interval, false, true)
		if ok && !s.init {
			end := time.Now()
			if !started {
				started = true
				v.env.rec.started(end.Sub(began))
			} else {
				// The viewer holds one segment ahead: playback waits only when a segment
				// takes longer than a segment's play time to arrive.
				v.env.rec.played(interval, max(end.Sub(due)-interval, 0))
			}
		}
		due = due.Add(interval)
	}
	sleepUntil(ctx, earliest(due, until))
	return true
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// fetch gets p from the route's pathways in order, recording every attempt; intended is when
// the request was due. isSegment also records the segment's outcome.
func (v *viewer) fetch(ctx context.Context, p string, intended time.Time, interval time.Duration, keep, isSegment bool) ([]byte, bool) {
	if v.steer != nil {
		return v.fetchSteered(ctx, p, intended, interval, keep, isSegment)
	}
	if v.stale || len(v.route.Edges) == 0 || time.Since(v.routeAt) > routeTTL {
		rt, err := v.env.router.route(ctx, p, v.home)
		if err != nil {
			if ctx.Err() == nil {
				v.env.log.Debug("no route", "path", p, "err", err)
			}
			if isSegment {
				v.env.rec.record(sample{intended: intended, end: time.Now(), failed: true, segment: true})
			}
			return nil, false
		}
		v.route, v.routeAt, v.stale = rt, time.Now(), false
	}
	start := intended
	q := v.cmcdQuery(p, isSegment, intended, interval)
	for _, e := range v.route.Edges {
		began := time.Now()
		a := get(ctx, v.env.client, e.URL+p+q, v.env.cfg.Timeout, keep)
		end := time.Now()
		if ctx.Err() != nil {
			return nil, false // the run is over: this attempt says nothing about the system
		}
		name, region := v.env.whois(e)
		v.env.rec.record(sample{intended: start, end: end, interval: interval, failed: a.err != nil, reason: reason(a), hit: a.hit, bytes: a.n, edge: name, region: region})
		start = end
		if a.err != nil {
			v.stale = true // ask steering again once this request is done
			continue
		}
		if isSegment {
			// It stalled the player when it came after the previous segment had played out.
			stalled := v.started && interval > 0 && end.After(intended.Add(interval))
			v.starved = v.starved || stalled
			v.started = true
			if ms := end.Sub(began).Milliseconds(); ms > 0 && a.n > 0 {
				v.mtp = a.n * 8 / ms // bits per ms: kbps
			}
			v.env.rec.record(sample{intended: intended, end: end, segment: true, edge: name, region: region, prevEdge: v.prev[0], prevRgn: v.prev[1], stalled: stalled})
		}
		v.prev = [2]string{name, region}
		v.served = strings.TrimSuffix(e.URL, "/")
		return a.body, true
	}
	if isSegment {
		v.env.rec.record(sample{intended: intended, end: time.Now(), failed: true, segment: true})
	}
	v.stale = true
	return nil, false
}

// fetchSteered gets p from the steering's current pathway, moving to the next pathways as
// requests fail (hls.js's rules). When every pathway has failed, the viewer drops its steering
// and starts again from the route, as the player page reloads the stream.
func (v *viewer) fetchSteered(ctx context.Context, p string, intended time.Time, interval time.Duration, keep, isSegment bool) ([]byte, bool) {
	st := v.steer
	st.load(ctx, v.env.client, v.env.cfg.Timeout, time.Now())
	start := intended
	for range len(st.hosts) + 1 {
		base := st.baseURL()
		a := get(ctx, v.env.client, base+p, v.env.cfg.Timeout, keep)
		end := time.Now()
		if ctx.Err() != nil {
			return nil, false
		}
		name, region := v.env.whois(route.Edge{URL: base})
		v.env.rec.record(sample{intended: start, end: end, interval: interval, failed: a.err != nil, reason: reason(a), hit: a.hit, bytes: a.n, edge: name, region: region})
		start = end
		if a.err == nil {
			if isSegment {
				v.env.rec.record(sample{intended: intended, end: end, segment: true, edge: name, region: region, prevEdge: v.prev[0], prevRgn: v.prev[1]})
			}
			v.prev = [2]string{name, region}
			return a.body, true
		}
		if !st.fail(end) {
			break
		}
	}
	if isSegment {
		v.env.rec.record(sample{intended: intended, end: time.Now(), failed: true, segment: true})
	}
	v.env.rec.switched(st.switches)
	v.steer, v.stale = nil, true // the rest of this pass goes by the route; the next starts over
	return nil, false
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// cmcdContent is the CMCD content id of a stream: its playlist's directory, at most 64 bytes.
func cmcdContent(master string) string {
	c := strings.Trim(pathpkg.Dir(master), "/")
	return c[:min(len(c), 64)]
}

// cmcdQuery is the CMCD query parameter of a request for p ("?CMCD=..." or "&CMCD=..."): the
// buffer a real-time player would hold (what is left of the segment playing, less how late the
// request is), a stall since the last request, the throughput of the last segment.
func (v *viewer) cmcdQuery(p string, isSegment bool, intended time.Time, interval time.Duration) string {
	var b strings.Builder
	if isSegment {
		bl := max(interval-time.Since(intended), 0)
		fmt.Fprintf(&b, "bl=%d,", bl.Milliseconds())
		if v.starved {
			b.WriteString("bs,")
			v.starved = false
		}
	}
	fmt.Fprintf(&b, "cid=%q,", v.cid)
	if v.mtp > 0 {
		fmt.Fprintf(&b, "mtp=%d,", v.mtp)
	}
	if isSegment {
		b.WriteString("ot=v,")
	} else {
		b.WriteString("ot=m,")
	}
	fmt.Fprintf(&b, "sf=h,sid=%q", v.sid)
	if isSegment && !v.started {
		b.WriteString(",su")
	}
	sep := "?"
	if strings.Contains(p, "?") {
		sep = "&"
	}
	return sep + "CMCD=" + url.QueryEscape(b.String())
}
