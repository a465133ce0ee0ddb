package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/byterange"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/origin"
)

// preResolveSlices is how many slices of a range are fetched (headers at least) before the
// answer starts, so that a changed object is noticed while the edge can still start over
// cleanly instead of cutting the viewer's connection.
const preResolveSlices = 4

// errPinBroken means the object changed between slices: its slices are dropped and the request
// starts over with the new version, so one answer never mixes two versions.
var errPinBroken = errors.New("object changed between slices")

// slice is one resolved slice of a large object.
type slice struct {
	meta object.Meta
	src  body // entry or flight
	cs   cacheStatus
	// whole is set when the origin answered with the whole object (200, or a range that was
	// the whole object): the answer then comes from that object, not from slices.
	whole bool
	// pass, when set, is an answer that may not be shared (404, 416...): hand it to the viewer.
	pass *origin.Response
}

func (sl *slice) release() {
	sl.src.close()
	if r, ok := sl.src.reader.(io.Closer); ok {
		_ = r.Close()
	}
}

// firstByte returns the first byte a Range header asks for, or -1 for suffix ranges and
// headers it cannot read (the first slice then tells the object's size).
func firstByte(h string) int64 {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return -1
	}
	first, _, _ := strings.Cut(spec, ",")
	a, _, _ := strings.Cut(strings.TrimSpace(first), "-")
	n, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// serveSlices answers a Range request for an object the edge holds no whole copy of, fetching
// only the fixed-size slices the range touches. Every slice of one answer carries the same
// ETag: slices are fetched with If-Match, and a changed object drops its slices and starts over.
func (s *Server) serveSlices(ctx *fasthttp.RequestCtx, rq *request) cacheStatus {
	for attempt := 0; ; attempt++ {
		cs, err := s.trySlices(ctx, rq)
		if errors.Is(err, errPinBroken) && attempt == 0 {
			s.dropSlices(rq.primary)
			ctx.Response.Reset()
			continue
		}
		if err != nil {
			var fe *fillError
			status := fasthttp.StatusBadGateway
			if errors.As(err, &fe) {
				status = fe.status
			}
			s.log.Warn("slice fetch failed", "path", rq.path, "error", err)
			s.fail(ctx, status, viewerReason(status, err))
			return csError
		}
		return cs
	}
}

// fillError carries the status a failed slice fetch should answer with.
type fillError struct {
	status int
	err    error
}

func (e *fillError) Error() string { return e.err.Error() }
func (e *fillError) Unwrap() error { return e.err }

func (s *Server) trySlices(ctx *fasthttp.RequestCtx, rq *request) (cacheStatus, error) {
	size := int64(s.cfg.Cache.SliceBytes)
	first := max(firstByte(rq.rangeHdr), 0)
	sl, err := s.getSlice(ctx, rq, first/size, "")
	if err != nil {
		return csError, err
	}
	if sl.pass != nil {
		return s.passThrough(ctx, rq, sl.pass), nil
	}
	if sl.whole {
		s.respond(ctx, rq, &sl.meta, body{e: sl.src.e, f: sl.src.f}, sl.cs, s.now())
		if sl.src.reader != nil {
			_ = sl.src.reader.(io.Closer).Close()
		}
		return sl.cs, nil
	}
	total, etag := sl.meta.Total, sl.meta.ETag
	ranges, perr := byterange.Parse(rq.rangeHdr, total)
	if errors.Is(perr, byterange.ErrUnsatisfiable) {
		sl.release()
		ctx.Response.Header.Set("Content-Range", "bytes */"+strconv.FormatInt(total, 10))
		s.failRange(ctx)
		return csHit, nil
	}
	if perr != nil || len(ranges) == 0 {
		// Unreadable Range: RFC 9110 lets us ignore it and send the whole object.
		ranges = []byterange.Range{{Start: 0, End: total - 1}}
	}
	ra := &sliceReader{s: s, ctx: ctx, rq: *rq, etag: etag, size: size, total: total,
		got: map[int64]*slice{first / size: sl}}
	// Resolve the first few slices now: a changed object is best found before any byte is sent.
	resolved := 0
	for _, r := range ranges {
		for i := r.Start / size; i <= r.End/size && resolved < preResolveSlices; i++ {
			if _, err := ra.slice(i); err != nil {
				ra.Close()
				return csError, err
			}
			resolved++
		}
	}
	if len(ranges) == 1 && ranges[0].Start == 0 && ranges[0].End == total-1 && perr != nil {
		ctx.SetStatusCode(http.StatusOK)
	} else {
		ctx.SetStatusCode(http.StatusPartialContent)
	}
	rh := &ctx.Response.Header
	for _, f := range sl.meta.Header {
		if f.Name == "Content-Range" {
			continue // the first slice's, stored with it: this answer sets its own below
		}
		rh.Add(f.Name, f.Value)
	}
	rh.Set("Accept-Ranges", "bytes")
	rh.Set("Age", strconv.FormatInt(int64(age(&sl.meta, s.now()).Seconds()), 10))
	rh.Set("Cache-Status", sl.cs.header())
	rh.Set("X-Cache", sl.cs.xcache())
	if len(ranges) == 1 {
		r := ranges[0]
		if ctx.Response.StatusCode() == http.StatusPartialContent {
			rh.Set("Content-Range", byterange.ContentRange(r, total))
		}
		ctx.SetBodyStream(&sectionCloser{SectionReader: io.NewSectionReader(ra, r.Start, r.Len()), c: ra}, int(r.Len()))
		return sl.cs, nil
	}
	ct := string(rh.ContentType())
	mp := byterange.NewMultipart(byterange.RandomBoundary(), ct, total, ranges)
	rh.SetContentType(mp.ContentType())
	pr, pw := io.Pipe()
	go func() {
		defer ra.Close()
		_, err := mp.WriteTo(pw, ra)
		pw.CloseWithError(err)
	}()
	ctx.SetBodyStream(pr, int(mp.Len()))
	return sl.cs, nil
}

