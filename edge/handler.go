package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/byterange"
	"github.com/duetcdn/duet/edge/cachekey"
	"github.com/duetcdn/duet/edge/disktier"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/origin"
)

// request is what the handler extracted from a viewer's request.
type request struct {
	path, query string // normalised
	primary     string // cache key before Vary
	head        bool
	rangeHdr    string
	// start is when the request arrived: the latency histogram's start, and the "now" of the
	// first tier lookup and of a hit's Age (one clock read per hit instead of four).
	start time.Time
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
		s.m.observe(csError, start, s.now())
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
		s.m.observe(csError, start, s.now())
		return
	}
	rq.path, rq.query = path, query
	rq.primary = cachekey.Key(path, query)
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
		s.m.observe(csPass, start, s.now())
		return
	}
	cs := s.serveCacheable(ctx, &rq, false)
	s.applyCORS(ctx)
	s.m.observe(cs, start, s.now())
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

// serveCacheable answers a GET or HEAD from the tiers, a collapsed fill, or the origin.
func (s *Server) serveCacheable(ctx *fasthttp.RequestCtx, rq *request, retried bool) cacheStatus {
	key := s.store.lookupKey(rq.primary, func(name string) string { return b2s(ctx.Request.Header.Peek(name)) })
	now := rq.start
	if retried {
		now = s.now()
	}
	var stale *object.Meta
	if e, ok := s.store.open(key); ok {
		fr := freshnessOf(e.meta, now)
		if s.untrusted.Load() {
			fr = expired // purges may be missing: the origin must confirm the entry first
		}
		switch fr {
		case fresh:
			s.respond(ctx, rq, e.meta, body{e: e}, csHit, now)
			return csHit
		case staleRevalidateAsync:
			s.revalidateInBackground(key, rq, *e.meta)
			s.respond(ctx, rq, e.meta, body{e: e}, csStaleWhileRevalidate, now)
			return csStaleWhileRevalidate
		}
		m := *e.meta
		stale = &m
		e.close()
	}
	if rq.rangeHdr != "" && stale == nil {
		if _, inFlight := s.fl.get(key); !inFlight {
			return s.serveSlices(ctx, rq)
		}
	}
	if s.pass.has(key, now) {
		return s.passThrough(ctx, rq, nil)
	}

	f, leader := s.fl.join(key)
	defer f.unpin()
	if leader {
		oreq := s.originRequest(ctx, rq)
		go s.fill(f, oreq, stale, rq.path, rq.primary)
	} else {
		s.m.collapsed.Inc()
	}
	<-f.ready
	switch f.out {
	case outBody:
		if f.meta.Key != key && !retried &&
			s.store.lookupKey(rq.primary, func(name string) string { return b2s(ctx.Request.Header.Peek(name)) }) != f.meta.Key {
			// The response varies on a header whose value this request does not share with the
			// leader's: look again under the right variant.
			return s.serveCacheable(ctx, rq, true)
		}
		cs := csMiss
		if stale != nil {
			cs = csRefetched
		}
		s.respond(ctx, rq, &f.meta, body{f: f}, cs, s.now())
		return cs
	case outRefreshed:
		if e, ok := s.store.open(key); ok {
			cs := csRevalidated
			if stale == nil {
				cs = csHit
			}
			s.respond(ctx, rq, e.meta, body{e: e}, cs, s.now())
			return cs
		}
		if !retried {
			return s.serveCacheable(ctx, rq, true)
		}
		s.fail(ctx, fasthttp.StatusBadGateway, "entry vanished during revalidation")
		return csError
	case outPass:
		if leader && f.pass != nil {
			return s.passThrough(ctx, rq, f.pass)
		}
		return s.passThrough(ctx, rq, nil)
	default: // outFailed
		if stale != nil && !s.untrusted.Load() && usableOnError(stale, s.now()) {
			if e, ok := s.store.open(key); ok {
				s.respond(ctx, rq, e.meta, body{e: e}, csStaleIfError, s.now())
				return csStaleIfError
			}
		}
		s.fail(ctx, f.status, "origin unavailable: "+f.err.Error())
		return csError
	}
}

