package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/byterange"
	"github.com/duetcdn/duet/edge/cachecontrol"
	"github.com/duetcdn/duet/edge/cachekey"
	"github.com/duetcdn/duet/edge/conditional"
	"github.com/duetcdn/duet/edge/disktier"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/cmcd"
	"github.com/duetcdn/duet/internal/signedurl"
	"github.com/duetcdn/duet/origin"
)

// request is what the handler extracted from a viewer's request.
type request struct {
	path, query string // normalised
	primary     string // cache key before Vary
	head        bool
	rangeHdr    string
	// corsApplied is set once the answer carries the CORS headers (storedHeaders renders them
	// with an entry's).
	corsApplied bool
	// start is when the request arrived: the latency histogram's start, and the "now" of the
	// first tier lookup and of a hit's Age (one clock read per hit instead of four).
	start time.Time
	// tier is where the body came from, originTime how long the origin took to answer (0: not
	// asked), id the request id (hasID: set), cmcd the player's report: for requestEnd.
	tier       string
	originTime time.Duration
	id         [16]byte
	hasID      bool
	cmcd       cmcd.Data
	// peer is set for a request from a peer edge (peer fill): answered from here, never sent
	// on to another peer.
	peer bool

	// cacheStatus is the Cache-Status respond set, for the access log ("": look it up).
	cacheStatus string
}

// b2s views bytes as a string without copying; the string must not outlive the request unless
// cloned (keys that are stored are cloned where they are stored).
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// s2b is b2s's inverse, for handing a string to fasthttp calls that only read the bytes.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	var start time.Time
	if s.realClock {
		start = ctx.Time() // fasthttp read the clock just before calling the handler
	}
	if start.IsZero() {
		start = s.now()
	}
	rq := request{start: start}
	if s.refuseRequest(ctx) {
		s.requestEnd(ctx, &rq, csError)
		return
	}
	target := b2s(ctx.Request.Header.RequestURI())
	if i := strings.Index(target, "://"); i >= 0 && i < 6 { // absolute-form: keep the path
		target = target[i+3:]
		if j := strings.IndexByte(target, '/'); j >= 0 {
			target = target[j:]
		} else {
			target = "/"
		}
	}
	if target == bus.EdgeReadyPath {
		s.serveReady(ctx)
		return
	}
	if s.cors.enabled() && isPreflight(ctx) {
		s.cors.servePreflight(ctx)
		return
	}
	rawPath, rawQuery, _ := strings.Cut(target, "?")
	var tok string
	if s.tokens != nil { // the token comes off before the path is read: it is never in a key
		var inPath bool
		if tok, rawPath, inPath = signedurl.SplitPath(rawPath); !inPath {
			tok, rawQuery = signedurl.FromQuery(rawQuery)
		}
	}
	path, query, err := s.keys.Normalize(rawPath, rawQuery)
	if err != nil {
		status := fasthttp.StatusBadRequest
		if errors.Is(err, cachekey.ErrTooLong) {
			status = fasthttp.StatusRequestURITooLong
		}
		s.fail(ctx, status, "bad request path: "+err.Error())
		if ctx.IsGet() || ctx.IsHead() {
			s.applyCORS(ctx)
		}
		s.requestEnd(ctx, &rq, csError)
		return
	}
	if s.tokens != nil && !s.allowToken(ctx, tok, signedurl.Canonical(path), start) {
		if ctx.IsGet() || ctx.IsHead() {
			s.applyCORS(ctx) // so that a player can read the reason
		}
		s.requestEnd(ctx, &rq, csError)
		return
	}
	rq.path, rq.query = path, query
	rq.primary = cachekey.Key(path, query)
	if s.peer != nil && s.peerRequest(ctx, &rq) {
		s.requestEnd(ctx, &rq, csError)
		return
	}
	// The request is read (a forwarded body streams on, bounded by cache.fill_timeout): from
	// here the read timeout no longer applies.
	s.watch.handling(ctx.Conn())
	switch {
	case ctx.IsGet():
		rq.rangeHdr = b2s(ctx.Request.Header.PeekCanonical(hdrRange))
	case ctx.IsHead():
		rq.head = true
	default:
		s.forward(ctx, &rq)
		s.requestEnd(ctx, &rq, csPass)
		return
	}
	cs := s.serveCacheable(ctx, &rq)
	if !rq.corsApplied {
		s.applyCORS(ctx)
	}
	if s.pf != nil && !rq.peer && !rq.head && cs != csError && cs != csPass &&
		len(ctx.Request.Header.PeekCanonical(hdrAuthorization)) == 0 {
		s.pf.served(ctx, &rq) // (a prefetch has no credentials: content that needs them is not prefetched)
	}
	s.requestEnd(ctx, &rq, cs)
}

