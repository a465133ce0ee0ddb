package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// File descriptors and max_conns. Every viewer connection is a descriptor, and one served from
// the disk tier or a fill holds a second one (the cache file) while its answer lasts; idle
// origin connections, the listeners, the epoll instance, stdio, NATS and the disk tier's journal
// take the rest. When the process runs out, accept fails with EMFILE, and so do opening cache
// files and dialling origins.
const (
	// fdReserve is kept for everything but viewer connections, their cache files and origin
	// connections.
	fdReserve = 64
	// derivedMaxConnsCap bounds a derived max_conns: the default before it was derived (an
	// operator may set more).
	derivedMaxConnsCap = 65536
)

// connBudget is how many viewer connections fit in an open-file limit of fdLimit descriptors when
// originConns are kept open to origins: half of what fdReserve and the origin connections leave
// (a connection and its cache file), and never less than a quarter of the limit, so that an edge
// under a very low limit still serves. 0 means no known limit.
func connBudget(fdLimit uint64, originConns int) int {
	if fdLimit == 0 || fdLimit > 1<<30 {
		return 1 << 30
	}
	n := (int(fdLimit) - fdReserve - originConns) / 2
	return max(n, int(fdLimit)/4, 1)
}

// effectiveMaxConns is the max_conns in force: the configured one (0: derived, up to
// derivedMaxConnsCap), clamped to the budget; clamped reports that the configured value was over
// it.
func effectiveMaxConns(configured, budget int) (n int, clamped bool) {
	if configured == 0 {
		return min(budget, derivedMaxConnsCap), false
	}
	if configured > budget {
		return budget, true
	}
	return configured, false
}

// originConns is the idle connections the configured origins may keep open.
func (c *Config) originConns() int {
	n := 0
	for _, o := range append([]OriginConfig{c.Origin}, c.Origin.Fallbacks...) {
		if o.MaxConns > 0 {
			n += o.MaxConns
		} else {
			n += 256 // the origin's default
		}
	}
	return n
}

// errorHandler answers a request fasthttp could not read, with a status and a plain-text reason,
// and lingers on close so that the viewer reads the answer instead of a reset.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	vc, _ := ctx.Conn().(*viewerConn)
	if vc != nil {
		vc.linger.Store(true)
	}
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small) && vc != nil && vc.longLine:
		s.fail(ctx, fasthttp.StatusRequestURITooLong, fmt.Sprintf("the request line is longer than %d bytes (max_header_bytes)", s.cfg.MaxHeaderBytes))
	case errors.As(err, &small):
		s.fail(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request header is larger than %d bytes (max_header_bytes)", s.cfg.MaxHeaderBytes))
	case vc != nil && vc.bad != nil && errors.Is(err, vc.bad):
		s.fail(ctx, fasthttp.StatusBadRequest, "bad request: "+vc.bad.Error())
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.fail(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", maxRequestBodyBytes))
	case errors.As(err, &ne) && ne.Timeout():
		s.fail(ctx, fasthttp.StatusRequestTimeout, "the request took too long to arrive")
	default:
		s.fail(ctx, fasthttp.StatusBadRequest, "bad request: the request could not be parsed")
	}
}

// maxRequestBodyBytes bounds the body of a request the edge forwards to the origin.
const maxRequestBodyBytes = 64 << 20

// refuseRequest answers, and returns true for, a request the edge must not act on because of
// how it is framed: line endings or field names viewerConn found bad in a header block fasthttp
// parsed anyway, Transfer-Encoding together with Content-Length (RFC 9112 §6.1: a request an
// origin or another proxy may delimit differently, the classic request smuggling), or a declared
// body over maxRequestBodyBytes (413 at once, before any of it is read).
func (s *Server) refuseRequest(ctx *fasthttp.RequestCtx) bool {
	if vc, ok := ctx.Conn().(*viewerConn); ok && vc.bad != nil {
		s.refuse(ctx, fasthttp.StatusBadRequest, "bad request: "+vc.bad.Error())
		return true
	}
	h := &ctx.Request.Header
	cl := h.ContentLength()
	if cl == -1 && hasHeader(h.RawHeaders(), "content-length") { // chunked, and a length too
		s.refuse(ctx, fasthttp.StatusBadRequest, "bad request: Transfer-Encoding and Content-Length together")
		return true
	}
	if cl > maxRequestBodyBytes {
		s.refuse(ctx, fasthttp.StatusRequestEntityTooLarge, "the request body ("+strconv.Itoa(cl)+
			" bytes) is larger than "+strconv.Itoa(maxRequestBodyBytes)+" bytes")
		return true
	}
	return false
}

// expectContinue answers a request with Expect: 100-continue: 413 (and no body read) when the
// declared body is over maxRequestBodyBytes, 100 otherwise.
func expectContinue(ctx *fasthttp.RequestCtx) int {
	if ctx.Request.Header.ContentLength() > maxRequestBodyBytes {
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

// refuse answers with an error and closes the connection (lingering): the request's body, if
// any, is not read.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, status int, reason string) {
	s.fail(ctx, status, reason)
	ctx.SetConnectionClose()
	if vc, ok := ctx.Conn().(*viewerConn); ok {
		vc.linger.Store(true)
	}
}

// hasHeader reports whether a raw header block has a field named name (lower case).
func hasHeader(raw []byte, name string) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		k, _, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			return true
		}
	}
	return false
}

// errBodyTooLarge ends a forwarded body that outgrew maxRequestBodyBytes.
var errBodyTooLarge = errors.New("request body too large")

// bodyCap passes at most left bytes of a streamed request body (a chunked one, whose size is not
// declared) and then fails, noting it in over. It notes a failed read of the viewer's body (a
// broken chunk, a viewer gone) in failed: the viewer's fault, not the origin's.
type bodyCap struct {
	r      io.Reader
	left   int64
	over   bool
	failed error
}

func (b *bodyCap) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body that ends exactly at the cap from a larger one.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			b.over = true
			return 0, errBodyTooLarge
		}
		if err != nil && err != io.EOF {
			b.failed = err
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		b.failed = err
	}
	return n, err
}

// validFieldName reports whether name is a field name (a token, RFC 9110 §5.1).
func validFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