// originRequest builds the origin read for a viewer's request. End-to-end request headers go
// along (a response may vary on any of them), minus credentials, cookies and the validators
// and ranges the edge sets itself; Accept-Encoding is normalised so that one origin response
// serves a whole variant.
func (s *Server) originRequest(ctx *fasthttp.RequestCtx, rq *request) *origin.Request {
	h := http.Header{}
	for k, v := range ctx.Request.Header.All() {
		name := http.CanonicalHeaderKey(b2s(k))
		if dropHeaders[name] || skipRequestHeaders[name] {
			continue
		}
		h.Add(name, string(v))
	}
	h.Set("Accept-Encoding", normaliseAcceptEncoding(b2s(ctx.Request.Header.Peek("Accept-Encoding"))))
	return &origin.Request{Path: strings.Clone(rq.path), Query: strings.Clone(rq.query), Header: h}
}

// skipRequestHeaders are viewer request headers never forwarded on a cacheable fetch.
var skipRequestHeaders = map[string]bool{
	"Host": true, "Authorization": true, "Cookie": true, "Range": true, "If-Range": true,
	"If-None-Match": true, "If-Modified-Since": true, "If-Match": true, "If-Unmodified-Since": true,
	"Cache-Control": true, "Pragma": true, "Content-Length": true, "Expect": true,
}

// fill runs one origin fetch for a flight, detached from any viewer: a viewer that gives up does
// not cancel the fetch the others are waiting for.
func (s *Server) fill(f *flight, oreq *origin.Request, stale *object.Meta, reqPath, primary string) {
	defer s.fl.leave(f)
	ctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	defer cancel()
	primary = strings.Clone(primary)
	reqPath = strings.Clone(reqPath)

	// Another flight may have committed the key between the viewer's lookup and this flight.
	if stale == nil {
		if m, ok := s.store.peek(f.key); ok && freshnessOf(m, s.now()) == fresh {
			f.out = outRefreshed
			close(f.ready)
			return
		}
	}
	resp, reqTime, respTime, settled := s.exchange(ctx, f, oreq, stale, reqPath, func() { s.store.remove(stale.Key) })
	if settled {
		return
	}
	d := s.decide(primary, reqPath, reqTime, respTime, resp)
	if !d.storable && stale != nil {
		s.store.remove(stale.Key) // the object is no longer cacheable
	}
	if names := varyNames(d.meta.Header); len(names) > 0 {
		d.meta.Key = variantKey(primary, varyValues(names, oreq.Header.Get))
		s.store.index(&object.Meta{Key: d.meta.Key, Header: d.meta.Header})
	}
	if !d.storable || resp.Status == http.StatusPartialContent || resp.Status == http.StatusNotModified {
		if d.reason != "" && d.reason != "server-error" {
			s.pass.add(f.key, s.now().Add(s.cfg.Cache.PassTTL))
		}
		f.out, f.pass = outPass, resp
		close(f.ready)
		return
	}
	if stale != nil && stale.Key != d.meta.Key {
		s.store.remove(stale.Key)
	}
	if s.rewriter != nil && resp.Status == http.StatusOK && kindOf(reqPath) == kindPlaylist {
		resp = s.rewriteManifest(reqPath, resp)
	}
	s.spoolBody(f, resp, d.meta)
}

// maxRewrite bounds the manifests the rewriter sees; larger ones are cached unchanged.
const maxRewrite = 4 << 20

// rewriteManifest reads a whole playlist or MPD, rewrites it, and returns a response that
// carries the new body (or the original bytes when nothing applies).
func (s *Server) rewriteManifest(reqPath string, resp *origin.Response) *origin.Response {
	if resp.ContentLength > maxRewrite {
		return resp
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRewrite+1))
	if err != nil || int64(len(body)) > maxRewrite {
		// Cannot rewrite: hand on what was read followed by the rest, or the error.
		resp.Body = &readCloser{Reader: io.MultiReader(bytes.NewReader(body), &errReader{err}, resp.Body), Closer: resp.Body}
		return resp
	}
	_ = resp.Body.Close()
	if nb, ok := s.rewriter.Rewrite(reqPath, body); ok {
		body = nb
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp
}

type readCloser struct {
	io.Reader
	io.Closer
}

// errReader fails with err (when err is nil it is an empty reader).
type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