// applyCORS adds the CORS headers to a GET or HEAD answer, last, so that the edge's policy
// replaces any the origin sent.
func (s *Server) applyCORS(ctx *fasthttp.RequestCtx) {
	if s.cors.enabled() {
		s.cors.apply(&ctx.Response.Header)
	}
}

// serveReady answers steering's probes on the viewer listener (the admin listener is private).
func (s *Server) serveReady(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	if !s.Ready() {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString("draining\n")
		return
	}
	ctx.SetBodyString("ready\n")
}

// serveCacheable answers a GET or HEAD from the tiers, a collapsed fill, or the origin. It
// looks the key up twice at most: again when the fill it waited for settled another variant
// than this request's, or revalidated an entry that was gone by the time it looked.
func (s *Server) serveCacheable(ctx *fasthttp.RequestCtx, rq *request) cacheStatus {
	// A request with credentials may use only an entry whose response allows it (RFC 9111
	// §3.5), and fetches in a flight of its own (see authFlightKey).
	auth := len(ctx.Request.Header.PeekCanonical(hdrAuthorization)) > 0
	now := rq.start
	for look := 1; ; look++ {
		key := s.store.lookupKey(rq.primary, func(name string) string { return b2s(ctx.Request.Header.Peek(name)) })
		var stale *object.Meta
		e, ok := s.store.open(key)
		if ok && auth && e.meta.Flags&object.AuthReusable == 0 {
			e.close()
			ok = false
		}
		if ok {
			fr := freshnessOf(e.meta, now)
			if fr != expired && !s.confirmed(e.meta, now) {
				fr = expired // purges may be missing: the origin must confirm the entry first (trust.go)
			}
			if fr != expired && s.cfg.Cache.RevalidateOnViewerNoCache && viewerNoCache(&ctx.Request.Header) {
				fr = expired
			}
			switch fr {
			case fresh:
				s.respond(ctx, rq, e.meta, body{e: e}, csHit, now)
				return csHit
			case staleRevalidateAsync:
				s.revalidateInBackground(ctx, key, rq, *e.meta)
				s.respond(ctx, rq, e.meta, body{e: e}, csStaleWhileRevalidate, now)
				return csStaleWhileRevalidate
			}
			m := *e.meta
			stale = &m
			e.close()
		}
		sliced := rq.rangeHdr != "" || s.store.isSliced(rq.primary)
		if auth && sliced && stale == nil {
			// Slices are stored as they arrive, before anyone could tell whether this viewer's
			// credentials allow sharing them: a range (or a sliced object) with credentials passes.
			return s.passThrough(ctx, rq, nil)
		}
		if sliced && stale == nil {
			// A peer's request for a range (a slice it fills) never waits for a fill of the whole
			// object here: that fill may itself be waiting for the asking peer (it resolves the
			// object's slices from their owners), and the two would wait for each other.
			if _, inFlight := s.fl.get(key); !inFlight || rq.peer && rq.rangeHdr != "" {
				return s.serveSlices(ctx, rq)
			}
		}
		if rq.head && stale == nil {
			if _, inFlight := s.fl.get(key); !inFlight {
				return s.headThrough(ctx, rq)
			}
		}
		if s.pass.has(key, now) {
			return s.passThrough(ctx, rq, nil)
		}
		cs, again := s.serveFill(ctx, rq, key, stale, auth, look == 2)
		if !again {
			return cs
		}
		now = s.now()
	}
}

