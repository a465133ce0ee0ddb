package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/edge/peers"
	"github.com/duetcdn/duet/origin"
)

// Peer fill (docs/scale-out.md): a miss asks the key's owner among the region's edges before
// the origin. The owner answers from its cache or fills once from its origin and streams while
// it fills; a peer request is never sent on to another peer (hdrPeer marks it), so requests
// between peers cannot loop. A dead or slow owner costs one failed attempt: the set leaves it
// out for peer_fill.cooldown, and the miss goes to the next owner (when the owner refused the
// connection) or to the origin (when it was slow).

var hdrPeer = []byte(peers.Header)

// peerFill is an edge's side of peer fill; nil when peer fill is off.
type peerFill struct {
	set     *peers.Set
	secret  []byte
	timeout time.Duration

	mu      sync.Mutex
	clients map[string]*origin.HTTP // by peer URL; guarded by mu

	fetches *prometheus.CounterVec // by result
	served  prometheus.Counter
}

// newPeerFill reads the peer secret and builds the set (heartbeats feed it: Server.Peers).
func newPeerFill(cfg Config, reg prometheus.Registerer) (*peerFill, error) {
	if !cfg.PeerFill.Enabled {
		return nil, nil
	}
	secret := cfg.PeerFill.Secret
	if cfg.PeerFill.SecretFile != "" {
		b, err := os.ReadFile(cfg.PeerFill.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("%w: peer_fill.secret_file: %w", ErrConfig, err)
		}
		secret = string(b)
	}
	secret = strings.TrimSpace(secret)
	if len(secret) < peers.MinSecretBytes {
		return nil, fmt.Errorf("%w: the peer secret must be at least %d characters", ErrConfig, peers.MinSecretBytes)
	}
	set, err := peers.New(peers.Config{Self: cfg.Name, Region: cfg.Region, Cooldown: cfg.PeerFill.Cooldown})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	f := promauto.With(reg)
	return &peerFill{set: set, secret: []byte(secret), timeout: cfg.PeerFill.Timeout, clients: map[string]*origin.HTTP{},
		fetches: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "peer_fetches_total",
			Help: "Misses this edge asked the owning peer for, by result (ok, failed: refused, timed out or not authenticated; budget: the owner's origin budget was exhausted).",
		}, []string{"result"}),
		served: f.NewCounter(prometheus.CounterOpts{
			Namespace: "duet", Subsystem: "edge", Name: "peer_requests_served_total",
			Help: "Requests from peer edges this edge answered (as the owner of the object).",
		}),
	}, nil
}

// Peers is the set of the region's edges peer fill uses, for the caller to feed with the
// region's heartbeats (Set.Subject, Set.HandleHeartbeat); nil when peer fill is off.
func (s *Server) Peers() *peers.Set {
	if s.peer == nil {
		return nil
	}
	return s.peer.set
}

// client returns the HTTP client for a peer's URL.
func (p *peerFill) client(url string) (*origin.HTTP, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[url]; ok {
		return c, nil
	}
	c, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: url, Timeout: p.timeout, MaxConns: 64})
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", url, err)
	}
	if len(p.clients) > 1000 { // URLs of edges long gone
		clear(p.clients)
	}
	p.clients[url] = c
	return c, nil
}

// errPeerRefused: the peer refused the request's signature (the secrets differ).
var errPeerRefused = errors.New("peer refused the request (check that peer_fill.secret is the region's)")

// peerable tells whether a miss of path may be filled from its owner among the peers: not a
// playlist or MPD the edge rewrites (content steering), which the owner holds rewritten for
// itself (its pathway, its URL); each edge rewrites the origin's own.
func (s *Server) peerable(path string) bool {
	return s.rewriter == nil || kindOf(path) != kindPlaylist
}

