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

// sliceFetch is what slice fetches need from the viewer's request, copied out of the
// *fasthttp.RequestCtx while the handler runs: slices are resolved while the body is written
// (for multipart answers on another goroutine), when fasthttp may already have recycled the ctx
// for another request.
type sliceFetch struct {
	path, primary, rangeHdr string
	// oreq is the origin request without range and validators; its Header is never written
	// (request hands out copies).
	oreq origin.Request
	// local: the slices are fetched from the origin, never from a peer (the request is a peer's
	// request for a range: its slices are this edge's to fetch).
	local bool
}

func (s *Server) newSliceFetch(ctx *fasthttp.RequestCtx, rq *request) *sliceFetch {
	o := s.originRequest(ctx, rq)
	return &sliceFetch{path: o.Path, primary: strings.Clone(rq.primary), rangeHdr: strings.Clone(rq.rangeHdr), oreq: *o,
		local: rq.peer && rq.rangeHdr != ""}
}

// request returns a new origin request with its own header map.
func (sf *sliceFetch) request() *origin.Request {
	o := sf.oreq
	o.Header = sf.oreq.Header.Clone()
	return &o
}

func (s *Server) trySlices(ctx *fasthttp.RequestCtx, rq *request) (cacheStatus, error) {
	sf := s.newSliceFetch(ctx, rq)
	size := int64(s.cfg.Cache.SliceBytes)
	first := max(firstByte(rq.rangeHdr), 0)
	sl, err := s.getSlice(sf, first/size, "", -1, true)
	if err != nil {
		return csError, err
	}
	if sl.pass != nil {
		if sl.pass.Status == http.StatusRequestedRangeNotSatisfiable && rq.rangeHdr == "" {
			// The viewer asked for the whole object: a 416 to the edge's own range is not its answer.
			_ = sl.pass.Body.Close()
			s.store.unmarkSliced(sf.primary)
			return csError, &fillError{status: http.StatusBadGateway, err: errors.New("origin refused the range of the object's first slice (416)")}
		}
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
	rh := &ctx.Response.Header
	if notModified(&ctx.Request.Header, &sl.meta) {
		sl.release()
		for _, f := range sl.meta.Header {
			rh.Add(f.Name, f.Value)
		}
		ctx.SetStatusCode(http.StatusNotModified)
		ctx.Response.SkipBody = true
		return sl.cs, nil
	}
	ranges, perr := byterange.Parse(rq.rangeHdr, total)
	whole := rq.rangeHdr == "" || !ifRangeHolds(&ctx.Request.Header, &sl.meta)
	if errors.Is(perr, byterange.ErrUnsatisfiable) && !whole {
		sl.release()
		ctx.Response.Header.Set("Content-Range", "bytes */"+strconv.FormatInt(total, 10))
		s.failRange(ctx)
		return csHit, nil
	}
	if whole || perr != nil || len(ranges) == 0 {
		// No Range, an If-Range that does not hold, or an unreadable Range (RFC 9110 §14.2 lets
		// us ignore it): the whole object.
		whole = true
		ranges = []byterange.Range{{Start: 0, End: total - 1}}
	}
	ra := &sliceReader{s: s, sf: sf, etag: etag, size: size, total: total,
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
	if whole {
		ctx.SetStatusCode(http.StatusOK)
	} else {
		ctx.SetStatusCode(http.StatusPartialContent)
	}
	for _, f := range sl.meta.Header {
		if f.Name == "Content-Range" {
			continue // the first slice's, stored with it: this answer sets its own below
		}
		rh.Add(f.Name, f.Value)
	}
	if rq.peer {
		peerHeaders(rh, &sl.meta)
	}
	rh.Set("Accept-Ranges", "bytes")
	rh.Set("Age", strconv.FormatInt(int64(age(&sl.meta, s.now()).Seconds()), 10))
	rh.Set("Cache-Status", sl.cs.header())
	rh.Set("X-Cache", sl.cs.xcache())
	if len(ranges) == 1 {
		r := ranges[0]
		if !whole {
			rh.Set("Content-Range", byterange.ContentRange(r, total))
		}
		if rq.head {
			ra.Close()
			ctx.Response.SkipBody = true
			rh.SetContentLength(int(r.Len()))
			return sl.cs, nil
		}
		s.setBodyStream(ctx, &sliceBody{r: ra, off: r.Start, end: r.End + 1}, int(r.Len()))
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
	s.setBodyStream(ctx, pr, int(mp.Len()))
	return sl.cs, nil
}

// maxOpenSlices bounds the slices a reader holds open: a 5 GiB object read from start to end
// must not keep 1,280 files (and their disk space, which eviction cannot free while they are
// open) until the answer ends. Slices the reader moved past are released; one read again
// (multipart ranges out of order) is resolved again.
const maxOpenSlices = preResolveSlices + 2

// sliceReader reads a sliced object at any offset, resolving slices as it goes. A slice whose
// ETag differs from the first one's fails the read (the viewer sees a cut connection, never
// mixed bytes) and drops the object's slices.
type sliceReader struct {
	s           *Server
	sf          *sliceFetch
	etag        string
	size, total int64

	mu     sync.Mutex
	got    map[int64]*slice // guarded by mu
	closed bool             // guarded by mu
}

func (r *sliceReader) slice(i int64) (*slice, error) {
	r.mu.Lock()
	sl, ok := r.got[i]
	r.mu.Unlock()
	if ok {
		return sl, nil
	}
	sl, err := r.s.getSlice(r.sf, i, r.etag, r.total, false)
	if err != nil {
		return nil, err
	}
	if sl.whole || sl.meta.ETag != r.etag || sl.meta.Total != r.total {
		sl.release()
		return nil, errPinBroken
	}
	var drop []*slice
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		sl.release()
		return nil, errors.New("slice reader closed")
	}
	r.got[i] = sl
	if len(r.got) > maxOpenSlices {
		for j, o := range r.got {
			if j < i-1 || j > i+preResolveSlices {
				drop = append(drop, o)
				delete(r.got, j)
			}
		}
	}
	r.mu.Unlock()
	for _, o := range drop {
		o.release()
	}
	return sl, nil
}

// at resolves the slice holding byte off and returns it with off's position in it.
func (r *sliceReader) at(off int64) (*slice, int64, error) {
	i := off / r.size
	sl, err := r.slice(i)
	if err != nil {
		if errors.Is(err, errPinBroken) {
			r.s.dropSlices(r.sf.primary)
		}
		return nil, 0, err
	}
	local := off - sl.meta.Offset
	if local < 0 || local >= sl.meta.Size {
		// Slices are checked when they are fetched; this guards against anything else (a
		// changed slice size) ever turning into a read that makes no progress.
		return nil, 0, fmt.Errorf("slice %d holds %d bytes at %d, not byte %d", i, sl.meta.Size, sl.meta.Offset, off)
	}
	return sl, local, nil
}

func (r *sliceReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		if off >= r.total {
			return n, io.EOF
		}
		sl, local, err := r.at(off)
		if err != nil {
			return n, err
		}
		want := min(int64(len(p)-n), sl.meta.Size-local)
		m, err := sl.src.readAt(p[n:n+int(want)], local)
		n += m
		off += int64(m)
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == want) {
			return n, err
		}
		if m == 0 {
			return n, fmt.Errorf("slice read at %d: %w", off, io.ErrNoProgress)
		}
	}
	return n, nil
}

