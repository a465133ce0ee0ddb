package steering

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duetcdn/duet/internal/viewerstate"
	"github.com/duetcdn/duet/steering/manifest"
	"github.com/duetcdn/duet/steering/player"
)

// Handler serves the HTTP API:
//
//	GET /v1/route?path=P     JSON RouteAnswer: the edges for P, best first, and why
//	GET /r/{path...}         302 to the first edge's URL + path (and query); Cache-Control: no-store
//	GET /v1/steer/hls?path=P HLS steering manifest (_HLS_pathway, _HLS_throughput)
//	GET /v1/steer/dash?path=P DASH steering response (_DASH_pathway, _DASH_throughput)
//	GET /v1/topology         JSON Topology: regions, edges, health, load, hit ratio
//	GET /                    status page (refreshes itself from /v1/topology)
//	GET /play                player page (hls.js; ?src= defaults to /r/vod/sample/master.m3u8)
//	GET /healthz, /readyz, /metrics
//	GET|PUT /v1/viewers/{id}/titles/{title...}, GET|PUT /v1/viewers/{id}/settings,
//	DELETE /v1/viewers/{id}  viewer state (viewers.go)
//
// Errors are JSON {"error": "..."}: 400 for a malformed path, query value or client address, 503
// when no edge is known or none is healthy.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/route", s.handleRoute)
	mux.HandleFunc("GET /r/{path...}", s.handleRedirect)
	mux.HandleFunc("GET /v1/steer/hls", func(w http.ResponseWriter, r *http.Request) { s.handleSteer(w, r, false) })
	mux.HandleFunc("GET /v1/steer/dash", func(w http.ResponseWriter, r *http.Request) { s.handleSteer(w, r, true) })
	mux.HandleFunc("GET /v1/topology", s.handleTopology)
	mux.HandleFunc("GET /{$}", s.handleStatus)
	play := player.New(player.Config{})
	mux.Handle("GET /play", play)
	mux.Handle("GET /play/", play)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.handleReady)
	s.viewerRoutes(mux)
	if s.gather != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}))
	}
	if s.hsts == "" {
		return s.logRequests(mux)
	}
	return s.logRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", s.hsts)
		mux.ServeHTTP(w, r)
	}))
}

// writeError maps an error to its status: the one place that does.
func (s *Server) writeError(w http.ResponseWriter, err error, api string) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, manifest.ErrBadQuery):
		code = http.StatusBadRequest
		if api != "" {
			s.m.badRequests.WithLabelValues(api).Inc()
		}
	case errors.Is(err, viewerstate.ErrBadInput):
		code = http.StatusBadRequest
		s.m.badRequests.WithLabelValues(api).Inc()
	case errors.Is(err, viewerstate.ErrNotFound), errors.Is(err, ErrViewerStateOff):
		code = http.StatusNotFound
	case errors.Is(err, ErrTooManyRequests):
		code = http.StatusTooManyRequests
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, ErrNoEdges), errors.Is(err, ErrNoHealthyEdge), errors.Is(err, ErrViewerStateUnavailable), errors.Is(err, viewerstate.ErrBusy):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	default:
		s.log.Error("steering request failed", "api", api, "error", err)
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// oneQuery returns the query parameter name, refusing repeats.
func oneQuery(q url.Values, name string) (string, error) {
	vs := q[name]
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", fmt.Errorf("%w: query parameter %s given more than once", ErrBadRequest, name)
}

func (s *Server) handleRoute(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, fmt.Errorf("%w: malformed query: %w", ErrBadRequest, err), "route")
		return
	}
	path, err := oneQuery(q, "path")
	if err == nil {
		err = checkPath(path)
	}
	if err != nil {
		s.writeError(w, err, "route")
		return
	}
	a, err := s.routeRequest(r, path, "route")
	if err != nil {
		s.writeError(w, err, "route")
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) handleRedirect(w http.ResponseWriter, r *http.Request) {
	path := "/" + r.PathValue("path")
	if err := checkPath(path); err != nil {
		s.writeError(w, err, "redirect")
		return
	}
	a, err := s.routeRequest(r, path, "redirect")
	if err != nil {
		s.writeError(w, err, "redirect")
		return
	}
	loc := strings.TrimSuffix(a.Edges[0].URL, "/") + (&url.URL{Path: path}).EscapedPath()
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", loc)
	w.Header().Set("X-Duet-Edge", a.Edges[0].Name)
	w.Header().Set("X-Duet-Reason", a.Reason)
	w.WriteHeader(http.StatusFound)
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if v := s.view.Load(); v.up == 0 {
		err := ErrNoEdges
		if v.total > 0 {
			err = ErrNoHealthyEdge
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// clientOf locates the client of a request (X-Forwarded-For counts only from trusted proxies).
func (s *Server) clientOf(r *http.Request) (client, error) {
	return s.locate(r.RemoteAddr, strings.Join(r.Header.Values("X-Forwarded-For"), ","))
}

// routeRequest answers where the client of r should fetch path.
func (s *Server) routeRequest(r *http.Request, path, api string) (RouteAnswer, error) {
	c, err := s.clientOf(r)
	if err != nil {
		return RouteAnswer{}, err
	}
	return s.route(path, c, api)
}
