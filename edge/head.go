package edge

import (
	"context"

	"github.com/valyala/fasthttp"
)

// headThrough answers a HEAD for an object the edge does not hold by asking the origin for the
// headers alone (HEAD, or S3's HeadObject): a HEAD must never cost the origin the whole body.
// Nothing is stored (a HEAD answer has no body to store), and the request is not collapsed
// with others; a HEAD that arrives while a GET of the object is being filled joins that fill
// instead (serveCacheable).
func (s *Server) headThrough(ctx *fasthttp.RequestCtx, rq *request) cacheStatus {
	fctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.Cache.FillTimeout)
	oreq := s.originRequest(ctx, rq)
	oreq.Head = true
	resp, err := s.fetch(fctx, oreq)
	if err != nil {
		cancel()
		s.fail(ctx, statusForError(err), "origin unavailable: "+err.Error())
		return csError
	}
	s.writeOriginResponse(ctx, resp, true, cancel, "duet; fwd=uri-miss; detail=head", "MISS")
	return csMiss
}
