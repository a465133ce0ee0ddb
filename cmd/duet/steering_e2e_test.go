package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/steering"
	"github.com/duetcdn/duet/steering/geoip/geoiptest"
)

// Test places: public ranges (the geoip package answers false for documentation ranges such as
// 203.0.113.0/24 and 198.51.100.0/24, as for private ones), placed near A and near B.
const (
	e2eNearA = "81.2.69.10"
	e2eNearB = "216.160.83.20"
)

type steeringProc struct{ url string }

// startSteering runs `duet steering` (runSteering) against natsURL with a test GeoIP database.
func startSteering(t *testing.T, natsURL string) *steeringProc {
	t.Helper()
	cfg := steeringRoleConfig{Config: steering.DefaultConfig(), Name: "test", NATS: natsConfig{URLs: []string{natsURL}}}
	cfg.Regions = []steering.Region{{Name: "A", Lat: 50.11, Lon: 8.68}, {Name: "B", Lat: 38.9, Lon: -77.04}}
	cfg.TrustedProxies = []string{"127.0.0.1"}
	cfg.GeoIPDatabase = geoiptest.File(t,
		geoiptest.Place{Network: "81.2.69.0/24", Country: "DE", Lat: 50.0, Lon: 8.5},
		geoiptest.Place{Network: "216.160.83.0/24", Country: "US", Lat: 39.0, Lon: -77.0})
	cfg.ProbeInterval = 250 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() { done <- runSteering(ctx, cfg, log, ln) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("steering stopped with %v", err)
			}
		})
	})
	return &steeringProc{url: "http://" + ln.Addr().String()}
}

// route asks steering for path on behalf of client (X-Forwarded-For from the trusted 127.0.0.1).
func (s *steeringProc) route(t *testing.T, path, client string) (steering.RouteAnswer, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+"/v1/route?path="+path, nil)
	req.Header.Set("X-Forwarded-For", client)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a steering.RouteAnswer
	_ = json.NewDecoder(resp.Body).Decode(&a)
	return a, resp.StatusCode
}

func edgeNames(a steering.RouteAnswer) []string {
	var out []string
	for _, e := range a.Edges {
		out = append(out, e.Name)
	}
	return out
}

// inAnyAnswer reports whether edge appears in the answer for any of 20 streams, from A or B.
func (s *steeringProc) inAnyAnswer(t *testing.T, edge string) bool {
	for i := range 20 {
		for _, c := range []string{e2eNearA, e2eNearB} {
			if a, _ := s.route(t, fmt.Sprintf("/vod/s%d/1.ts", i), c); slices.Contains(edgeNames(a), edge) {
				return true
			}
		}
	}
	return false
}