// serveFill answers from the flight that fills key, joined or led. again asks serveCacheable
// to look the key up once more (never when last is set): the flight stored a variant this
// request does not share, or revalidated an entry that is gone.
func (s *Server) serveFill(ctx *fasthttp.RequestCtx, rq *request, key string, stale *object.Meta, auth, last bool) (cs cacheStatus, again bool) {
	fkey := key
	if auth {
		fkey = authFlightKey(key, ctx.Request.Header.PeekCanonical(hdrAuthorization))
	}
	f, leader := s.joinFill(fkey, func(f *flight) {
		if s.peer != nil && !rq.peer && !auth && s.peerable(rq.path) {
			f.peerKey = strings.Clone(rq.primary)
		}
		// A peer's prefetch is a prefetch here too (the header counts only from an authenticated peer).
		f.prefetch = rq.peer && len(ctx.Request.Header.PeekCanonical(hdrPrefetch)) > 0
		go s.fill(f, s.originRequest(ctx, rq), stale, rq.path, rq.primary)
	})
	defer f.unpin()
	rq.originTime, rq.tier = f.originTime, "origin"
	if f.out == outBody && f.meta.Key != key && !last &&
		s.store.lookupKey(rq.primary, func(name string) string { return b2s(ctx.Request.Header.Peek(name)) }) != f.meta.Key {
		// The response varies on a header whose value this request does not share with the
		// leader's: look again under the right variant.
		return csError, true
	}
	if m, src, cs, ok := s.fromFlight(f, key, stale, auth); ok {
		s.respond(ctx, rq, m, src, cs, s.now())
		return cs, false
	}
	switch f.out {
	case outRefreshed: // and the entry is gone again
		if !last {
			return csError, true
		}
		s.fail(ctx, fasthttp.StatusBadGateway, "entry vanished during revalidation")
		return csError, false
	case outPass:
		if leader && f.pass != nil {
			return s.passThrough(ctx, rq, f.pass), false
		}
		return s.passThrough(ctx, rq, nil), false
	case outSliced:
		return s.serveSlices(ctx, rq), false
	default: // outFailed, and no stale entry may stand in
		if f.prefetch && errors.Is(f.err, ErrOriginBudget) && !last {
			// A prefetch refused a turn it would not wait for: this viewer waits for its own.
			return csError, true
		}
		if f.errResp != nil {
			s.writeBuffered(ctx, f.errResp, rq.head)
			return csPass, false
		}
		status := f.status
		if status == fasthttp.StatusServiceUnavailable && !errors.Is(f.err, ErrOriginBudget) {
			status = fasthttp.StatusBadGateway // the origin's own 503: the edge's 503 means its budget
		}
		s.fail(ctx, status, failReason(status))
		return csError, false
	}
}

// fromFlight is what a settled flight gives a request to answer from, the same for whole
// objects and slices: the body being filled (outBody), the entry the flight revalidated
// (outRefreshed), or the stale entry when the fill failed and stale-if-error lets it stand in.
// ok is false for everything else, which the caller answers in its own way.
func (s *Server) fromFlight(f *flight, key string, stale *object.Meta, auth bool) (m *object.Meta, src body, cs cacheStatus, ok bool) {
	switch f.out {
	case outBody:
		cs = csMiss
		if stale != nil {
			cs = csRefetched
		}
		return &f.meta, body{f: f}, cs, true
	case outRefreshed:
		e, found := s.store.open(key)
		if found && auth && e.meta.Flags&object.AuthReusable == 0 {
			e.close()
			found = false
		}
		if found {
			cs = csRevalidated
			if stale == nil {
				cs = csHit // another flight had committed the key (see fill)
			}
			return e.meta, body{e: e}, cs, true
		}
	case outFailed:
		if s.standsIn(stale, f.err, s.now()) {
			if e, found := s.store.open(key); found {
				return e.meta, body{e: e}, csStaleIfError, true
			}
		}
	}
	return nil, body{}, csError, false
}

