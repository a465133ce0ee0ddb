package steering_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/cmcd"
	"github.com/duetcdn/duet/steering"
	"github.com/duetcdn/duet/steering/geoip/geoiptest"
)

// TestAccessLogSteering: steering writes a line per request, with the client and status, and
// never a signed URL's token.
func TestAccessLogSteering(t *testing.T) {
	cfg := testConfig()
	file := filepath.Join(t.TempDir(), "access.log")
	cfg.AccessLog.Sink, cfg.AccessLog.File = "file", file
	srv, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		GeoIP: geoiptest.Open(t, places...), Prober: &fakeProber{fail: map[string]bool{}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Observe(bus.Heartbeat{Edge: "a1", Region: "A", URL: edgeURL("a1"), State: bus.StateServing, OriginHealthy: true})
	ts := httptest.NewServer(srv.Handler())
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(ts.URL + "/r/vod/a/master.m3u8?token=SECRET&x=1")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	ts.Close()
	if err := srv.Close(); err != nil { // flushes the log
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "SECRET") {
		t.Fatalf("a token reached the log: %s", b)
	}
	var line map[string]any
	if err := json.Unmarshal(b, &line); err != nil {
		t.Fatalf("not one JSON line: %v: %s", err, b)
	}
	for k, want := range map[string]any{"component": "steering", "client": "127.0.0.1", "method": "GET",
		"path": "/r/vod/a/master.m3u8", "query": "token=REDACTED&x=1", "status": float64(resp.StatusCode)} {
		if line[k] != want {
			t.Errorf("%s: %v, want %v (%s)", k, line[k], want, b)
		}
	}
	if id, _ := line["request_id"].(string); len(id) != 32 {
		t.Errorf("request id %q", id)
	}
}

// TestTopologyQoE: an edge's CMCD summary reaches /v1/topology, per edge and per region.
func TestTopologyQoE(t *testing.T) {
	f := newFixture(t, testConfig())
	f.beat("b1")
	f.srv.Observe(bus.Heartbeat{Edge: "a1", Region: "A", URL: edgeURL("a1"), State: bus.StateServing, OriginHealthy: true,
		QoE: &cmcd.Summary{Sessions: 3, Rebuffering: 1, MedianBufferMS: 8000, MedianThroughputKbps: 5000,
			Recent: []cmcd.Session{{ID: "s1", BufferMS: 8000, ThroughputKbps: 5000}}}})
	f.srv.Observe(bus.Heartbeat{Edge: "a2", Region: "A", URL: edgeURL("a2"), State: bus.StateServing, OriginHealthy: true,
		QoE: &cmcd.Summary{Sessions: 1, MedianBufferMS: 4000, MedianThroughputKbps: 1000}})
	w := f.get("/v1/topology", "")
	var top steering.Topology
	if err := json.Unmarshal(w.Body.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	for _, r := range top.Regions {
		switch r.Name {
		case "A":
			if q := r.QoE; q == nil || q.Sessions != 4 || q.Rebuffering != 1 || q.MedianBufferMS != 7000 || q.MedianThroughputKbps != 4000 {
				t.Errorf("region A's QoE: %+v", q)
			}
			for _, e := range r.Edges {
				if e.Name == "a1" && (e.QoE == nil || len(e.QoE.Recent) != 1 || e.QoE.Recent[0].BufferMS != 8000) {
					t.Errorf("a1's QoE: %+v", e.QoE)
				}
			}
		case "B":
			if r.QoE != nil {
				t.Errorf("region B has QoE without CMCD: %+v", r.QoE)
			}
		}
	}
}