type sectionCloser struct {
	*io.SectionReader
	c io.Closer
}

func (s *sectionCloser) Close() error { return s.c.Close() }

// sliceReader reads a sliced object at any offset, resolving slices as it goes. A slice whose
// ETag differs from the first one's fails the read (the viewer sees a cut connection, never
// mixed bytes) and drops the object's slices.
type sliceReader struct {
	s           *Server
	ctx         *fasthttp.RequestCtx
	rq          request
	etag        string
	size, total int64

	mu  sync.Mutex
	got map[int64]*slice // guarded by mu
}

func (r *sliceReader) slice(i int64) (*slice, error) {
	r.mu.Lock()
	sl, ok := r.got[i]
	r.mu.Unlock()
	if ok {
		return sl, nil
	}
	sl, err := r.s.getSlice(r.ctx, &r.rq, i, r.etag)
	if err != nil {
		return nil, err
	}
	if sl.pass != nil {
		_ = sl.pass.Body.Close()
		return nil, &fillError{status: http.StatusBadGateway, err: fmt.Errorf("slice %d: origin answered %d", i, sl.pass.Status)}
	}
	if sl.whole || sl.meta.ETag != r.etag || sl.meta.Total != r.total {
		sl.release()
		return nil, errPinBroken
	}
	r.mu.Lock()
	r.got[i] = sl
	r.mu.Unlock()
	return sl, nil
}

func (r *sliceReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		if off >= r.total {
			return n, io.EOF
		}
		i := off / r.size
		sl, err := r.slice(i)
		if err != nil {
			if errors.Is(err, errPinBroken) {
				r.s.dropSlices(r.rq.primary)
			}
			return n, err
		}
		local := off - sl.meta.Offset
		want := min(int64(len(p)-n), sl.meta.Size-local)
		m, err := sl.src.readAt(p[n:n+int(want)], local)
		n += m
		off += int64(m)
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == want) {
			return n, err
		}
	}
	return n, nil
}

// Close releases every slice the reader holds.
func (r *sliceReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, sl := range r.got {
		sl.release()
		delete(r.got, i)
	}
	return nil
}

// dropSlices removes every slice of an object (its version changed).
func (s *Server) dropSlices(primary string) {
	s.stopFlights(nil, primary+sliceSep)
	for _, k := range s.store.keysWithPrefix(primary + sliceSep) {
		s.store.remove(k)
	}
}