// viewerNoCache tells whether a request asks for revalidation: Cache-Control no-cache or
// max-age=0, or, without Cache-Control, Pragma: no-cache (RFC 9111 §5.4).
func viewerNoCache(h *fasthttp.RequestHeader) bool {
	if cc := h.PeekAll("Cache-Control"); len(cc) > 0 {
		vals := make([]string, len(cc))
		for i, v := range cc {
			vals[i] = string(v)
		}
		d := cachecontrol.Parse(vals...)
		return d.NoCache || (d.HasMaxAge && d.MaxAge == 0)
	}
	for _, v := range h.PeekAll("Pragma") {
		if strings.Contains(strings.ToLower(string(v)), "no-cache") {
			return true
		}
	}
	return false
}

// authFlightKey is the flight key of a request with credentials: one flight per key and
// credentials, so that a response fetched with them reaches only requests that carry the same
// ones, and anonymous requests never wait for it (what it stores, when RFC 9111 §3.5 allows,
// goes under the ordinary key for everyone).
func authFlightKey(key string, authorization []byte) string {
	sum := sha256.Sum256(authorization)
	return key + "\x00auth=" + hex.EncodeToString(sum[:16])
}

// failReason is the viewer's reason for an edge-made 502 or 504. It never names the origin
// (its address is the operator's business); the log has the detail.
func failReason(status int) string {
	switch status {
	case fasthttp.StatusGatewayTimeout:
		return "origin timed out"
	case fasthttp.StatusServiceUnavailable:
		return "origin request budget exhausted: retry after the time Retry-After gives"
	}
	return "origin unavailable"
}

// viewerReason is the reason a viewer reads for a failed fetch: failReason when err comes
// from reaching the origin (a network error or a timeout, whose text names the origin's
// address), err's own text otherwise (a bad answer the edge refused, say).
func viewerReason(status int, err error) string {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, origin.ErrTimeout) {
		return failReason(status)
	}
	return err.Error()
}

// passThrough fetches for this viewer alone (uncacheable responses, hit-for-pass keys) and
// streams the answer. resp, when given, is a response a flight already received.
func (s *Server) passThrough(ctx *fasthttp.RequestCtx, rq *request, resp *origin.Response) cacheStatus {
	cancel := func() {}
	if resp == nil {
		var fctx context.Context
		fctx, cancel = context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
		oreq := s.originRequest(ctx, rq)
		if rq.rangeHdr != "" {
			oreq.Range = rq.rangeHdr
		}
		oreq.Head = rq.head
		var err error
		began := s.now()
		resp, err = s.fetch(fctx, oreq)
		rq.originTime = s.now().Sub(began)
		if err != nil {
			cancel()
			s.log.Warn("origin fetch failed", "path", rq.path, "error", err)
			s.fail(ctx, statusForError(err), failReason(statusForError(err)))
			return csError
		}
	}
	rq.tier = "origin"
	s.writeOriginResponse(ctx, resp, rq.head, cancel, "duet; fwd=uri-miss; detail=uncacheable", "PASS")
	return csPass
}