// Close releases every slice the reader holds.
func (r *sliceReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for i, sl := range r.got {
		sl.release()
		delete(r.got, i)
	}
	return nil
}

// sliceBody streams [off, end) of a sliced object: fasthttp calls WriteTo, which sends each
// slice from its file with sendfile (or from the flight filling it) instead of copying the
// object through user space in small reads.
type sliceBody struct {
	r        *sliceReader
	off, end int64
}

func (b *sliceBody) Read(p []byte) (int, error) {
	if b.off >= b.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.end-b.off)]
	n, err := b.r.ReadAt(p, b.off)
	b.off += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}

func (b *sliceBody) Close() error { return b.r.Close() }

func (b *sliceBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for b.off < b.end {
		sl, local, err := b.r.at(b.off)
		if err != nil {
			return total, err
		}
		n := min(b.end-b.off, sl.meta.Size-local)
		m, err := sl.src.writeTo(w, local, n)
		b.off += m
		total += m
		if err != nil {
			return total, err
		}
		if m < n {
			return total, io.ErrUnexpectedEOF
		}
	}
	return total, nil
}

// writeTo sends n bytes at off of an entry or a flight to w.
func (b body) writeTo(w io.Writer, off, n int64) (int64, error) {
	switch {
	case b.e.meta != nil && b.e.body != nil:
		m, err := w.Write(b.e.body[off : off+n])
		return int64(m), err
	case b.e.meta != nil && b.e.file != nil:
		rf, ok := w.(io.ReaderFrom)
		if !ok {
			break
		}
		// The handle is this reader's own: its file offset is free to move.
		if _, err := b.e.file.File().Seek(off, io.SeekStart); err != nil {
			return 0, err
		}
		return rf.ReadFrom(&io.LimitedReader{R: b.e.file.File(), N: n})
	case b.f != nil:
		fr := b.f.newReader(off, off+n)
		defer fr.Close()
		return fr.WriteTo(w)
	}
	return io.CopyBuffer(w, io.NewSectionReader(readerAtFunc(b.readAt), off, n), make([]byte, 64<<10))
}

