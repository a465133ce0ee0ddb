package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/loadtest/report"
)

func testConfig(c *testCluster, scenario string) Config {
	cfg := DefaultConfig()
	cfg.Control, cfg.Scenario = c.control.URL, scenario
	cfg.Timeout = time.Second
	return cfg
}

func html(t *testing.T, s *report.Summary) string {
	t.Helper()
	var b bytes.Buffer
	if err := report.WriteHTML(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestScenarios runs each scenario for a few seconds against real edges over a real MinIO.
func TestScenarios(t *testing.T) {
	c := newTestCluster(t)

	t.Run("zipf", func(t *testing.T) {
		cfg := testConfig(c, "zipf")
		cfg.Duration, cfg.Rate, cfg.Objects, cfg.ObjectSize = 3*time.Second, 150, 60, 8<<10
		s, err := Run(t.Context(), cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("zipf: %d requests, %.0f req/s, p50 %.2f ms, p99 %.2f ms, hit ratio %.3f, offload %.3f",
			s.Requests, s.Throughput, s.Latency.P50, s.Latency.P99, s.HitRatio, s.OriginOffload)
		if s.Requests < 300 || s.Errors != 0 {
			t.Errorf("requests %d errors %d: want ~450 requests at 150/s for 3s and no error", s.Requests, s.Errors)
		}
		// 60 objects, ~450 Zipf draws: most requests repeat an object already fetched.
		if s.HitRatio < 0.5 {
			t.Errorf("hit ratio %.3f: want most of a Zipf workload over a small catalogue from cache", s.HitRatio)
		}
		if s.OriginOffload <= 0 || s.OriginOffload > 1 {
			t.Errorf("origin offload %.3f: want in (0, 1]", s.OriginOffload)
		}
		if len(s.Seconds) < 3 || s.Latency.P99 <= 0 {
			t.Errorf("per-second series %d, p99 %v", len(s.Seconds), s.Latency.P99)
		}
		checkHTML(t, html(t, s), "Zipf catalogue")
	})

	// An edge that dies mid-run: zipf sends each request that edge fails to the route's next
	// edge, as a player moves to its next pathway, and benches it; no request fails.
	t.Run("zipf-edge-dies", func(t *testing.T) {
		cfg := testConfig(c, "zipf")
		cfg.Duration, cfg.Rate, cfg.Objects, cfg.ObjectSize = 3*time.Second, 150, 60, 8<<10
		dead := c.edges[0] // first in every eu route
		stopped := time.AfterFunc(1500*time.Millisecond, dead.halt)
		defer stopped.Stop()
		s, err := Run(t.Context(), cfg, Deps{})
		if err := dead.start(); err != nil {
			t.Fatalf("restart %s: %v", dead.name, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		var retry string
		for _, e := range s.Events {
			if e.Kind == "retry" {
				retry = e.Detail
			}
		}
		t.Logf("zipf with %s stopped halfway: %d requests, %d errors %v; retries: %q", dead.name, s.Requests, s.Errors, s.ErrorsByReason, retry)
		if s.Errors != 0 || retry == "" {
			t.Errorf("%d errors %v, retries %q: a request the dead edge failed must go to the route's next edge", s.Errors, s.ErrorsByReason, retry)
		}
	})

	t.Run("failover", func(t *testing.T) {
		cfg := testConfig(c, "failover")
		// 2 s segments played 10× fast: a segment every 200 ms; stops at 0.9 s and 2.7 s.
		cfg.Duration, cfg.Viewers, cfg.Speed = 6*time.Second, 8, 10
		s, err := Run(t.Context(), cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("failover: %d segments, %d failed, %d requests (%d errors), takeovers %+v", s.Segments, s.FailedSegments, s.Requests, s.Errors, s.Takeovers)
		// 8 viewers × (30 segments of 200 ms in 6 s + an init segment per play of 1.6 s) ≈ 270:
		// fewer means they did not play, more that they did not keep real-time pace.
		if s.Segments < 150 || s.Segments > 320 {
			t.Errorf("%d segments: want about 270 (8 viewers at a segment per 200 ms for 6 s)", s.Segments)
		}
		if s.FailedSegments != 0 {
			t.Errorf("%d failed segments: viewers that follow steering must not lose a segment when an edge or a region dies", s.FailedSegments)
		}
		if s.Errors == 0 {
			t.Errorf("no request failed: the stops did not hit the viewers' pathways")
		}
		kinds := map[string]bool{}
		for _, e := range s.Events {
			kinds[e.Kind+" "+e.Target] = true
		}
		for _, k := range []string{"edge-stop eu-1", "edge-start eu-1", "region-stop eu", "region-start eu"} {
			if !kinds[k] {
				t.Errorf("event %q not recorded (events %+v)", k, s.Events)
			}
		}
		got := map[string]report.Takeover{}
		for _, to := range s.Takeovers {
			got[to.Event] = to
		}
		if to := got["edge-stop eu-1"]; !to.Found || to.Edge == "eu-1" || to.After > 2*time.Second {
			t.Errorf("edge-stop takeover %+v: want another edge within 2s", to)
		}
		if to := got["region-stop eu"]; !to.Found || to.Region != "us" || to.After > 2*time.Second {
			t.Errorf("region-stop takeover %+v: want region us within 2s", to)
		}
		// The per-region series shows us serving while eu is down.
		var usDuringStop int64
		for _, sec := range s.Seconds {
			if sec.At >= 3*time.Second && sec.At < 3900*time.Millisecond {
				usDuringStop += sec.ByRegion["us"]
			}
		}
		if usDuringStop == 0 {
			t.Errorf("region us served nothing while eu was down: %+v", s.Seconds)
		}
		// Issue 14, acceptance 5: the report shows the viewers' start-up time and rebuffer ratio,
		// and the origin's requests per second over time.
		if s.Starts < int64(cfg.Viewers) || s.Startup.P50 <= 0 || s.Startup.Max < s.Startup.P50 {
			t.Errorf("%d starts, start-up %+v: want every viewer's start timed", s.Starts, s.Startup)
		}
		if s.RebufferRatio < 0 || s.RebufferRatio >= 1 {
			t.Errorf("rebuffer ratio %v: want a ratio of viewers that played", s.RebufferRatio)
		}
		var origin float64
		for _, sec := range s.Seconds {
			origin += sec.OriginRequests
		}
		if origin <= 0 {
			t.Errorf("no origin request in the per-second series: the edges' fetches of a cold stream went uncounted")
		}
		t.Logf("failover: %d starts, start-up p50 %.1f ms max %.1f ms, rebuffer ratio %.4f, %.0f origin requests", s.Starts, s.Startup.P50, s.Startup.Max,
			s.RebufferRatio, origin)
		var text bytes.Buffer
		if err := report.WriteText(&text, s); err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"start-up p50 / p99 / max", "rebuffer ratio", "pathway switches"} {
			if !strings.Contains(text.String(), w) {
				t.Errorf("text report lacks %q:\n%s", w, text.String())
			}
		}
		checkHTML(t, html(t, s), "edge-stop eu-1", "region-stop eu", "Takeovers", "region us", "Served per edge", "start-up p50 / p99 / max",
			"rebuffer ratio", "Origin requests per second")
	})

	t.Run("purge-storm", func(t *testing.T) {
		cfg := testConfig(c, "purge-storm")
		cfg.Duration, cfg.Viewers, cfg.Speed, cfg.PurgeRate = 3*time.Second, 6, 10, 10
		s, err := Run(t.Context(), cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("purge-storm: %d requests, %d errors, hit ratio %.3f, tables %+v", s.Requests, s.Errors, s.HitRatio, s.Tables)
		var purges int
		for _, e := range s.Events {
			if e.Kind == "purge" {
				purges++
			}
		}
		if purges < 20 || len(s.Tables) != 1 || s.Tables[0].Rows[0][1] != "0" {
			t.Errorf("%d purges acknowledged, tables %+v: want ~29 at 10/s for 3s, none failed", purges, s.Tables)
		}
		if s.FailedSegments != 0 || s.Errors != 0 {
			t.Errorf("purges must not fail viewers: %d errors, %d failed segments", s.Errors, s.FailedSegments)
		}
		// Purged segments are fetched again: some answers are misses after the warm-up.
		if s.HitRatio <= 0 || s.HitRatio >= 1 {
			t.Errorf("hit ratio %.3f: want hits and purge-induced misses", s.HitRatio)
		}
		checkHTML(t, html(t, s), "Purges (wait mode")
	})

	t.Run("flash-crowd", func(t *testing.T) {
		cfg := testConfig(c, "flash-crowd")
		// Sized for the race detector on a 2-core machine: 100 viewers at 4× speed.
		cfg.Duration, cfg.Viewers, cfg.Ramp, cfg.Speed, cfg.Timeout = 3*time.Second, 100, 500*time.Millisecond, 4, 2*time.Second
		s, err := Run(t.Context(), cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("flash-crowd: %d requests, %d errors, p99 %.1f ms, hit ratio %.3f, tables %+v", s.Requests, s.Errors, s.Latency.P99, s.HitRatio, s.Tables)
		if s.Requests < 500 || s.FailedSegments != 0 || s.Errors != 0 {
			t.Errorf("requests %d, errors %d, failed segments %d", s.Requests, s.Errors, s.FailedSegments)
		}
		if len(s.Tables) != 1 || !strings.Contains(s.Tables[0].Title, "Origin fetches") {
			t.Fatalf("tables %+v: want the origin fetches table", s.Tables)
		}
		// 100 viewers of a cold stream: collapsing holds the origin to about one fetch per
		// object per edge that served it (3 edges at most).
		rows := s.Tables[0].Rows
		if all := rows[len(rows)-1]; all[0] != "all edges" || all[3] == "" || !(parseF(t, all[3]) > 0 && parseF(t, all[3]) <= 3.5) {
			t.Errorf("origin fetches per object %v: want (0, 3.5]", all)
		}
	})
}

func parseF(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	if _, err := fmt.Sscan(s, &f); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return f
}

// TestBadInput: unknown scenario, targets off loopback, unreachable control, bad settings.
func TestBadInput(t *testing.T) {
	t.Run("unknown scenario", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Scenario = "stampede"
		_, err := Run(t.Context(), cfg, Deps{})
		if !errors.Is(err, ErrUnknownScenario) || !strings.Contains(err.Error(), "failover, flash-crowd, purge-storm, zipf") {
			t.Fatalf("err %v: want ErrUnknownScenario listing the scenarios", err)
		}
	})
	t.Run("remote control", func(t *testing.T) {
		for _, u := range []string{"http://10.1.2.3:7070", "http://example.com", "http://[2001:db8::1]:7070", "http://127.0.0.1.example.com/"} {
			cfg := DefaultConfig()
			cfg.Control = u
			_, err := Run(t.Context(), cfg, Deps{})
			if !errors.Is(err, ErrRemoteTarget) || !strings.Contains(err.Error(), "--allow-remote") {
				t.Errorf("%s: err %v: want ErrRemoteTarget naming --allow-remote", u, err)
			}
		}
	})
	t.Run("remote edge in the cluster", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"regions":[{"name":"eu","steering":"http://127.0.0.1:8400","edges":[{"name":"eu-1","url":"http://203.0.113.7:8081"}]}]}`))
		}))
		defer srv.Close()
		cfg := DefaultConfig()
		cfg.Control = srv.URL
		_, err := Run(t.Context(), cfg, Deps{})
		if !errors.Is(err, ErrRemoteTarget) || !strings.Contains(err.Error(), "203.0.113.7") {
			t.Fatalf("err %v: want ErrRemoteTarget naming the edge", err)
		}
	})
	t.Run("unreachable control", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := "http://" + ln.Addr().String()
		ln.Close()
		cfg := DefaultConfig()
		cfg.Control = addr
		_, err = Run(t.Context(), cfg, Deps{})
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "make run") {
			t.Fatalf("err %v: want ErrUnreachable naming %s and make run", err, addr)
		}
	})
	t.Run("out of bounds", func(t *testing.T) {
		for name, mut := range map[string]func(*Config){
			"duration": func(c *Config) { c.Duration = time.Hour },
			"rate":     func(c *Config) { c.Rate = MaxRate + 1 },
			"viewers":  func(c *Config) { c.Viewers = MaxViewers + 1 },
			"speed":    func(c *Config) { c.Speed = -1 },
		} {
			cfg := DefaultConfig()
			mut(&cfg)
			if _, err := Run(t.Context(), cfg, Deps{}); !errors.Is(err, ErrConfig) {
				t.Errorf("%s: err %v, want ErrConfig", name, err)
			}
		}
	})
}

func TestGuard(t *testing.T) {
	for _, tc := range []struct {
		url    string
		remote bool
		ok     bool
	}{
		{"http://127.0.0.1:7070", false, true},
		{"http://127.9.9.9", false, true},
		{"http://localhost:8081/x", false, true},
		{"http://[::1]:8081", false, true},
		{"http://[::ffff:127.0.0.1]:1", false, true},
		{"http://192.168.1.1", false, false},
		{"http://0.0.0.0:80", false, false},
		{"https://cdn.example.net", false, false},
		{"https://cdn.example.net", true, true},
		{"ftp://127.0.0.1", false, false},
		{"127.0.0.1:7070", false, false},
	} {
		err := Guard{AllowRemote: tc.remote}.Check("x", tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q, remote=%v) = %v, want ok=%v", tc.url, tc.remote, err, tc.ok)
		}
	}
}