// headThrough answers a HEAD for an object the edge does not hold by asking the origin for the
// headers alone (HEAD, or S3's HeadObject): a HEAD must never cost the origin the whole body.
// Nothing is stored (a HEAD answer has no body to store), and the request is not collapsed
// with others; a HEAD that arrives while a GET of the object is being filled joins that fill
// instead (serveCacheable).
func (s *Server) headThrough(ctx *fasthttp.RequestCtx, rq *request) cacheStatus {
	fctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	oreq := s.originRequest(ctx, rq)
	oreq.Head = true
	began := s.now()
	resp, err := s.fetch(fctx, oreq)
	rq.tier, rq.originTime = "origin", s.now().Sub(began)
	if err != nil {
		cancel()
		s.fail(ctx, statusForError(err), "origin unavailable: "+err.Error())
		return csError
	}
	s.writeOriginResponse(ctx, resp, true, cancel, "duet; fwd=uri-miss; detail=head", "MISS")
	return csMiss
}

// writeOriginResponse streams an origin response to the viewer unchanged but for hop-by-hop
// headers; done runs once the body has been sent (or dropped).
func (s *Server) writeOriginResponse(ctx *fasthttp.RequestCtx, resp *origin.Response, head bool, done func(), cacheStatus, xcache string) {
	s.dates.setDate(&ctx.Response.Header, resp.Header.Get("Date"), s.now())
	ctx.SetStatusCode(resp.Status)
	for name, vals := range resp.Header {
		if dropHeaders[name] && name != "Set-Cookie" && name != "Content-Range" && name != "Accept-Ranges" {
			continue
		}
		if name == "Content-Length" || strings.HasPrefix(name, "X-Amz-") {
			continue
		}
		for _, v := range vals {
			ctx.Response.Header.Add(name, v)
		}
	}
	ctx.Response.Header.Set("Cache-Status", cacheStatus)
	ctx.Response.Header.Set("X-Cache", xcache)
	if head || resp.Status == http.StatusNotModified || resp.Status == http.StatusNoContent {
		_ = resp.Body.Close()
		done()
		if resp.ContentLength >= 0 && head {
			ctx.Response.SkipBody = true
			ctx.Response.Header.SetContentLength(int(resp.ContentLength))
		}
		return
	}
	s.setBodyStream(ctx, &closeFunc{ReadCloser: resp.Body, done: done}, int(resp.ContentLength))
}

// writeBuffered writes a buffered origin answer as writeOriginResponse writes a streamed one.
func (s *Server) writeBuffered(ctx *fasthttp.RequestCtx, b *bufferedResponse, head bool) {
	resp := &origin.Response{Status: b.status, Header: b.header, Body: io.NopCloser(bytes.NewReader(b.body)), ContentLength: int64(len(b.body))}
	s.writeOriginResponse(ctx, resp, head, func() {}, cacheStatusInfo[csPass].header, cacheStatusInfo[csPass].xcache)
}

type closeFunc struct {
	io.ReadCloser
	done func()
}

func (c *closeFunc) Close() error {
	err := c.ReadCloser.Close()
	c.done()
	return err
}

// fail answers with a status and a reason in plain text.
func (s *Server) fail(ctx *fasthttp.RequestCtx, status int, reason string) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("Cache-Status", "duet; fwd=uri-miss; detail=error")
	if status == fasthttp.StatusServiceUnavailable {
		// The edge makes a 503 only when its origin budget is exhausted (origin.max_requests_per_sec).
		ctx.Response.Header.Set("Cache-Status", "duet; fwd=uri-miss; detail=origin-budget")
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(s.budget.retryAfter()))
	}
	ctx.SetBodyString("duet: " + reason + "\n")
}

// body is where a response's bytes come from: a tier entry or a running flight.
type body struct {
	e entry // held by value: a pointer would make every hit allocate (escape analysis)
	f *flight
	// reader, for slices, is an open reader of f that keeps its spool alive.
	reader io.Reader
}

// tier names where the body comes from, for the access log.
func (b body) tier() string {
	switch {
	case b.f != nil:
		return "origin"
	case b.e.tier == "disk":
		return "disk"
	case b.e.meta != nil:
		return "memory"
	}
	return ""
}

