package steering_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/steering"
)

// startViewerSteering runs a steering with viewer state on over a real embedded NATS, and
// returns its base URL once the viewer state API answers.
func startViewerSteering(t *testing.T, vc steering.ViewerStateConfig) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	srv, err := natsserver.Start(ctx, natsserver.Config{Region: "eu", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := steering.DefaultConfig()
	cfg.Regions = []steering.Region{{Name: "eu", Lat: 50, Lon: 8}, {Name: "us", Lat: 38, Lon: -77}}
	cfg.ViewerState = vc
	s, err := steering.New(cfg, steering.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Prober: &fakeProber{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(rctx, nc, ln) }()
	t.Cleanup(func() { rcancel(); <-done })
	base := "http://" + ln.Addr().String()
	if vc.Region != "" {
		testenv.Eventually(t, 20*time.Second, func() bool {
			code, _ := do(t, http.MethodGet, base+"/v1/viewers/"+strings.Repeat("a", 32)+"/settings", "")
			return code == http.StatusNotFound
		}, "the viewer state API never opened")
	}
	return base
}

// do sends one request and returns the status and body.
func do(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestViewerStateAPI: the viewer state API stores, merges and erases a viewer's state, and
// answers bad input with a 400 that says what is wrong.
func TestViewerStateAPI(t *testing.T) {
	base := startViewerSteering(t, steering.ViewerStateConfig{Region: "eu", RequestsPerMinute: 6000})
	v := base + "/v1/viewers/" + strings.Repeat("ab", 16)
	title := v + "/titles/vod/sample"
	if code, body := do(t, http.MethodGet, title, ""); code != http.StatusNotFound || !strings.Contains(body, "no state") {
		t.Fatalf("GET before any write: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPut, title, `{"position": 12.5, "rendition": "540p"}`); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	// Progress never moves back without a seek; with one it does.
	do(t, http.MethodPut, title, `{"position": 8}`)
	var st struct {
		Position  float64 `json:"position"`
		Rendition string  `json:"rendition"`
		WrittenIn string  `json:"written_in"`
		ServedBy  string  `json:"served_by"`
	}
	get := func() {
		t.Helper()
		code, body := do(t, http.MethodGet, title, "")
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("GET: %d %s", code, body)
		}
	}
	if get(); st.Position != 12.5 || st.Rendition != "540p" || st.WrittenIn != "eu" || st.ServedBy != "eu" {
		t.Fatalf("after progress back without seek: %+v, want 12.5 s, 540p, eu", st)
	}
	do(t, http.MethodPut, title, `{"position": 3, "seek": true}`)
	if get(); st.Position != 3 {
		t.Fatalf("after a seek back to 3 s: %+v", st)
	}
	if code, body := do(t, http.MethodPut, v+"/settings", `{"lang": "fr", "volume": "0.5"}`); code != http.StatusOK || !strings.Contains(body, `"lang":"fr"`) {
		t.Fatalf("PUT settings: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPut, v+"/settings", `{"volume": null}`); code != http.StatusOK || strings.Contains(body, "volume") {
		t.Fatalf("remove a setting: %d %s", code, body)
	}
	if code, body := do(t, http.MethodDelete, v, ""); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	for _, u := range []string{title, v + "/settings"} {
		if code, body := do(t, http.MethodGet, u, ""); code != http.StatusNotFound {
			t.Fatalf("GET %s after the erasure: %d %s", u, code, body)
		}
	}

	for _, c := range []struct{ name, method, url, body, want string }{
		{"short viewer id", http.MethodGet, base + "/v1/viewers/abc/settings", "", "viewer id"},
		{"viewer id with a dot", http.MethodPut, base + "/v1/viewers/" + strings.Repeat("a", 20) + ".x/titles/t", `{"position":1}`, "viewer id"},
		{"not JSON", http.MethodPut, title, `position=1`, "want a JSON object"},
		{"unknown field", http.MethodPut, title, `{"positon": 1}`, "unknown field"},
		{"negative position", http.MethodPut, title, `{"position": -1}`, "position"},
		{"empty update", http.MethodPut, title, `{}`, "nothing to store"},
		{"seek without position", http.MethodPut, title, `{"seek": true, "audio": "en"}`, "seek without a position"},
		{"long choice", http.MethodPut, title, `{"audio": "` + strings.Repeat("x", 200) + `"}`, "longer than"},
		{"control character", http.MethodPut, title, `{"audio": "a\u0001"}`, "printable"},
		{"two objects", http.MethodPut, title, `{"position": 1} {}`, "trailing data"},
		{"body too large", http.MethodPut, title, `{"audio": "` + strings.Repeat(" ", 5000) + `"}`, "body over"},
		{"bad setting name", http.MethodPut, v + "/settings", `{"Lang!": "x"}`, "setting name"},
		{"setting not a string", http.MethodPut, v + "/settings", `{"volume": 1}`, "want a JSON object"},
	} {
		code, body := do(t, c.method, c.url, c.body)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.name, code, body, c.want)
		}
	}
}

// TestViewerStateRateLimit: one viewer's requests beyond the rate are refused with 429, and
// another viewer is not affected.
func TestViewerStateRateLimit(t *testing.T) {
	base := startViewerSteering(t, steering.ViewerStateConfig{Region: "eu", RequestsPerMinute: 40}) // bursts of 10
	busy, calm := base+"/v1/viewers/"+strings.Repeat("b", 32)+"/settings", base+"/v1/viewers/"+strings.Repeat("c", 32)+"/settings"
	limited := 0
	for range 30 {
		if code, body := do(t, http.MethodGet, busy, ""); code == http.StatusTooManyRequests {
			if !strings.Contains(body, "too many") {
				t.Fatalf("429 without a reason: %s", body)
			}
			limited++
		}
	}
	if limited < 15 {
		t.Errorf("%d of 30 quick requests of one viewer were refused, want most beyond the burst of 10", limited)
	}
	if code, body := do(t, http.MethodGet, calm, ""); code != http.StatusNotFound {
		t.Errorf("another viewer: %d %s, want 404 (not limited)", code, body)
	}
}

// TestViewerStateOff: without viewer_state.region the API answers 404 saying how to turn it on.
func TestViewerStateOff(t *testing.T) {
	base := startViewerSteering(t, steering.ViewerStateConfig{})
	code, body := do(t, http.MethodGet, base+"/v1/viewers/"+strings.Repeat("a", 32)+"/settings", "")
	if code != http.StatusNotFound || !strings.Contains(body, "viewer_state.region") {
		t.Fatalf("%d %s, want 404 naming viewer_state.region", code, body)
	}
}
