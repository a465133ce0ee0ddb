package steering_test

import (
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/steering"
)

// TestProbeCARootsTrustsPrivateEdges: an edge serving HTTPS with a certificate from a private CA
// (duet dev --https's) is probed up only when probe_ca_roots names that CA; without it the
// probe fails (unknown authority) and the edge would be taken down.
func TestProbeCARootsTrustsPrivateEdges(t *testing.T) {
	edge := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != bus.EdgeReadyPath {
			http.NotFound(w, r)
		}
	}))
	defer edge.Close()
	roots := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: edge.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	probe := func(caRoots string) error {
		cfg := testConfig()
		cfg.ProbeCARoots = caRoots
		srv, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		return steering.ProbeWith(context.Background(), srv, edge.URL)
	}
	if err := probe(""); err == nil {
		t.Fatal("an edge with a private CA's certificate probed up without probe_ca_roots")
	}
	if err := probe(roots); err != nil {
		t.Fatalf("probe with probe_ca_roots: %v", err)
	}

	cfg := testConfig()
	cfg.ProbeCARoots = filepath.Join(t.TempDir(), "missing.crt")
	if _, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}); !errors.Is(err, steering.ErrInvalidConfig) {
		t.Fatalf("missing probe_ca_roots: %v", err)
	}
}

// TestHSTSOnEveryAnswer: with Deps.HSTS set, every answer carries Strict-Transport-Security.
func TestHSTSOnEveryAnswer(t *testing.T) {
	srv, err := steering.New(testConfig(), steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		HSTS: "max-age=600"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, path := range []string{"/healthz", "/v1/route?path=/vod/a/master.m3u8", "/nope"} {
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if got := w.Header().Get("Strict-Transport-Security"); got != "max-age=600" {
			t.Errorf("%s: %d, Strict-Transport-Security %q", path, w.Code, got)
		}
	}
}
