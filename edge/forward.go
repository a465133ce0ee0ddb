package edge

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"
)

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
