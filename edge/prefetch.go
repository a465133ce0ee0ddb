package edge

import (
	"bytes"
	"compress/gzip"
	"container/list"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/cachekey"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/edge/playlist"
	"github.com/duetcdn/duet/internal/signedurl"
	"github.com/duetcdn/duet/origin"
)

// Playlist-driven prefetch (docs/scale-out.md): the edge reads the media playlists and MPDs it
// serves (edge/playlist) and fetches the segments a viewer will ask for next before it asks,
// so that the first viewer of a segment gets a hit.
//
// Where the viewer is: a playlist is fetched once and then served from the cache, so it says
// little about each viewer; its segments' requests say exactly where a viewer plays. The edge
// therefore keeps an index, segment cache key → (track, position), of the playlists it parsed,
// and on every viewer request for an indexed segment fetches the next prefetch.segments of the
// same track (on a request for a track's initialisation segment, its first ones, or for a live
// track its newest). A new version of a playlist prefetches too: the first segments of an HLS
// VOD playlist (where a new viewer starts), and the newest ones of a live HLS playlist (where
// its viewers are: a live player plays a few segments behind the edge, and each new version
// brings the segment they ask for next), and of the live DASH representations viewers play.
// The index is bounded (maxTrackedSegments, least recently used tracks go first).
//
// Bounded and low priority: at most prefetch.max_concurrent fetches and
// prefetch.max_bytes_in_flight bytes in flight per edge (a prefetch reserves the size its
// track's segments have, or, before the edge has seen one, the whole bound); a prefetch never
// waits for the origin budget (it is dropped when no turn is free now, so viewers keep
// theirs); objects cached or being fetched are skipped. A prefetch is an ordinary fill: a
// viewer who asks meanwhile joins it, and with peer fill it goes to the segment's owner, so
// that the region fetches each segment once.

// prefetchHeader marks a prefetch's request: an owner edge that gets it from a peer does not
// queue it for its origin budget either, and the origin can tell prefetches apart.
const prefetchHeader = "X-Duet-Prefetch"

var hdrPrefetch = []byte(prefetchHeader)

// maxTrackedSegments bounds the index (about 200 bytes an entry); maxTrackedPlaylists bounds
// the versions remembered, maxUnused the prefetched keys waiting for their first viewer.
const (
	maxTrackedSegments  = 200_000
	maxTrackedPlaylists = 10_000
	maxUnused           = 20_000
)

// prefetcher is an edge's prefetch; nil when prefetch is off.
type prefetcher struct {
	s        *Server
	ahead    int
	maxBytes int64
	maxConc  int64

	mu      sync.Mutex
	tracks  map[string]*pfTrack // by playlist key and track id; guarded by mu
	lru     list.List           // of *pfTrack, most recently used first; guarded by mu
	segs    map[string]segRef   // segment cache key → where it is; guarded by mu
	nSegs   int                 // segments indexed; guarded by mu
	parsed  map[string]string   // playlist key → the version parsed; guarded by mu
	parsing map[string]struct{} // playlist keys being parsed; guarded by mu
	unused  map[string]struct{} // prefetched keys no viewer asked for yet; guarded by mu

	bytes, running atomic.Int64 // reserved bytes and fetches in flight

	started, used, fetched prometheus.Counter
	dropped                *prometheus.CounterVec
}

// pfSeg is a segment's normalised path and query and its cache key.
type pfSeg struct{ path, query, key string }

// pfTrack is one indexed track. segs and init never change once indexed (a new version of
// the playlist indexes a new track), so they are read without the lock.
type pfTrack struct {
	id   string
	init pfSeg
	segs []pfSeg
	live bool
	dash bool
	elem *list.Element
	// estimate is the size a segment of the track is expected to have (the largest seen, or the
	// MPD's bandwidth × duration); active is set once a viewer asked for one of its segments;
	// next is the first segment not yet prefetched or found cached: the segments before it need
	// no look, so a viewer's segment hit whose next segments were seen to already costs one map
	// lookup. All guarded by mu.
	estimate int64
	active   bool
	next     int
}