func (b body) close() {
	if b.e.meta != nil {
		b.e.close()
	}
}

// respond writes an entry's (or a flight's) response, answering client conditionals and ranges
// from the cached bytes. now is the time the entry's Age is computed at.
func (s *Server) respond(ctx *fasthttp.RequestCtx, rq *request, m *object.Meta, src body, cs cacheStatus, now time.Time) {
	rh := &ctx.Response.Header
	rq.tier = src.tier()
	if !preconditionsHold(&ctx.Request.Header, m) {
		// Before any of the entry's headers: a 412 must not carry its Cache-Control.
		src.close()
		s.fail(ctx, fasthttp.StatusPreconditionFailed, "precondition failed")
		return
	}
	s.storedHeaders(rh, m, src.e, now)
	if rq.peer {
		peerHeaders(rh, m)
	}
	rq.corsApplied = true
	// The edge's own headers go in with names already in canonical form and values rendered
	// once (status.go): SetCanonical skips fasthttp's per-call copy and normalising of the name.
	var ageBuf [20]byte
	rh.SetCanonical(hdrAge, strconv.AppendInt(ageBuf[:0], int64(age(m, now)/time.Second), 10))
	rh.SetCanonical(hdrCacheStatus, cacheStatusBytes[cs].header)
	rq.cacheStatus = cs.header()
	rh.SetCanonical(hdrXCache, cacheStatusBytes[cs].xcache)

	size := m.Size
	if src.f != nil && size == 0 {
		// An empty body has no last byte to hold back until the commit: wait for the commit, so
		// that the next request is a hit here too (negative caching of 404s relies on it).
		if _, done, err := src.f.waitFor(1); err != nil || !done {
			s.fail(ctx, fasthttp.StatusBadGateway, "origin body failed")
			return
		}
	}
	if src.f != nil && size < 0 && (rq.rangeHdr != "" || rq.head) {
		// The origin sent no length: wait for the whole body before answering in ranges.
		n, done, err := src.f.waitFor(1 << 62)
		if err != nil || !done {
			s.fail(ctx, fasthttp.StatusBadGateway, "origin body failed")
			return
		}
		size = n
	}
	status := m.Status
	if status == http.StatusOK && notModified(&ctx.Request.Header, m) {
		src.close()
		ctx.SetStatusCode(http.StatusNotModified)
		ctx.Response.SkipBody = true
		return
	}
	off, n := int64(0), size
	if status == http.StatusOK {
		if rq.rangeHdr != "" && ifRangeHolds(&ctx.Request.Header, m) {
			ranges, err := byterange.Parse(rq.rangeHdr, size)
			switch {
			case errors.Is(err, byterange.ErrUnsatisfiable):
				src.close()
				rh.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
				s.failRange(ctx)
				return
			case err != nil || len(ranges) == 0:
				// A malformed Range is ignored: the whole object follows (RFC 9110 §14.2).
			case len(ranges) == 1:
				status, off, n = http.StatusPartialContent, ranges[0].Start, ranges[0].Len()
				rh.Set("Content-Range", byterange.ContentRange(ranges[0], size))
			default:
				s.respondMultipart(ctx, m, src, ranges, size)
				return
			}
		}
	}
	ctx.SetStatusCode(status)
	if rq.head {
		src.close()
		ctx.Response.SkipBody = true
		rh.SetContentLength(int(n))
		return
	}
	s.m.servedFrom(src, n)
	switch {
	case src.e.meta != nil && src.e.body != nil:
		setHitBody(ctx, src.e.body[off:off+n])
	case src.e.meta != nil && src.e.file != nil:
		fb, err := newFileBody(src.e.file, off, n)
		if err != nil {
			src.close()
			s.fail(ctx, fasthttp.StatusInternalServerError, "read cached file: "+err.Error())
			return
		}
		s.setBodyStream(ctx, fb, int(n))
	case src.f != nil:
		end := off + n
		if n < 0 {
			end = -1
		}
		s.setBodyStream(ctx, src.f.newReader(off, end), int(n))
	default:
		ctx.Response.SetBodyRaw(nil)
	}
}