// fetchFill is a fill's fetch: from the key's owner when the flight may ask a peer (peerKey),
// otherwise, or when the owner cannot answer, from the origin. noWait: see fetchBudget.
//
// Edges that disagree about who is alive cannot make a cycle of peer requests for one key: an
// edge asks only a peer whose rendezvous score for the key is higher than its own, and the
// scores are the same on every edge, so each hop climbs; a peer's request is answered locally.
func (s *Server) fetchFill(ctx context.Context, f *flight, r *origin.Request, noWait bool) (*origin.Response, error) {
	if s.peer != nil && f.peerKey != "" && !r.Head {
		// Two owners at most: a dead owner's successor in rendezvous order owns its keys now
		// (it fetches each once); a slow owner is not replaced by another peer but by the origin.
		for range 2 {
			p, ok := s.peer.set.Owner(f.peerKey, time.Now())
			if !ok {
				break
			}
			resp, err := s.peerFetch(ctx, p, r)
			if err == nil {
				s.peer.fetches.WithLabelValues("ok").Inc()
				return resp, nil
			}
			if errors.Is(err, ErrOriginBudget) {
				// The owner's budget is the region's for this object: no second fetch elsewhere.
				s.peer.fetches.WithLabelValues("budget").Inc()
				return nil, err
			}
			s.peer.fetches.WithLabelValues("failed").Inc()
			s.peer.set.Failed(p.Name, time.Now())
			s.log.LogAttrs(ctx, slog.LevelDebug, "peer fill failed; trying without that peer",
				slog.String("cache_key", f.peerKey), slog.String("peer", p.Name), slog.String("error", err.Error()))
			var ne net.Error
			if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, origin.ErrTimeout) || errors.Is(err, errPeerRefused) {
				break
			}
		}
	}
	return s.fetchBudget(ctx, r, noWait)
}

// peerFetch asks peer p for r, signed.
func (s *Server) peerFetch(ctx context.Context, p peers.Peer, r *origin.Request) (*origin.Response, error) {
	c, err := s.peer.client(p.URL)
	if err != nil {
		return nil, err
	}
	pr := *r
	pr.Header = r.Header.Clone()
	if pr.Header == nil {
		pr.Header = http.Header{}
	}
	pr.Header.Set(peers.Header, peers.Sign(s.peer.secret, s.cfg.Name, time.Now(),
		peers.Request{Method: http.MethodGet, URI: peers.URI(pr.Path, pr.Query), Range: pr.Range}))
	resp, err := c.Fetch(ctx, &pr)
	if err != nil {
		return nil, err
	}
	detail := resp.Header.Get("Cache-Status")
	switch {
	case resp.Status == http.StatusForbidden && strings.Contains(detail, "detail=peer-refused"):
		_ = resp.Body.Close()
		return nil, errPeerRefused
	case resp.Status == http.StatusServiceUnavailable && strings.Contains(detail, "detail=origin-budget"):
		_ = resp.Body.Close()
		return nil, ErrOriginBudget
	}
	// The owner's own headers are about its answer to this edge, not about the object.
	for _, name := range []string{"Cache-Status", "X-Cache", "Server-Timing", "Access-Control-Allow-Origin",
		"Access-Control-Expose-Headers", "Strict-Transport-Security", "Server"} {
		resp.Header.Del(name)
	}
	return resp, nil
}

// peerRequest checks a request's peer header, when there is one and peer fill is on: a valid
// one marks the request as a peer's (rq.peer); an invalid one is refused with 403, true.
func (s *Server) peerRequest(ctx *fasthttp.RequestCtx, rq *request) (refused bool) {
	v := ctx.Request.Header.PeekCanonical(hdrPeer)
	if len(v) == 0 {
		return false
	}
	_, err := peers.Verify(s.peer.secret, b2s(v), time.Now(), peers.Request{Method: b2s(ctx.Method()),
		URI: peers.URI(rq.path, rq.query), Range: b2s(ctx.Request.Header.PeekCanonical(hdrRange))})
	if err != nil {
		s.refuse(ctx, fasthttp.StatusForbidden, "peer request refused: "+err.Error())
		ctx.Response.Header.Set("Cache-Status", "duet; fwd=bypass; detail=peer-refused")
		return true
	}
	rq.peer = true
	s.peer.served.Inc()
	return false
}

// peerHeaders adds to an answer for a peer what the peer needs to store the entry as this edge
// holds it: its freshness as this edge computed it (CDN-Cache-Control, which wins over
// Cache-Control: the origin's own CDN-Cache-Control, heuristics and the video defaults are then
// the same on both), and its surrogate keys (so that a purge by tag finds the peer's copy).
func peerHeaders(rh *fasthttp.ResponseHeader, m *object.Meta) {
	cc := "max-age=" + strconv.FormatInt(int64(m.FreshFor/time.Second), 10)
	if m.StaleWhileRevalidate > 0 {
		cc += ", stale-while-revalidate=" + strconv.FormatInt(int64(m.StaleWhileRevalidate/time.Second), 10)
	}
	if m.StaleIfError > 0 {
		cc += ", stale-if-error=" + strconv.FormatInt(int64(m.StaleIfError/time.Second), 10)
	}
	if m.MustRevalidate {
		cc += ", must-revalidate"
	}
	rh.Set("Cdn-Cache-Control", cc)
	if len(m.Tags) > 0 {
		rh.Set("Surrogate-Key", strings.Join(m.Tags, " "))
	}
}