type readerAtFunc func(p []byte, off int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// dropSlices removes every slice of an object (its version changed).
func (s *Server) dropSlices(primary string) {
	s.stopFlights(nil, primary+sliceSep)
	for _, k := range s.store.keysWithPrefix(primary + sliceSep) {
		s.store.remove(k)
	}
}

// getSlice finds slice i in the tiers or fetches it (collapsed with other viewers of the slice).
// pin and total, when known (not "" and -1), are the ETag and size every slice must have. first
// is set for the slice a request starts with: an answer that cannot be shared is then fetched
// for this viewer alone and handed to it; for later slices it is an error.
func (s *Server) getSlice(sf *sliceFetch, i int64, pin string, total int64, first bool) (*slice, error) {
	key := sliceKey(sf.primary, i)
	size := int64(s.cfg.Cache.SliceBytes)
	var stale *object.Meta
	if e, ok := s.store.open(key); ok {
		m := e.meta
		switch {
		case pin != "" && m.ETag != pin, total >= 0 && m.Total != total,
			m.Offset != i*size || m.Size != min(size, m.Total-m.Offset):
			// Another version, or a slice of another size (cache.slice_bytes changed).
			e.close()
			s.store.remove(key)
		case freshnessOf(m, s.now()) != expired && s.confirmed(m, s.now()):
			return &slice{meta: *m, src: body{e: e}, cs: csHit}, nil
		default:
			st := *m
			stale = &st
			e.close()
		}
	}
	f, leader := s.joinFill(key, func(f *flight) {
		oreq := sf.request()
		oreq.Range = "bytes=" + strconv.FormatInt(i*size, 10) + "-" + strconv.FormatInt((i+1)*size-1, 10)
		oreq.IfMatch = pin
		if s.peer != nil && !sf.local && oreq.Header.Get("Authorization") == "" {
			f.peerKey = key // each slice is owned on its own
		}
		go s.fillSlice(f, oreq, stale, sf.path, sf.primary, i*size, total)
	})
	defer f.unpin()
	if f.out == outFailed && f.status == http.StatusPreconditionFailed {
		return nil, errPinBroken
	}
	if m, src, cs, ok := s.fromFlight(f, key, stale, false); ok {
		sl := &slice{meta: *m, src: src, cs: cs}
		if src.f != nil {
			sl.src.reader = f.newReader(0, -1)
			sl.whole = m.Status == http.StatusOK
		}
		return sl, nil
	}
	switch f.out {
	case outRefreshed: // and the slice is gone again
		return nil, &fillError{status: http.StatusBadGateway, err: errors.New("slice vanished during revalidation")}
	case outPass:
		if !first {
			if leader && f.pass != nil {
				_ = f.pass.Body.Close()
				return nil, &fillError{status: http.StatusBadGateway, err: fmt.Errorf("slice %d: origin answered %d", i, f.pass.Status)}
			}
			return nil, &fillError{status: http.StatusBadGateway, err: fmt.Errorf("slice %d: the origin's answer cannot be shared", i)}
		}
		if leader && f.pass != nil {
			return &slice{pass: f.pass}, nil
		}
		// Not shareable: fetch this slice's range for this viewer alone.
		oreq := sf.request()
		oreq.Range = sf.rangeHdr
		fctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
		resp, err := s.fetch(fctx, oreq)
		if err != nil {
			cancel()
			return nil, &fillError{status: statusForError(err), err: err}
		}
		resp.Body = &closeFunc{ReadCloser: resp.Body, done: cancel}
		return &slice{pass: resp}, nil
	default:
		return nil, &fillError{status: f.status, err: fmt.Errorf("origin unavailable: %w", f.err)}
	}
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