// spoolBody streams a cacheable origin body into the disk tier while the flight's readers
// follow, then commits it. A body cut short fails every reader and caches nothing.
func (s *Server) spoolBody(f *flight, resp *origin.Response, meta object.Meta) {
	w, err := s.store.disk.Create(meta.Key)
	if err != nil {
		s.log.Warn("disk tier refused a fill", "cache_key", meta.Key, "error", err)
		f.out, f.pass = outPass, resp
		close(f.ready)
		return
	}
	f.sp = w
	f.release = w.Abort
	f.expect = resp.ContentLength
	meta.Size = resp.ContentLength
	f.meta = meta
	f.out = outBody
	close(f.ready)

	buf := make([]byte, 64<<10)
	var written int64
	var bodyErr error
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				bodyErr = fmt.Errorf("spool body: %w", werr)
				break
			}
			written += int64(n)
			s.m.originBytes.Add(float64(n))
			f.progress(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			bodyErr = fmt.Errorf("read origin body: %w", rerr)
			break
		}
	}
	_ = resp.Body.Close()
	if bodyErr == nil && resp.ContentLength >= 0 && written != resp.ContentLength {
		bodyErr = fmt.Errorf("origin body ended after %d of %d bytes", written, resp.ContentLength)
	}
	if bodyErr != nil {
		s.m.originErrors.WithLabelValues("body").Inc()
		s.log.Warn("fill failed mid-body; nothing cached", "cache_key", meta.Key, "error", bodyErr)
		f.finish(bodyErr)
		return
	}
	m := meta
	m.Size = written
	if f.noStore.Load() {
		f.finish(nil)
		return
	}
	if err := w.Commit(m); err != nil {
		s.log.Warn("commit fill to disk", "cache_key", m.Key, "error", err)
		f.finish(nil)
		return
	}
	if got, ok := s.store.disk.Get(m.Key); ok {
		m = got
	}
	// The memory tier gets the object on its next request (store.open reads a disk hit into
	// memory and offers it): TinyLFU refuses most first-seen objects anyway, and a body-sized
	// buffer per miss was most of the edge's garbage under churn (docs/performance.md).
	s.store.committed(m, nil)
	s.fl.forget(f)
	f.finish(nil)
}

// exchange runs a fill's origin request, conditional when a stale entry is being revalidated.
// It settles the flight itself (settled is true) when the origin fails (connection, timeout,
// 5xx, a broken If-Match) or confirms the stale entry (304); otherwise the caller gets the
// response. withdraw removes the stale entry when a 304 forbids storing it any longer.
func (s *Server) exchange(ctx context.Context, f *flight, oreq *origin.Request, stale *object.Meta, reqPath string, withdraw func()) (resp *origin.Response, reqTime, respTime time.Time, settled bool) {
	if stale != nil {
		oreq.IfNoneMatch = stale.ETag
		if stale.ETag == "" {
			oreq.IfModifiedSince = stale.LastModified
		}
	}
	reqTime = s.now()
	resp, err := s.fetch(ctx, oreq)
	respTime = s.now()
	fail := func(status int, err error) {
		f.out, f.status, f.err = outFailed, status, err
		close(f.ready)
	}
	switch {
	case err != nil:
		fail(statusForError(err), err)
	case resp.Status == http.StatusNotModified && stale != nil:
		_ = resp.Body.Close()
		m, ok := s.merge304(*stale, reqPath, reqTime, respTime, resp)
		if !ok {
			// The 304's headers forbid storing (no-store, private...): the old entry must go.
			withdraw()
			fail(http.StatusBadGateway, errors.New("origin withdrew the entry's cacheability in a 304"))
			break
		}
		if err := s.store.updateMeta(m); err != nil {
			s.log.Warn("store revalidated metadata", "cache_key", f.key, "error", err)
		}
		f.out = outRefreshed
		close(f.ready)
	case resp.Status == http.StatusPreconditionFailed, resp.Status >= 500:
		_ = resp.Body.Close()
		fail(resp.Status, fmt.Errorf("origin answered %d", resp.Status))
	default:
		return resp, reqTime, respTime, false
	}
	return nil, reqTime, respTime, true
}

// fetch asks the origin and records the exchange.
func (s *Server) fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	start := s.now()
	resp, err := s.origin.Fetch(ctx, r)
	s.m.originLatency.Observe(s.now().Sub(start).Seconds())
	s.m.nOriginFetches.Add(1)
	if err != nil || resp.Status >= 500 {
		s.m.nOriginFailures.Add(1)
	}
	switch {
	case err != nil:
		s.m.originErrors.WithLabelValues("connect").Inc()
		s.m.originFetches.WithLabelValues("error").Inc()
	case resp.Status >= 500:
		s.m.originErrors.WithLabelValues("5xx").Inc()
		s.m.originFetches.WithLabelValues("5xx").Inc()
	case resp.Status == http.StatusNotModified:
		s.m.originFetches.WithLabelValues("304").Inc()
	case resp.Status >= 400:
		s.m.originFetches.WithLabelValues("4xx").Inc()
	default:
		s.m.originFetches.WithLabelValues("ok").Inc()
	}
	return resp, err
}

