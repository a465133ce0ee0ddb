package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/byterange"
	"github.com/duetcdn/duet/edge/disktier"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/origin"
)

// A fill settles its flight exactly once, as soon as the origin's headers (or the lack of an
// answer) tell what the flight turned out to be; the waiters then go on, each answering from
// the result. settle is the only writer of a flight's result and the only closer of its ready
// channel (TestOnlySettleSettles checks the package's source for any other).
func (f *flight) settle(r result) {
	f.result = r
	close(f.ready)
}

// joinFill joins the flight that fills key, or, when there is none, leads a new one: lead
// then starts its fill. It returns once the flight is settled. The flight comes pinned (see
// flights.join): the caller unpins it when done with its body.
func (s *Server) joinFill(key string, lead func(f *flight)) (f *flight, leader bool) {
	f, leader = s.fl.join(key)
	if leader {
		lead(f)
	} else {
		s.m.collapsed.Inc()
	}
	<-f.ready
	return f, leader
}

// fill runs one origin fetch for a flight, detached from any viewer: a viewer that gives up does
// not cancel the fetch the others are waiting for.
func (s *Server) fill(f *flight, oreq *origin.Request, stale *object.Meta, reqPath, primary string) {
	defer s.fl.leave(f)
	ctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	primary = strings.Clone(primary)
	reqPath = strings.Clone(reqPath)

	// Another flight may have committed the key between the viewer's lookup and this flight, or
	// revalidated the stale entry the viewer found (a viewer that looked just before a
	// revalidation's 304 was stored must not send a second conditional request).
	if m, ok := s.store.peek(f.key); ok && freshnessOf(m, s.now()) == fresh &&
		(stale == nil || m.RequestTime.After(stale.RequestTime) && s.confirmed(m, s.now())) {
		cancel()
		f.settle(result{out: outRefreshed})
		return
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
		f.settle(result{out: outPass, pass: resp})
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
		f.settle(result{out: outSliced})
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

// fillSlice fetches one slice, the bytes from first on, of an object of total bytes (-1 when
// not known yet). An origin that ignores ranges (200), or an object that fits in one slice, is
// stored whole under the object's own key instead, unless it is too large to store whole: then
// it goes to the viewer that asked, uncached. Every other answer must be exactly the range
// asked for, with the pinned ETag and total: anything else fails the slice with a reason.
func (s *Server) fillSlice(f *flight, oreq *origin.Request, stale *object.Meta, reqPath, primary string, first, total int64) {
	defer s.fl.leave(f)
	ctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	primary, reqPath = strings.Clone(primary), strings.Clone(reqPath)
	resp, reqTime, respTime, settled := s.exchange(ctx, f, oreq, stale, reqPath, func() { s.dropSlices(primary) })
	if settled {
		cancel()
		return
	}
	// The fetch ends with its body, which a pass-through answer reads after this returns.
	resp.Body = &closeFunc{ReadCloser: resp.Body, done: cancel}
	pass := func(resp *origin.Response) {
		f.settle(result{out: outPass, pass: resp})
	}
	fail := func(status int, err error) {
		_ = resp.Body.Close()
		f.settle(result{out: outFailed, status: status, err: err})
	}
	d := s.decide(primary, reqPath, reqTime, respTime, resp)
	if !d.storable || (resp.Status != http.StatusOK && resp.Status != http.StatusPartialContent) {
		pass(resp)
		return
	}
	if oreq.IfMatch != "" && d.meta.ETag != oreq.IfMatch {
		// The origin ignored If-Match and sent another version.
		fail(http.StatusPreconditionFailed, errPinBroken)
		return
	}
	switch resp.Status {
	case http.StatusOK:
		if resp.ContentLength > s.sliceAbove || resp.ContentLength < 0 && s.store.isSliced(primary) {
			pass(resp) // too large to store whole, and the origin does not do ranges
			return
		}
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		start, end, size, err := byterange.ParseContentRange(cr)
		if err != nil || size < 0 || start < 0 {
			fail(http.StatusBadGateway, fmt.Errorf("origin sent a bad Content-Range %q", cr))
			return
		}
		wantEnd := min(first+int64(s.cfg.Cache.SliceBytes), size) - 1
		switch {
		case start != first || end != wantEnd:
			fail(http.StatusBadGateway, fmt.Errorf("origin answered %q to %s", cr, oreq.Range))
			return
		case total >= 0 && size != total:
			fail(http.StatusBadGateway, fmt.Errorf("origin answered %q for an object of %d bytes with the same ETag", cr, total))
			return
		case resp.ContentLength >= 0 && resp.ContentLength != end-start+1:
			fail(http.StatusBadGateway, fmt.Errorf("origin sent %d bytes of body for %q", resp.ContentLength, cr))
			return
		}
		resp.ContentLength = end - start + 1 // spoolBody holds the body to it
		if start == 0 && end == size-1 {
			d.meta.Status = http.StatusOK // the slice is the whole object
		} else {
			d.meta.Key, d.meta.Offset, d.meta.Total = f.key, start, size
		}
	}
	if stale != nil && stale.ETag != d.meta.ETag {
		// The object changed: its other slices belong to the old version.
		s.dropSlices(primary)
	}
	s.spoolBody(f, resp, d.meta)
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
	// A stale entry that may answer while the origin budget is exhausted does not queue for it.
	// Nor does a prefetch: it takes a turn only when one is free now.
	resp, err := s.fetchFill(ctx, f, oreq, f.prefetch || stale != nil && !s.untrusted.Load() && s.canWaitOut(stale, reqTime))
	respTime = s.now()
	f.originTime = respTime.Sub(reqTime) // before settle, which publishes it
	fail := func(status int, err error) {
		f.settle(result{out: outFailed, status: status, err: err})
	}
	switch {
	case errors.Is(err, ErrOriginBudget):
		fail(statusForError(err), err) // counted by duet_edge_origin_budget_refused_total
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
			f.settle(result{out: outPass})
			break
		}
		if err := s.store.updateMeta(m); err != nil {
			s.log.Warn("store revalidated metadata", "cache_key", f.key, "error", err)
		}
		f.settle(result{out: outRefreshed})
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

// fetch asks the origin, within the origin budget, and records the exchange.
func (s *Server) fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	return s.fetchBudget(ctx, r, false)
}

// fetchBudget is fetch; noWait refuses the request rather than queue it for the budget.
func (s *Server) fetchBudget(ctx context.Context, r *origin.Request, noWait bool) (*origin.Response, error) {
	if err := s.budget.wait(ctx, noWait); err != nil {
		return nil, err
	}
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
	if errors.Is(err, ErrOriginBudget) {
		return fasthttp.StatusServiceUnavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fasthttp.StatusGatewayTimeout
	}
	return fasthttp.StatusBadGateway
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
	s.setTraceparent(ctx, rq, h)
	return &origin.Request{Path: strings.Clone(rq.path), Query: strings.Clone(rq.query), Header: h}
}

// skipRequestHeaders are viewer request headers never forwarded on a cacheable fetch.
var skipRequestHeaders = map[string]bool{
	"Host": true, "Cookie": true, "Range": true, "If-Range": true,
	"If-None-Match": true, "If-Modified-Since": true, "If-Match": true, "If-Unmodified-Since": true,
	"Cache-Control": true, "Pragma": true, "Content-Length": true, "Expect": true,
	"Content-Range": true, "Date": true,
}

// spoolBody streams a cacheable origin body into the disk tier while the flight's readers
// follow, then commits it. A body cut short fails every reader and caches nothing.
func (s *Server) spoolBody(f *flight, resp *origin.Response, meta object.Meta) {
	w, err := s.store.disk.Create(meta.Key)
	if err != nil {
		s.log.Warn("disk tier refused a fill", "cache_key", meta.Key, "error", err)
		f.settle(result{out: outPass, pass: resp})
		return
	}
	f.sp = w
	f.release = w.Abort
	f.mu.Lock()
	f.expect = resp.ContentLength
	f.streaming = true
	f.mu.Unlock()
	meta.Size = resp.ContentLength
	f.settle(result{out: outBody, meta: meta})

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
		f.settle(result{out: outPass, pass: resp})
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedError+1))
	_ = resp.Body.Close()
	switch {
	case err != nil:
		s.log.Warn("read origin error body", "cache_key", f.key, "error", err)
		f.settle(result{out: outFailed, status: http.StatusBadGateway, err: fmt.Errorf("read origin %d body: %w", resp.Status, err)})
	case len(b) > maxBufferedError:
		f.settle(result{out: outFailed, status: resp.Status, err: fmt.Errorf("origin answered %d with a large body", resp.Status)})
	default:
		f.settle(result{out: outFailed, status: resp.Status, err: fmt.Errorf("origin answered %d", resp.Status),
			errResp: &bufferedResponse{status: resp.Status, header: resp.Header, body: b}})
	}
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

// revalidateInBackground refreshes a stale-while-revalidate entry without holding up the viewer.
func (s *Server) revalidateInBackground(ctx *fasthttp.RequestCtx, key string, rq *request, stale object.Meta) {
	f, leader := s.fl.join(key)
	if !leader {
		f.unpin()
		return
	}
	if s.peer != nil && !rq.peer && len(ctx.Request.Header.PeekCanonical(hdrAuthorization)) == 0 && s.peerable(rq.path) {
		f.peerKey = strings.Clone(rq.primary)
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