// segRef is where a segment is: its track and its index there (-1: the initialisation segment).
type segRef struct {
	t *pfTrack
	i int
}

// Reasons a prefetch is dropped (duet_edge_prefetch_dropped_total).
const (
	dropConcurrency = "concurrency"
	dropBytes       = "bytes"
	dropBudget      = "origin_budget"
	dropError       = "error"
)

func newPrefetcher(s *Server, cfg PrefetchConfig, reg prometheus.Registerer) *prefetcher {
	if !cfg.Enabled {
		return nil
	}
	f := promauto.With(reg)
	p := &prefetcher{s: s, ahead: cfg.Segments, maxBytes: int64(cfg.MaxBytesInFlight), maxConc: int64(cfg.MaxConcurrent),
		tracks: map[string]*pfTrack{}, segs: map[string]segRef{}, parsed: map[string]string{},
		parsing: map[string]struct{}{}, unused: map[string]struct{}{},
		started: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "prefetch_started_total",
			Help: "Segments this edge began to prefetch (playlist-driven prefetch).",
		}),
		used: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "prefetch_used_total",
			Help: "Prefetched segments a viewer asked for afterwards (each counted once): the prefetches that paid.",
		}),
		fetched: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "prefetch_bytes_total",
			Help: "Body bytes prefetches received.",
		}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "prefetch_dropped_total",
			Help: "Prefetches not made or given up, by reason (concurrency: prefetch.max_concurrent; bytes: prefetch.max_bytes_in_flight; origin_budget: no origin turn free now; error: the fetch failed).",
		}, []string{"reason"}),
	}
	for _, r := range []string{dropConcurrency, dropBytes, dropBudget, dropError} {
		p.dropped.WithLabelValues(r)
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "duet", Subsystem: "edge", Name: "prefetch_bytes_in_flight",
		Help: "Bytes reserved by the prefetches in flight now (at most prefetch.max_bytes_in_flight).",
	}, func() float64 { return float64(p.bytes.Load()) })
	return p
}

// served is told of every GET a viewer got an answer to (not peers: the asking edge prefetches
// for its own viewers; not requests with credentials: a prefetch, which has none, would be
// refused, and its refusal make the key pass for a while): a segment request moves its
// track's prefetch along, a playlist that is new or changed is parsed.
func (p *prefetcher) served(ctx *fasthttp.RequestCtx, rq *request) {
	switch kindOf(rq.path) {
	case kindSegment:
		p.segment(rq.primary)
	case kindPlaylist:
		p.playlist(ctx, rq)
	}
}

// versionOf tells two stored versions of a playlist apart.
func versionOf(m *object.Meta) string {
	return m.ETag + "\x00" + strconv.FormatInt(m.RequestTime.UnixNano(), 10) + "\x00" + strconv.FormatInt(m.Size, 10)
}

// playlist parses the playlist the viewer got, in the background, unless this version was
// parsed already or is being parsed.
func (p *prefetcher) playlist(ctx *fasthttp.RequestCtx, rq *request) {
	key := p.s.store.lookupKey(rq.primary, func(name string) string { return b2s(ctx.Request.Header.Peek(name)) })
	m, ok := p.s.store.peek(key)
	if _, filling := p.s.fl.get(key); filling {
		ok = false // what is stored may be the version being replaced
	}
	p.mu.Lock()
	if ok && p.parsed[key] == versionOf(m) {
		p.mu.Unlock()
		return
	}
	if _, busy := p.parsing[key]; busy {
		p.mu.Unlock()
		return
	}
	key = strings.Clone(key)
	p.parsing[key] = struct{}{}
	p.mu.Unlock()
	// The viewer's headers, for the variant's key once the fill has stored it.
	hdr := map[string]string{}
	for k, v := range ctx.Request.Header.All() {
		hdr[http.CanonicalHeaderKey(string(k))] = string(v)
	}
	go p.parse(key, strings.Clone(rq.primary), strings.Clone(rq.path), strings.Clone(rq.query), hdr)
}