// TestSteeringTwoRegions: two regions × two real edges on embedded NATS, one steering instance on
// region A's NATS (B's heartbeats cross the leafnode).
func TestSteeringTwoRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS, edges and edge processes")
	}
	origin := newVersionedOrigin(t)
	a, b, all := twoRegions(t, origin, 2*time.Second)
	st := startSteering(t, a.nats.ClientURL())
	// A SIGKILL-able edge process in A, beside a1 and a2.
	p := startEdgeProc(t, "--name", "a3", "--region", "A", "--origin.type", "http", "--origin.endpoint", origin.srv.URL,
		"--disk.dir", t.TempDir(), "--nats.urls", a.nats.ClientURL(), "--purge.regions", "A,B", "--purge.staleness_bound", "2s")
	testenv.Eventually(t, 20*time.Second, func() bool {
		an, code := st.route(t, "/vod/x/1.ts", e2eNearA)
		return code == 200 && len(an.Edges) == 5
	}, "steering never saw all 5 edges")
	_ = all

	// Viewers near A go to A, near B to B; one stream's requests land on one edge, and that
	// edge serves them.
	for _, tc := range []struct{ client, region string }{{e2eNearA, "A"}, {e2eNearB, "B"}} {
		var edge string
		for _, seg := range []string{"master.m3u8", "720p/index.m3u8", "720p/seg1.ts", "720p/seg2.ts"} {
			an, code := st.route(t, "/vod/show1/"+seg, tc.client)
			if code != 200 || an.Region != tc.region || an.Reason != "nearest" {
				t.Fatalf("%s from %s: %d %+v", seg, tc.client, code, an)
			}
			if edge == "" {
				edge = an.Edges[0].Name
			} else if an.Edges[0].Name != edge {
				t.Fatalf("one stream on two edges: %s and %s", edge, an.Edges[0].Name)
			}
		}
		// The redirect points at that edge, which serves the segment.
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, st.url+"/r/vod/show1/720p/seg1.ts", nil)
		req.Header.Set("X-Forwarded-For", tc.client)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || resp.Header.Get("X-Duet-Edge") != edge || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("redirect: %d %v", resp.StatusCode, resp.Header)
		}
		if _, body := get(t, loc); string(body) != "/vod/show1/720p/seg1.ts v1" {
			t.Fatalf("%s served %q", loc, body)
		}
		t.Logf("viewer %s → region %s, edge %s (%s)", tc.client, tc.region, edge, loc)
	}

	// SIGKILL a3: measure how long until it is gone from every answer.
	p.kill9(t)
	killed := time.Now()
	testenv.Eventually(t, 10*time.Second, func() bool { return !st.inAnyAnswer(t, "a3") }, "killed a3 still in answers")
	t.Logf("SIGKILLed edge a3 gone from every answer after %s", time.Since(killed).Round(time.Millisecond))

	// A draining edge gets no new viewers: stop a2 gracefully (it announces draining, then its
	// listener closes), measure until it is gone.
	go a.edges[1].stop()
	stopped := time.Now()
	testenv.Eventually(t, 10*time.Second, func() bool { return !st.inAnyAnswer(t, "a2") }, "stopped a2 still in answers")
	t.Logf("stopped (draining) edge a2 gone from every answer after %s", time.Since(stopped).Round(time.Millisecond))
	for i := range 20 {
		if an, _ := st.route(t, fmt.Sprintf("/vod/s%d/1.ts", i), e2eNearA); an.Edges[0].Name != "a1" {
			t.Fatalf("with a2 and a3 gone, A's viewers went to %v", edgeNames(an))
		}
	}

	// All of A down: A's viewers go to B.
	a.edges[0].stop()
	allDown := time.Now()
	testenv.Eventually(t, 10*time.Second, func() bool {
		an, code := st.route(t, "/vod/show1/720p/seg1.ts", e2eNearA)
		return code == 200 && an.Region == "B" && len(an.Edges) == 2
	}, "A's viewers never went to B")
	an, _ := st.route(t, "/vod/show1/720p/seg1.ts", e2eNearA)
	t.Logf("all of A down: A's viewers go to %s (%s, %v) after %s", an.Region, an.Reason, edgeNames(an), time.Since(allDown).Round(time.Millisecond))
	if an.Reason != "spill-unhealthy" {
		t.Fatalf("reason %q", an.Reason)
	}
	// The topology shows both regions and A down.
	resp, err := http.Get(st.url + "/v1/topology")
	if err != nil {
		t.Fatal(err)
	}
	var top steering.Topology
	_ = json.NewDecoder(resp.Body).Decode(&top)
	resp.Body.Close()
	if len(top.Regions) != 2 || top.Regions[0].Health != "down" || top.Regions[1].Health != "up" {
		t.Fatalf("topology: %+v", top.Regions)
	}
	var sb strings.Builder
	for _, r := range top.Regions {
		for _, e := range r.Edges {
			fmt.Fprintf(&sb, " %s/%s=%s(%s)", r.Name, e.Name, e.State, e.DownReason)
		}
	}
	t.Logf("topology:%s", sb.String())
	_ = b
}