func (s *Server) failRange(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusRequestedRangeNotSatisfiable)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("duet: requested range not satisfiable\n")
}

// respondMultipart answers a multi-range request with multipart/byteranges.
func (s *Server) respondMultipart(ctx *fasthttp.RequestCtx, m *object.Meta, src body, ranges []byterange.Range, size int64) {
	var ra io.ReaderAt
	var release func()
	switch {
	case src.e.meta != nil && src.e.body != nil:
		ra, release = bytes.NewReader(src.e.body), func() {}
	case src.e.meta != nil && src.e.file != nil:
		h := src.e.file
		ra, release = h, func() { _ = h.Close() }
	case src.f != nil:
		r := src.f.newReader(0, -1)
		ra, release = r, func() { _ = r.Close() }
	}
	ct := string(ctx.Response.Header.ContentType())
	ctx.Response.Header.Del("Content-Type")
	mp := byterange.NewMultipart(byterange.RandomBoundary(), ct, size, ranges)
	ctx.SetStatusCode(http.StatusPartialContent)
	ctx.Response.Header.SetContentType(mp.ContentType())
	if ctx.IsHead() {
		release()
		ctx.Response.SkipBody = true
		ctx.Response.Header.SetContentLength(int(mp.Len()))
		return
	}
	pr, pw := io.Pipe()
	go func() {
		defer release()
		_, err := mp.WriteTo(pw, ra)
		pw.CloseWithError(err)
	}()
	s.setBodyStream(ctx, pr, int(mp.Len()))
}

// The conditional checks (edge/conditional) read the request's fields as views of fasthttp's
// buffers: nothing is copied on a hit.

func stored(m *object.Meta) conditional.Stored {
	return conditional.Stored{Status: m.Status, ETag: m.ETag, LastModified: m.LastModified}
}

// preconditionsHold evaluates If-Match and If-Unmodified-Since; false means 412.
func preconditionsHold(h *fasthttp.RequestHeader, m *object.Meta) bool {
	return conditional.Preconditions(b2s(h.PeekCanonical(hdrIfMatch)), b2s(h.PeekCanonical(hdrIfUnmodSince)), stored(m))
}

// notModified evaluates If-None-Match and If-Modified-Since; true means 304.
func notModified(h *fasthttp.RequestHeader, m *object.Meta) bool {
	return conditional.NotModified(b2s(h.PeekCanonical(hdrIfNoneMatch)), b2s(h.PeekCanonical(hdrIfModifiedSince)), stored(m))
}

// ifRangeHolds evaluates If-Range: a range applies only to the representation the client has.
func ifRangeHolds(h *fasthttp.RequestHeader, m *object.Meta) bool {
	return conditional.IfRange(b2s(h.PeekCanonical(hdrIfRange)), stored(m))
}

// fileBody streams part of a disk entry. fasthttp hands the *os.File inside an
// io.LimitedReader to the connection's ReadFrom, which the kernel serves with sendfile.
type fileBody struct {
	h  *disktier.Handle
	lr io.LimitedReader
}

func newFileBody(h *disktier.Handle, off, n int64) (*fileBody, error) {
	if _, err := h.File().Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return &fileBody{h: h, lr: io.LimitedReader{R: h.File(), N: n}}, nil
}

func (b *fileBody) Read(p []byte) (int, error) { return b.lr.Read(p) }

// WriteTo lets fasthttp's fixed-size writer see an *io.LimitedReader over the *os.File, the shape
// for which it flushes its buffer and calls sendfile.
func (b *fileBody) WriteTo(w io.Writer) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(&b.lr)
	}
	return io.Copy(w, &b.lr)
}

func (b *fileBody) Close() error { return b.h.Close() }