// parse reads a playlist once its fill (if one runs) is over, indexes its tracks and starts
// the prefetches a new version calls for.
func (p *prefetcher) parse(lookup, primary, path, query string, hdr map[string]string) {
	defer func() {
		p.mu.Lock()
		delete(p.parsing, lookup)
		p.mu.Unlock()
	}()
	// The fill runs under the primary key when the edge did not know yet that the playlist
	// varies (gzipped to some viewers), and stores under the variant's.
	for _, k := range []string{lookup, primary} {
		if f, ok := p.s.fl.get(k); ok {
			<-f.ready
			if f.out == outBody {
				_, _, _ = f.waitFor(1 << 62) // the commit; the fill's own timeout bounds it
			}
		}
	}
	key := p.s.store.lookupKey(primary, func(name string) string { return hdr[name] })
	body, m, err := p.read(key)
	if m == nil {
		return // gone already
	}
	var tracks []playlist.Track
	if err == nil && body != nil {
		tracks, err = playlist.Parse(cachekey.Key(path, query), body)
	}
	if err != nil && !errors.Is(err, playlist.ErrNotMedia) {
		p.s.log.LogAttrs(context.Background(), slog.LevelDebug, "prefetch: playlist not read", slog.String("cache_key", key), slog.String("error", err.Error()))
	}
	// The version is recorded whatever it held (a 404, a multivariant playlist): it is not read
	// again until it changes.
	type job struct {
		t     *pfTrack
		cands []pfSeg
	}
	var jobs []job
	p.mu.Lock()
	if len(p.parsed) >= maxTrackedPlaylists {
		clear(p.parsed)
	}
	p.parsed[key] = versionOf(m)
	for i := range tracks {
		tr := &tracks[i]
		t := p.newTrack(key, tr)
		old := p.tracks[t.id]
		if old != nil {
			t.estimate, t.active = old.estimate, old.active
			p.removeLocked(old)
		}
		t.estimate = max(t.estimate, tr.SegmentBytes)
		p.addLocked(t)
		var cands []pfSeg
		switch {
		case t.live && (!t.dash || t.active):
			cands = t.segs[max(0, len(t.segs)-p.ahead):] // where live viewers are
		case !t.live && !t.dash && old == nil:
			cands = t.segs[:min(p.ahead, len(t.segs))] // where a new VOD viewer starts
		}
		if len(cands) > 0 {
			jobs = append(jobs, job{t, cands})
		}
	}
	p.mu.Unlock()
	for _, j := range jobs {
		p.fetch(j.t, j.cands)
	}
}

// read returns a stored playlist's metadata (nil when the entry is gone) and body,
// decompressed when the origin gzipped it; the body is nil for an answer other than a 200, and
// err says why one could not be read.
func (p *prefetcher) read(key string) ([]byte, *object.Meta, error) {
	e, ok := p.s.store.open(key)
	if !ok {
		return nil, nil, nil
	}
	defer e.close()
	m := e.meta
	mc := *m
	if m.Status != http.StatusOK {
		return nil, &mc, nil
	}
	if m.Size > playlist.MaxBodyBytes {
		return nil, &mc, playlist.ErrTooLarge
	}
	var r io.Reader
	switch {
	case e.body != nil:
		r = bytes.NewReader(e.body)
	case e.file != nil:
		r = io.NewSectionReader(e.file, 0, m.Size)
	default:
		return nil, &mc, nil
	}
	for _, f := range m.Header {
		if f.Name != "Content-Encoding" {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(f.Value)) {
		case "", "identity":
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, &mc, err
			}
			r = zr
		default:
			return nil, &mc, errors.New("content coding " + f.Value + " is not read")
		}
	}
	body, err := io.ReadAll(io.LimitReader(r, playlist.MaxBodyBytes+1))
	if err != nil {
		return nil, &mc, err
	}
	if len(body) > playlist.MaxBodyBytes {
		return nil, &mc, playlist.ErrTooLarge // a gzip bomb stops here
	}
	return body, &mc, nil
}