func statusForError(err error) int {
	if errors.Is(err, context.DeadlineExceeded) {
		return fasthttp.StatusGatewayTimeout
	}
	return fasthttp.StatusBadGateway
}

// revalidateInBackground refreshes a stale-while-revalidate entry without holding up the viewer.
func (s *Server) revalidateInBackground(key string, rq *request, stale object.Meta) {
	f, leader := s.fl.join(key)
	if !leader {
		f.unpin()
		return
	}
	oreq := &origin.Request{Path: strings.Clone(rq.path), Query: strings.Clone(rq.query), Header: http.Header{}}
	path, primary := strings.Clone(rq.path), strings.Clone(rq.primary)
	go func() {
		defer f.unpin()
		go s.fill(f, oreq, &stale, path, primary)
		<-f.ready
		if f.out == outPass && f.pass != nil {
			_ = f.pass.Body.Close()
		}
		if f.out == outBody {
			// Nobody reads this body but the tiers; a reader keeps the spool until it is done.
			r := f.newReader(0, -1)
			_, _ = io.Copy(io.Discard, r)
			_ = r.Close()
		}
	}()
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
		var err error
		resp, err = s.fetch(fctx, oreq)
		if err != nil {
			cancel()
			s.fail(ctx, statusForError(err), "origin unavailable: "+err.Error())
			return csError
		}
	}
	s.writeOriginResponse(ctx, resp, rq.head, cancel, "duet; fwd=uri-miss; detail=uncacheable", "PASS")
	return csPass
}

// writeOriginResponse streams an origin response to the viewer unchanged but for hop-by-hop
// headers; done runs once the body has been sent (or dropped).
func (s *Server) writeOriginResponse(ctx *fasthttp.RequestCtx, resp *origin.Response, head bool, done func(), cacheStatus, xcache string) {
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
	ctx.SetBodyStream(&closeFunc{ReadCloser: resp.Body, done: done}, int(resp.ContentLength))
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

// forward passes methods other than GET and HEAD to an HTTP origin, uncached, and invalidates
// what the edge holds for the URL when the origin accepted the request (RFC 9111 §4.4).
func (s *Server) forward(ctx *fasthttp.RequestCtx, rq *request) {
	fw, ok := s.origin.(Forwarder)
	if !ok {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, "this edge's origin is read-only: only GET and HEAD are served")
		return
	}
	h := http.Header{}
	for k, v := range ctx.Request.Header.All() {
		if !validFieldName(k) { // the origin client would refuse to send it: not a 502
			s.refuse(ctx, fasthttp.StatusBadRequest, "bad request: a header field name is not a token")
			return
		}
		name := http.CanonicalHeaderKey(b2s(k))
		if dropHeaders[name] && name != "Set-Cookie" || name == "Host" {
			continue
		}
		h.Add(name, string(v))
	}
	fctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	var reqBody io.Reader = bytes.NewReader(nil)
	var capped *bodyCap
	if ctx.Request.IsBodyStream() {
		capped = &bodyCap{r: ctx.RequestBodyStream(), left: maxRequestBodyBytes}
		reqBody = capped
	} else if b := ctx.Request.Body(); len(b) > 0 {
		reqBody = bytes.NewReader(b)
	}
	s.stopFlights(map[string]struct{}{rq.primary: {}})
	resp, err := fw.Forward(fctx, b2s(ctx.Method()), rq.path, rq.query, h, reqBody)
	if err != nil {
		cancel()
		if capped != nil && capped.over {
			s.refuse(ctx, fasthttp.StatusRequestEntityTooLarge, "the request body is larger than "+strconv.Itoa(maxRequestBodyBytes)+" bytes")
			return
		}
		if capped != nil && capped.failed != nil {
			s.refuse(ctx, fasthttp.StatusBadRequest, "bad request: reading the request body: "+capped.failed.Error())
			return
		}
		s.fail(ctx, statusForError(err), "origin unavailable: "+err.Error())
		return
	}
	if resp.Status < 400 {
		n := 0
		for _, k := range s.store.keysUnder(rq.primary) {
			if s.store.remove(k) {
				n++
			}
		}
		s.pass.remove(rq.primary)
		if n > 0 {
			s.log.LogAttrs(context.Background(), slog.LevelDebug, "invalidated after unsafe method",
				slog.String("cache_key", rq.primary), slog.Int("entries", n))
		}
	}
	s.writeOriginResponse(ctx, resp, false, cancel, "duet; fwd=bypass", "PASS")
}

