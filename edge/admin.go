package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duetcdn/duet/internal/adminguard"
	"github.com/duetcdn/duet/internal/purgereq"
)

// maxPurgeBody bounds a local purge request.
const maxPurgeBody = 1 << 20

// newAdminGuard builds the admin listener's guard from admin_token (or admin_token_file) and
// admin_hosts.
func newAdminGuard(cfg Config) (*adminguard.Guard, error) {
	token := cfg.AdminToken
	if cfg.AdminTokenFile != "" {
		b, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("%w: admin_token_file: %w", ErrConfig, err)
		}
		token = strings.TrimSpace(string(b))
	}
	var tokens []string
	if token != "" {
		tokens = []string{token}
	}
	g, err := adminguard.New(adminguard.Config{Tokens: tokens, Hosts: cfg.AdminHosts, Realm: "duet-edge-admin",
		NoTokenReason: "this edge has no admin token: set admin_token (DUET_EDGE_ADMIN_TOKEN) or admin_token_file to use /purge and /debug/pprof"})
	if err != nil {
		return nil, fmt.Errorf("%w: admin_token or admin_hosts: %w", ErrConfig, err)
	}
	return g, nil
}

// adminHandler serves the operator endpoints. It listens apart from viewers (keep it private):
// /purge and /debug/pprof need the admin token and refuse what a web page could send (s.admin);
// the probes and /metrics are open.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "not ready: starting or draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if s.gather != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}))
	}
	guarded := func(h http.HandlerFunc) http.Handler { return s.admin.Token(h) }
	mux.Handle("/debug/pprof/", guarded(pprof.Index))
	mux.Handle("/debug/pprof/cmdline", guarded(pprof.Cmdline))
	mux.Handle("/debug/pprof/profile", guarded(pprof.Profile))
	mux.Handle("/debug/pprof/symbol", guarded(pprof.Symbol))
	mux.Handle("/debug/pprof/trace", guarded(pprof.Trace))
	mux.Handle("POST /purge", guarded(s.servePurge))
	return mux
}

// servePurge is the local purge entry point: POST /purge {"urls":[],"prefixes":[],"tags":[],"soft":false}.
func (s *Server) servePurge(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	var req purgereq.Target
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "purge body larger than 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "bad purge body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.checkPurge(req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	res, err := s.Purge(r.Context(), req)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrBadPurge) {
			status = http.StatusBadRequest
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}