// newTrack turns a parsed track into the index's, with each segment's cache key made as the
// handler makes a viewer's: the signed-URL token taken off, then normalised.
func (p *prefetcher) newTrack(playlistKey string, tr *playlist.Track) *pfTrack {
	t := &pfTrack{id: playlistKey + "\x00" + tr.ID, live: tr.Live, dash: tr.ID != ""}
	if tr.Init != "" {
		t.init, _ = p.segOf(tr.Init)
	}
	t.segs = make([]pfSeg, 0, len(tr.Segments))
	for _, u := range tr.Segments {
		if sg, ok := p.segOf(u); ok {
			t.segs = append(t.segs, sg)
		}
	}
	return t
}

func (p *prefetcher) segOf(uri string) (pfSeg, bool) {
	rawPath, rawQuery, _ := strings.Cut(uri, "?")
	if p.s.tokens != nil {
		if _, rest, inPath := signedurl.SplitPath(rawPath); inPath {
			rawPath = rest
		} else {
			_, rawQuery = signedurl.FromQuery(rawQuery)
		}
	}
	path, query, err := p.s.keys.Normalize(rawPath, rawQuery)
	if err != nil {
		return pfSeg{}, false
	}
	return pfSeg{path: path, query: query, key: cachekey.Key(path, query)}, true
}

// addLocked indexes t, making room by dropping the least recently used tracks. p.mu held.
func (p *prefetcher) addLocked(t *pfTrack) {
	n := len(t.segs) + 1
	for p.nSegs+n > maxTrackedSegments && p.lru.Len() > 0 {
		p.removeLocked(p.lru.Back().Value.(*pfTrack))
	}
	if n > maxTrackedSegments {
		t.segs = t.segs[:maxTrackedSegments-1]
		n = maxTrackedSegments
	}
	t.elem = p.lru.PushFront(t)
	p.tracks[t.id] = t
	p.nSegs += n
	if t.init.key != "" {
		p.segs[t.init.key] = segRef{t, -1}
	}
	for i, sg := range t.segs {
		p.segs[sg.key] = segRef{t, i}
	}
}

// removeLocked takes t out of the index. p.mu held.
func (p *prefetcher) removeLocked(t *pfTrack) {
	p.lru.Remove(t.elem)
	delete(p.tracks, t.id)
	p.nSegs -= len(t.segs) + 1
	if r, ok := p.segs[t.init.key]; ok && r.t == t {
		delete(p.segs, t.init.key)
	}
	for _, sg := range t.segs {
		if r, ok := p.segs[sg.key]; ok && r.t == t {
			delete(p.segs, sg.key)
		}
	}
}

// segment moves the prefetch of the track a viewer's segment request belongs to along.
func (p *prefetcher) segment(key string) {
	p.mu.Lock()
	if _, ok := p.unused[key]; ok {
		delete(p.unused, key)
		p.used.Inc()
	}
	ref, ok := p.segs[key]
	if !ok {
		p.mu.Unlock()
		return
	}
	t := ref.t
	t.active = true
	p.lru.MoveToFront(t.elem)
	var lo, hi int
	switch {
	case ref.i >= 0:
		lo, hi = ref.i+1, min(ref.i+1+p.ahead, len(t.segs))
	case t.live:
		lo, hi = max(0, len(t.segs)-p.ahead), len(t.segs)
	default:
		lo, hi = 0, min(p.ahead, len(t.segs))
	}
	lo = max(lo, t.next)
	p.mu.Unlock()
	if lo >= hi {
		return // seen to already
	}
	if m, ok := p.s.store.peek(key); ok && m.Size > 0 {
		p.learn(t, m.Size)
	}
	done := p.fetch(t, t.segs[lo:hi])
	p.mu.Lock()
	t.next = max(t.next, lo+done)
	p.mu.Unlock()
}

// learn records the size of one of t's segments.
func (p *prefetcher) learn(t *pfTrack, size int64) {
	p.mu.Lock()
	t.estimate = max(t.estimate, size)
	p.mu.Unlock()
}