// fail answers with a status and a reason in plain text.
func (s *Server) fail(ctx *fasthttp.RequestCtx, status int, reason string) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("Cache-Status", "duet; fwd=uri-miss; detail=error")
	ctx.SetBodyString("duet: " + reason + "\n")
}

// body is where a response's bytes come from: a tier entry or a running flight.
type body struct {
	e entry // held by value: a pointer would make every hit allocate (escape analysis)
	f *flight
	// reader, for slices, is an open reader of f that keeps its spool alive.
	reader io.Reader
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
	// Stored names are canonical already (Go's HTTP client and the S3 SDK hand them over in
	// canonical form, storedHeaders keeps them sorted): the first of each name goes in with
	// SetCanonical, which skips fasthttp's per-call copy and normalising of the name; a
	// repeated name (sorted next to its first) is added after it.
	for i := range m.Header {
		f := &m.Header[i]
		if i > 0 && m.Header[i-1].Name == f.Name {
			rh.Add(f.Name, f.Value)
			continue
		}
		rh.SetCanonical(s2b(f.Name), s2b(f.Value))
	}
	// The edge's own headers go in with names already in canonical form and values rendered
	// once (status.go): SetCanonical skips fasthttp's per-call copy and normalising of the name.
	var ageBuf [20]byte
	rh.SetCanonical(hdrAge, strconv.AppendInt(ageBuf[:0], int64(age(m, now)/time.Second), 10))
	rh.SetCanonical(hdrCacheStatus, cacheStatusBytes[cs].header)
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
		rh.SetCanonical(hdrAcceptRanges, valBytes)
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
		ctx.Response.SetBodyRaw(src.e.body[off : off+n])
	case src.e.meta != nil && src.e.file != nil:
		fb, err := newFileBody(src.e.file, off, n)
		if err != nil {
			src.close()
			s.fail(ctx, fasthttp.StatusInternalServerError, "read cached file: "+err.Error())
			return
		}
		ctx.SetBodyStream(fb, int(n))
	case src.f != nil:
		end := off + n
		if n < 0 {
			end = -1
		}
		ctx.SetBodyStream(src.f.newReader(off, end), int(n))
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
	ctx.SetBodyStream(pr, int(mp.Len()))
}

// notModified evaluates If-None-Match, then If-Modified-Since (RFC 9110 §13.2.2).
func notModified(h *fasthttp.RequestHeader, m *object.Meta) bool {
	if inm := b2s(h.PeekCanonical(hdrIfNoneMatch)); inm != "" {
		return etagListMatches(inm, m.ETag, false)
	}
	if ims := h.PeekCanonical(hdrIfModifiedSince); len(ims) > 0 && !m.LastModified.IsZero() {
		t, err := http.ParseTime(string(ims))
		return err == nil && !m.LastModified.Truncate(time.Second).After(t)
	}
	return false
}

// ifRangeHolds evaluates If-Range: a range applies only to the representation the client has.
func ifRangeHolds(h *fasthttp.RequestHeader, m *object.Meta) bool {
	ir := strings.TrimSpace(b2s(h.PeekCanonical(hdrIfRange)))
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, "\"") || strings.HasPrefix(ir, "W/") {
		return etagListMatches(ir, m.ETag, true)
	}
	t, err := http.ParseTime(ir)
	return err == nil && !m.LastModified.IsZero() && m.LastModified.Truncate(time.Second).Equal(t)
}

// etagListMatches compares an entity-tag list with an ETag, weakly unless strong is set.
func etagListMatches(list, etag string, strong bool) bool {
	if etag == "" {
		return false
	}
	if strings.TrimSpace(list) == "*" {
		return true
	}
	if strong && strings.HasPrefix(etag, "W/") {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for part := range strings.SplitSeq(list, ",") {
		part = strings.TrimSpace(part)
		if strong && strings.HasPrefix(part, "W/") {
			continue
		}
		if strings.TrimPrefix(part, "W/") == want {
			return true
		}
	}
	return false
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
