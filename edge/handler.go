package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	s.dates.setDate(&ctx.Response.Header, "", start) // see date.go
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
	// A request with credentials may use only an entry whose response allows it (RFC 9111
	// §3.5), and fetches in a flight of its own (see authFlightKey).
	auth := len(ctx.Request.Header.PeekCanonical(hdrAuthorization)) > 0
	var stale *object.Meta
	e, ok := s.store.open(key)
	if ok && auth && e.meta.Flags&object.AuthReusable == 0 {
		e.close()
		ok = false
	}
	if ok {
		fr := freshnessOf(e.meta, now)
		if s.untrusted.Load() {
			fr = expired // purges may be missing: the origin must confirm the entry first
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
		if _, inFlight := s.fl.get(key); !inFlight {
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

	fkey := key
	if auth {
		fkey = authFlightKey(key, ctx.Request.Header.PeekCanonical(hdrAuthorization))
	}
	f, leader := s.fl.join(fkey)
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
		if e, ok := s.store.open(key); ok && (!auth || e.meta.Flags&object.AuthReusable != 0) {
			cs := csRevalidated
			if stale == nil {
				cs = csHit
			}
			s.respond(ctx, rq, e.meta, body{e: e}, cs, s.now())
			return cs
		}
		if ok {
			e.close()
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
	case outSliced:
		return s.serveSlices(ctx, rq)
	default: // outFailed
		if stale != nil && !s.untrusted.Load() && usableOnError(stale, s.now()) {
			if e, ok := s.store.open(key); ok {
				s.respond(ctx, rq, e.meta, body{e: e}, csStaleIfError, s.now())
				return csStaleIfError
			}
		}
		if f.errResp != nil {
			s.writeBuffered(ctx, f.errResp, rq.head)
			return csPass
		}
		s.fail(ctx, f.status, failReason(f.status))
		return csError
	}
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
	if status == fasthttp.StatusGatewayTimeout {
		return "origin timed out"
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

// originRequest builds the origin read for a viewer's request. End-to-end request headers go
// along (a response may vary on any of them), Authorization included (a protected origin needs
// it; serveCacheable keeps what comes back from other viewers unless RFC 9111 §3.5 allows),
// minus cookies and the validators and ranges the edge sets itself; Accept-Encoding is
// normalised so that one origin response serves a whole variant.
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
	"Host": true, "Cookie": true, "Range": true, "If-Range": true,
	"If-None-Match": true, "If-Modified-Since": true, "If-Match": true, "If-Unmodified-Since": true,
	"Cache-Control": true, "Pragma": true, "Content-Length": true, "Expect": true,
	"Content-Range": true, "Date": true,
}

// fill runs one origin fetch for a flight, detached from any viewer: a viewer that gives up does
// not cancel the fetch the others are waiting for.
func (s *Server) fill(f *flight, oreq *origin.Request, stale *object.Meta, reqPath, primary string) {
	defer s.fl.leave(f)
	ctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	primary = strings.Clone(primary)
	reqPath = strings.Clone(reqPath)

	// Another flight may have committed the key between the viewer's lookup and this flight.
	if stale == nil {
		if m, ok := s.store.peek(f.key); ok && freshnessOf(m, s.now()) == fresh {
			cancel()
			f.out = outRefreshed
			close(f.ready)
			return
		}
	}
	resp, reqTime, respTime, settled := s.exchange(ctx, f, oreq, stale, reqPath, func() { s.store.remove(stale.Key) })
	if settled {
		cancel()
		return
	}
	// The fetch ends with its body (not with this function): a pass-through answer is read by
	// its viewer after the fill returned, and was cut short when the fill cancelled it.
	resp.Body = &closeFunc{ReadCloser: resp.Body, done: cancel}
	d := s.decide(primary, reqPath, reqTime, respTime, resp)
	if d.storable && oreq.Header.Get("Authorization") != "" && d.meta.Flags&object.AuthReusable == 0 {
		d.storable, d.reason = false, "authorization" // RFC 9111 §3.5
	}
	if !d.storable && resp.Status >= 500 {
		// An uncacheable 5xx goes to every viewer of the flight as the origin sent it.
		s.settleError(f, resp)
		return
	}
	if !d.storable && stale != nil {
		s.store.remove(stale.Key) // the object is no longer cacheable
	}
	if names := varyNames(d.meta.Header); len(names) == 0 && d.storable {
		// The URL no longer varies: lookups must find this response under the primary key.
		// (Only a response that will be stored says so: an answer that cannot be shared, such
		// as a 401 to one viewer's bad credentials, must not drop everyone's variants.)
		s.store.forgetVary(primary)
	} else if len(names) > 0 && d.storable {
		d.meta.Key = variantKey(primary, varyValues(names, oreq.Header.Get))
		defer s.store.beginVary(primary, names)()
	}
	if !d.storable || resp.Status == http.StatusPartialContent || resp.Status == http.StatusNotModified {
		if d.reason != "" && oreq.Header.Get("Authorization") == "" {
			// (Not for a flight with credentials: its key is per credentials, and what one
			// viewer's credentials got says nothing about the others'.)
			s.pass.add(f.key, s.now().Add(s.cfg.Cache.PassTTL))
		}
		f.out, f.pass = outPass, resp
		close(f.ready)
		return
	}
	if resp.Status == http.StatusOK && resp.ContentLength > s.sliceAbove {
		// Too large to store whole: the object is cached, and served, as slices. Its viewers
		// fetch them at once; this answer is dropped (a read of the first slices from it would
		// save a round trip, at the cost of a second way to fill slices).
		_ = resp.Body.Close()
		if stale != nil {
			s.store.remove(stale.Key)
		}
		s.store.markSliced(primary)
		f.out = outSliced
		close(f.ready)
		return
	}
	if stale != nil && stale.Key != d.meta.Key {
		s.store.remove(stale.Key)
	}
	if s.rewriter != nil && resp.Status == http.StatusOK && kindOf(reqPath) == kindPlaylist {
		resp = s.rewriteManifest(reqPath, resp)
	}
	f.cancel = cancel // the body may be abandoned when its last viewer leaves (abandonIfUnread)
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
	f.mu.Lock()
	f.expect = resp.ContentLength
	f.streaming = true
	f.mu.Unlock()
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
	if errors.Is(bodyErr, disktier.ErrTooLarge) && meta.Offset == 0 && meta.Total == 0 {
		// An object that announced no length ran past what the disk tier stores whole: its
		// next requests go to slices (an origin that ignores ranges then streams it through).
		s.store.markSliced(primaryOf(meta.Key))
	}
	if bodyErr != nil && f.isAbandoned() {
		s.m.fillsAbandoned.Inc()
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "fill abandoned: no viewer left",
			slog.String("cache_key", meta.Key), slog.Int64("bytes", written), slog.Int64("length", resp.ContentLength))
		f.finish(fmt.Errorf("fill abandoned after %d bytes: no viewer left", written))
		return
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
// It settles the flight itself (settled is true) when the origin gives no answer (connection,
// timeout), a broken If-Match, a 5xx while the stale entry may stand in for it (stale-if-error),
// or answers the revalidation (304); otherwise the caller gets the response, 5xx included.
// withdraw removes the stale entry when a 304 forbids storing it any longer; the viewers then
// fetch on their own (the stored body is still the representation, but refetching is what
// the origin's no-store or private asks of a shared cache, and keeps this path simple).
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
		s.log.Warn("origin fetch failed", "cache_key", f.key, "error", err)
		fail(statusForError(err), err)
	case resp.Status == http.StatusNotModified && stale != nil:
		_ = resp.Body.Close()
		m, ok := s.merge304(*stale, reqPath, reqTime, respTime, resp)
		if oreq.Header.Get("Authorization") != "" && m.Flags&object.AuthReusable == 0 {
			ok = false // RFC 9111 §3.5: the entry no longer allows requests with credentials
		}
		if !ok {
			// The 304's headers forbid storing (no-store, private...): the old entry must go,
			// and every viewer fetches the object for itself.
			withdraw()
			if oreq.Header.Get("Authorization") == "" {
				s.pass.add(f.key, s.now().Add(s.cfg.Cache.PassTTL))
			}
			f.out = outPass
			close(f.ready)
			break
		}
		if err := s.store.updateMeta(m); err != nil {
			s.log.Warn("store revalidated metadata", "cache_key", f.key, "error", err)
		}
		f.out = outRefreshed
		close(f.ready)
	case resp.Status == http.StatusPreconditionFailed:
		_ = resp.Body.Close()
		fail(resp.Status, fmt.Errorf("origin answered %d", resp.Status))
	case resp.Status >= 500 && stale != nil && !s.untrusted.Load() && usableOnError(stale, respTime):
		// stale-if-error (RFC 5861 §4): the stale entry answers instead of the 5xx.
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
func (s *Server) revalidateInBackground(ctx *fasthttp.RequestCtx, key string, rq *request, stale object.Meta) {
	f, leader := s.fl.join(key)
	if !leader {
		f.unpin()
		return
	}
	// The viewer's headers go along as on a miss: the entry may be one variant of a response
	// that varies on them, and must be refreshed as that variant.
	oreq := s.originRequest(ctx, rq)
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
		oreq.Head = rq.head
		var err error
		resp, err = s.fetch(fctx, oreq)
		if err != nil {
			cancel()
			s.log.Warn("origin fetch failed", "path", rq.path, "error", err)
			s.fail(ctx, statusForError(err), failReason(statusForError(err)))
			return csError
		}
	}
	s.writeOriginResponse(ctx, resp, rq.head, cancel, "duet; fwd=uri-miss; detail=uncacheable", "PASS")
	return csPass
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
	ctx.SetBodyStream(&closeFunc{ReadCloser: resp.Body, done: done}, int(resp.ContentLength))
}

// maxBufferedError bounds the origin 5xx body a flight copies for its waiters.
const maxBufferedError = 64 << 10

// bufferedResponse is a small origin answer held whole, to be written to many viewers.
type bufferedResponse struct {
	status int
	header http.Header
	body   []byte
}

// settleError ends a flight whose answer is an uncacheable 5xx: its waiters all get a copy when
// the body is small, instead of all asking the origin again at once (a storm on an origin that
// is already failing). A larger body streams to the leader, and each waiter fetches its own.
func (s *Server) settleError(f *flight, resp *origin.Response) {
	if resp.ContentLength > maxBufferedError {
		f.out, f.pass = outPass, resp
		close(f.ready)
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedError+1))
	_ = resp.Body.Close()
	switch {
	case err != nil:
		s.log.Warn("read origin error body", "cache_key", f.key, "error", err)
		f.out, f.status, f.err = outFailed, http.StatusBadGateway, fmt.Errorf("read origin %d body: %w", resp.Status, err)
	case len(b) > maxBufferedError:
		f.out, f.status, f.err = outFailed, resp.Status, fmt.Errorf("origin answered %d with a large body", resp.Status)
	default:
		f.out, f.status, f.err = outFailed, resp.Status, fmt.Errorf("origin answered %d", resp.Status)
		f.errResp = &bufferedResponse{status: resp.Status, header: resp.Header, body: b}
	}
	close(f.ready)
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
		s.log.Warn("origin forward failed", "path", rq.path, "error", err)
		s.fail(ctx, statusForError(err), failReason(statusForError(err)))
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
	if !preconditionsHold(&ctx.Request.Header, m) {
		// Before any of the entry's headers: a 412 must not carry its Cache-Control.
		src.close()
		s.fail(ctx, fasthttp.StatusPreconditionFailed, "precondition failed")
		return
	}
	// The stored Date goes with the Age computed from it (RFC 9111 §4, §5.1).
	s.dates.setDate(rh, storedDate(m.Header), now)
	// Stored names are canonical already (Go's HTTP client and the S3 SDK hand them over in
	// canonical form, storedHeaders keeps them sorted): the first of each name goes in with
	// SetCanonical, which skips fasthttp's per-call copy and normalising of the name; a
	// repeated name (sorted next to its first) is added after it.
	for i := range m.Header {
		f := &m.Header[i]
		if f.Name == "Content-Range" && m.Status != http.StatusPartialContent {
			continue // a whole object stored from a 206 that covered it: respond sets its own
		}
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