// fetch starts the prefetches of cands that are neither cached nor being fetched, within the
// bounds, and returns how many of cands, from the first, were started or found cached or in
// flight (the ones after a candidate the bounds dropped are looked at again next time).
func (p *prefetcher) fetch(t *pfTrack, cands []pfSeg) int {
	s := p.s
	done, dropped := 0, false
	for _, c := range cands {
		if s.bgCtx.Err() != nil {
			return done // shutting down
		}
		if !dropped {
			done++
		}
		if s.store.isSliced(c.key) {
			continue // a large object: its slices are fetched as viewers read them
		}
		key := s.store.lookupKey(c.key, func(string) string { return "" })
		if _, ok := s.store.peek(key); ok {
			continue
		}
		if _, ok := s.fl.get(key); ok || s.pass.has(key, s.now()) {
			continue
		}
		if p.running.Add(1) > p.maxConc {
			p.running.Add(-1)
			p.dropped.WithLabelValues(dropConcurrency).Inc()
			if !dropped {
				done, dropped = done-1, true
			}
			continue
		}
		p.mu.Lock()
		res := t.estimate
		p.mu.Unlock()
		if res <= 0 {
			res = p.maxBytes // size unknown: the prefetch runs alone until its headers tell
		}
		if !p.reserve(res) {
			p.running.Add(-1)
			p.dropped.WithLabelValues(dropBytes).Inc()
			if !dropped {
				done, dropped = done-1, true
			}
			continue
		}
		p.start(t, c, key, res)
	}
	return done
}

// reserve takes n bytes of the bound, when they are free.
func (p *prefetcher) reserve(n int64) bool {
	for {
		cur := p.bytes.Load()
		if cur+n > p.maxBytes {
			return false
		}
		if p.bytes.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// start runs one prefetch: the fill of an ordinary flight that a viewer may join, marked so
// that it never waits for the origin budget, and asking the key's owner first with peer fill.
func (p *prefetcher) start(t *pfTrack, c pfSeg, key string, res int64) {
	s := p.s
	release := func() {
		p.bytes.Add(-res)
		p.running.Add(-1)
	}
	f, leader := s.fl.join(key)
	if !leader {
		f.unpin()
		release()
		return
	}
	f.prefetch = true
	if s.peer != nil {
		f.peerKey = c.key
	}
	h := http.Header{}
	h.Set("Accept-Encoding", "identity")
	h.Set(prefetchHeader, "1")
	oreq := &origin.Request{Path: c.path, Query: c.query, Header: h}
	p.started.Inc()
	go func() {
		defer release()
		defer f.unpin()
		go s.fill(f, oreq, nil, c.path, c.key)
		<-f.ready
		switch f.out {
		case outBody:
			if size := f.meta.Size; size > 0 {
				p.learn(t, size)
				p.bytes.Add(size - res)
				grew := size > res
				res = size
				if grew && p.bytes.Load() > p.maxBytes && f.abandonPrefetch() {
					// Larger than its track's segments so far, and past the bound with the others:
					// given up at its headers, unless a viewer reads it already.
					p.dropped.WithLabelValues(dropBytes).Inc()
					return
				}
			}
			n, done, _ := f.waitFor(1 << 62)
			if done {
				p.fetched.Add(float64(n))
				p.mu.Lock()
				if len(p.unused) >= maxUnused {
					clear(p.unused)
				}
				p.unused[c.key] = struct{}{}
				p.mu.Unlock()
			}
		case outPass:
			if f.pass != nil {
				_ = f.pass.Body.Close()
			}
		case outFailed:
			if errors.Is(f.err, ErrOriginBudget) {
				p.dropped.WithLabelValues(dropBudget).Inc()
			} else {
				p.dropped.WithLabelValues(dropError).Inc()
			}
		}
	}()
}

// abandonPrefetch stops a prefetch's fill that no viewer has joined (the prefetch's own pin is
// the only reader): it leaves the registry first, so that a viewer arriving now starts a fill
// of its own, and nothing is stored. It reports whether it stopped the fill.
func (f *flight) abandonPrefetch() bool {
	return f.abandonIf(func(f *flight) bool {
		return f.readers == 1 && f.cancel != nil && !f.done && f.bodyErr == nil && !f.abandoned
	})
}