// getSlice finds slice i in the tiers or fetches it (collapsed with other viewers of the slice).
func (s *Server) getSlice(ctx *fasthttp.RequestCtx, rq *request, i int64, pin string) (*slice, error) {
	key := sliceKey(rq.primary, i)
	var stale *object.Meta
	if e, ok := s.store.open(key); ok {
		if pin != "" && e.meta.ETag != pin {
			e.close()
			s.store.remove(key)
		} else if freshnessOf(e.meta, s.now()) != expired && !s.untrusted.Load() {
			return &slice{meta: *e.meta, src: body{e: e}, cs: csHit}, nil
		} else {
			m := *e.meta
			stale = &m
			e.close()
		}
	}
	f, leader := s.fl.join(key)
	defer f.unpin()
	if leader {
		oreq := s.originRequest(ctx, rq)
		size := int64(s.cfg.Cache.SliceBytes)
		oreq.Range = "bytes=" + strconv.FormatInt(i*size, 10) + "-" + strconv.FormatInt((i+1)*size-1, 10)
		oreq.IfMatch = pin
		go s.fillSlice(f, oreq, stale, rq.path, rq.primary)
	} else {
		s.m.collapsed.Inc()
	}
	<-f.ready
	switch f.out {
	case outBody:
		cs := csMiss
		if stale != nil {
			cs = csRefetched
		}
		r := f.newReader(0, -1)
		return &slice{meta: f.meta, src: body{f: f, reader: r}, cs: cs, whole: f.meta.Status == http.StatusOK}, nil
	case outRefreshed:
		e, ok := s.store.open(key)
		if !ok {
			return nil, &fillError{status: http.StatusBadGateway, err: errors.New("slice vanished during revalidation")}
		}
		return &slice{meta: *e.meta, src: body{e: e}, cs: csRevalidated}, nil
	case outPass:
		if leader && f.pass != nil {
			return &slice{pass: f.pass}, nil
		}
		// Not shareable: fetch this slice's range for this viewer alone.
		oreq := s.originRequest(ctx, rq)
		oreq.Range = rq.rangeHdr
		fctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
		resp, err := s.fetch(fctx, oreq)
		if err != nil {
			cancel()
			return nil, &fillError{status: statusForError(err), err: err}
		}
		resp.Body = &closeFunc{ReadCloser: resp.Body, done: cancel}
		return &slice{pass: resp}, nil
	default:
		if f.status == http.StatusPreconditionFailed {
			return nil, errPinBroken
		}
		if stale != nil && !s.untrusted.Load() && usableOnError(stale, s.now()) {
			if e, ok := s.store.open(key); ok {
				return &slice{meta: *e.meta, src: body{e: e}, cs: csStaleIfError}, nil
			}
		}
		return nil, &fillError{status: f.status, err: fmt.Errorf("origin unavailable: %w", f.err)}
	}
}

// fillSlice fetches one slice. An origin that ignores ranges (200), or an object that fits in
// one slice, is stored whole under the object's own key instead.
func (s *Server) fillSlice(f *flight, oreq *origin.Request, stale *object.Meta, reqPath, primary string) {
	defer s.fl.leave(f)
	ctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	defer cancel()
	primary, reqPath = strings.Clone(primary), strings.Clone(reqPath)
	resp, reqTime, respTime, settled := s.exchange(ctx, f, oreq, stale, reqPath, func() { s.dropSlices(primary) })
	if settled {
		return
	}
	d := s.decide(primary, reqPath, reqTime, respTime, resp)
	if !d.storable || (resp.Status != http.StatusOK && resp.Status != http.StatusPartialContent) {
		f.out, f.pass = outPass, resp
		close(f.ready)
		return
	}
	if resp.Status == http.StatusPartialContent {
		start, end, total, err := byterange.ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || total < 0 || end < start {
			_ = resp.Body.Close()
			f.out, f.status, f.err = outFailed, http.StatusBadGateway, fmt.Errorf("origin sent a bad Content-Range %q", resp.Header.Get("Content-Range"))
			close(f.ready)
			return
		}
		if start == 0 && end == total-1 {
			d.meta.Status = http.StatusOK // the slice is the whole object
		} else {
			d.meta.Key, d.meta.Offset, d.meta.Total = f.key, start, total
		}
	}
	if stale != nil && stale.ETag != d.meta.ETag {
		// The object changed: its other slices belong to the old version.
		s.dropSlices(primary)
	}
	s.spoolBody(f, resp, d.meta)
}

// readAt reads from an entry or a flight.
func (b body) readAt(p []byte, off int64) (int, error) {
	switch {
	case b.e.meta != nil && b.e.body != nil:
		return bytes.NewReader(b.e.body).ReadAt(p, off)
	case b.e.meta != nil && b.e.file != nil:
		return b.e.file.ReadAt(p, off)
	case b.reader != nil:
		return b.reader.(io.ReaderAt).ReadAt(p, off)
	}
	return 0, io.EOF
}
