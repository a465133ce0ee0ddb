package edge

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/internal/signedurl"
)

// Signed URLs (signed_urls): the check runs before the cache lookup, so a refused viewer costs
// no tier read and no origin fetch, and the token was taken off the path or query before the
// cache key was made (handle).

// tokenReasons are the refusal reasons, in the order of tokenRefusal's labels.
var tokenReasons = [...]struct {
	err   error
	label string
}{
	{signedurl.ErrMissing, "missing"},
	{signedurl.ErrMalformed, "malformed"},
	{signedurl.ErrUnknownKey, "unknown_key"},
	{signedurl.ErrSignature, "signature"},
	{signedurl.ErrExpired, "expired"},
	{signedurl.ErrScope, "scope"},
	{signedurl.ErrClient, "client"},
}

// tokenMetrics counts refused tokens by reason.
type tokenMetrics struct {
	refused [len(tokenReasons)]prometheus.Counter
}

func newTokenMetrics(reg prometheus.Registerer) *tokenMetrics {
	v := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Namespace: "duet", Subsystem: "edge", Name: "token_refusals_total",
		Help: "Requests for protected content (signed_urls.protect) refused with 403, by reason (missing, malformed, unknown_key, signature, expired, scope, client).",
	}, []string{"reason"})
	m := &tokenMetrics{}
	for i, r := range tokenReasons {
		m.refused[i] = v.WithLabelValues(r.label)
	}
	return m
}

// allowToken checks the token of a request for path (signedurl.Canonical) when the path is
// protected; when that fails it answers 403 with the reason and reports false. It does not
// allocate when the token is good.
func (s *Server) allowToken(ctx *fasthttp.RequestCtx, tok, path string, now time.Time) bool {
	if !s.cfg.SignedURLs.Protected(path) {
		return true
	}
	var client netip.Addr
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		client, _ = netip.AddrFromSlice(a.IP)
	}
	err := s.tokens.Check(tok, path, client, now)
	if err == nil {
		return true
	}
	for i, r := range tokenReasons {
		if errors.Is(err, r.err) {
			s.tm.refused[i].Inc()
			break
		}
	}
	s.fail(ctx, fasthttp.StatusForbidden, err.Error())
	return false
}
