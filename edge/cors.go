package edge

import (
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// corsExposed are the response headers a player on another origin may read: the ones it needs
// for ranges and for telling hits from misses.
const corsExposed = "Content-Length, Content-Range, X-Cache, Cache-Status, Age"

// corsHeaders are the CORS response headers, rendered once from the config so that adding them
// to every hit allocates nothing.
type corsHeaders struct {
	allowOrigin []byte // nil: CORS is off
	maxAge      []byte // delta-seconds for Access-Control-Max-Age
}

var (
	hdrACAllowOrigin   = []byte("Access-Control-Allow-Origin")
	hdrACExposeHeaders = []byte("Access-Control-Expose-Headers")
	hdrACAllowMethods  = []byte("Access-Control-Allow-Methods")
	hdrACAllowHeaders  = []byte("Access-Control-Allow-Headers")
	hdrACMaxAge        = []byte("Access-Control-Max-Age")
	hdrACRequestMethod = "Access-Control-Request-Method"
	valACExposed       = []byte(corsExposed)
	valACMethods       = []byte("GET, HEAD, OPTIONS")
	valACHeaders       = []byte("Range")
)

func newCORSHeaders(c CORSConfig) corsHeaders {
	if c.AllowOrigin == "" {
		return corsHeaders{}
	}
	return corsHeaders{
		allowOrigin: []byte(c.AllowOrigin),
		maxAge:      strconv.AppendInt(nil, int64(c.MaxAge/time.Second), 10),
	}
}

func (c *corsHeaders) enabled() bool { return c.allowOrigin != nil }

// apply adds the headers every GET and HEAD answer carries. They replace any the origin sent:
// the edge's setting is the policy viewers see.
func (c *corsHeaders) apply(h *fasthttp.ResponseHeader) {
	h.SetCanonical(hdrACAllowOrigin, c.allowOrigin)
	h.SetCanonical(hdrACExposeHeaders, valACExposed)
}

// isPreflight tells a CORS preflight (Fetch standard, "CORS protocol") from other OPTIONS
// requests, which still go to the origin.
func isPreflight(ctx *fasthttp.RequestCtx) bool {
	return ctx.IsOptions() && len(ctx.Request.Header.Peek(hdrACRequestMethod)) > 0
}

// servePreflight answers a preflight at the edge: players only ever read, with Range.
func (c *corsHeaders) servePreflight(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	h.SetCanonical(hdrACAllowOrigin, c.allowOrigin)
	h.SetCanonical(hdrACAllowMethods, valACMethods)
	h.SetCanonical(hdrACAllowHeaders, valACHeaders)
	h.SetCanonical(hdrACMaxAge, c.maxAge)
	h.Set("Cache-Control", "no-store")
	ctx.Response.SkipBody = true
}

// validOrigin accepts one serialised origin: scheme "://" host[:port], no path, no list.
func validOrigin(o string) bool {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || rest == "" || strings.ContainsAny(rest, "/?#") {
		return false
	}
	for _, c := range []byte(o) {
		if c <= ' ' || c >= 0x7f || c == ',' {
			return false
		}
	}
	return true
}
