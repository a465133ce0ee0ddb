package loadtest

import (
	"github.com/duetcdn/duet/internal/route"

	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hlssample "github.com/duetcdn/duet/internal/sample"
	"github.com/duetcdn/duet/loadtest/report"
	"github.com/duetcdn/duet/steering/manifest"
)

// pathwayEdge is a stand-in edge serving the sample with content steering injected, on its own
// loopback address (HLS clones differ by host name only).
type pathwayEdge struct {
	name string
	srv  *http.Server
	ln   net.Listener
	url  string
	hits atomic.Int64
}

// pathwayEdges starts one edge per address, all on one port.
func pathwayEdges(t *testing.T, steer string, ips ...string) []*pathwayEdge {
	t.Helper()
	files := map[string]hlssample.File{}
	for _, f := range hlssample.Stream() {
		files["/vod/sample/"+f.Path] = f
	}
	for attempt := 0; ; attempt++ {
		var out []*pathwayEdge
		port := ""
		var err error
		for i, ip := range ips {
			var ln net.Listener
			ln, err = net.Listen("tcp", ip+":"+cmpOr(port, "0"))
			if err != nil {
				break
			}
			_, port, _ = net.SplitHostPort(ln.Addr().String())
			e := &pathwayEdge{name: fmt.Sprintf("e%d", i+1), ln: ln, url: "http://" + ln.Addr().String()}
			e.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				f, ok := files[r.URL.Path]
				if !ok {
					http.NotFound(w, r)
					return
				}
				e.hits.Add(1)
				body := f.Body
				if strings.HasSuffix(r.URL.Path, "master.m3u8") {
					var err error
					body, err = manifest.InjectHLS(body, steer+"/v1/steer/hls?path="+r.URL.Path+"&base="+e.name, e.name, nil)
					if err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
				}
				w.Header().Set("Content-Type", f.ContentType)
				_, _ = w.Write(body)
			})}
			go func() { _ = e.srv.Serve(ln) }()
			out = append(out, e)
		}
		if err == nil {
			for _, e := range out {
				t.Cleanup(func() { _ = e.srv.Close() })
			}
			return out
		}
		for _, e := range out {
			_ = e.srv.Close()
		}
		if attempt == 20 {
			t.Fatalf("listen on %v with one port: %v", ips, err)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestViewerFollowsSteeringLikeHLSJS: a viewer of a stream with content steering plays from the
// playlist's pathway, moves to the next pathway of the last priority when its edge dies (a
// clone it got from steering: the other edge of its region, not the other region), without
// losing a segment, and reloads steering from RELOAD-URI (another steering service).
func TestViewerFollowsSteeringLikeHLSJS(t *testing.T) {
	var mu sync.Mutex
	var steerQueries []string
	var edges []*pathwayEdge
	// Steering: A's two edges, then B's; RELOAD-URI to the second steering service.
	var reloadTo string
	answer := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		steerQueries = append(steerQueries, r.Host+" "+r.URL.RawQuery)
		mu.Unlock()
		if r.URL.Path == "/v1/route" {
			_ = json.NewEncoder(w).Encode(route.Answer{Region: "a", Edges: []route.Edge{{Name: "e1", Region: "a", URL: edges[0].url}}})
			return
		}
		host := func(e *pathwayEdge) string {
			h, _, _ := net.SplitHostPort(strings.TrimPrefix(e.url, "http://"))
			return h
		}
		body, err := manifest.HLS(manifest.Input{TTL: time.Second, ReloadURI: reloadTo + r.URL.RequestURI()}, []manifest.Pathway{
			{ID: "e1"},
			{ID: "e2", Clone: &manifest.Clone{BaseID: "e1", Host: host(edges[1])}},
			{ID: "e3", Clone: &manifest.Clone{BaseID: "e1", Host: host(edges[2])}},
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(body)
	}
	steer1, steer2 := httptest.NewServer(http.HandlerFunc(answer)), httptest.NewServer(http.HandlerFunc(answer))
	t.Cleanup(steer1.Close)
	t.Cleanup(steer2.Close)
	reloadTo = steer2.URL
	edges = pathwayEdges(t, steer1.URL, "127.0.40.1", "127.0.40.2", "127.0.41.1")

	cfg := DefaultConfig()
	cfg.Speed, cfg.Timeout = 10, time.Second
	e := &env{cfg: cfg, log: slog.New(slog.DiscardHandler), client: &http.Client{}, byURL: map[string][2]string{
		edges[0].url: {"e1", "a"}, edges[1].url: {"e2", "a"}, edges[2].url: {"e3", "b"}}}
	e.router = &router{client: e.client, guard: Guard{}, steerings: []string{steer1.URL}}
	e.t0 = time.Now()
	e.rec = newRecorder(e.t0, []string{"a", "b"})
	v := &viewer{env: e, rng: e.rng(1)}
	done := make(chan struct{})
	until := time.Now().Add(4 * time.Second)
	go func() { defer close(done); v.play(t.Context(), "/vod/sample/master.m3u8", until) }()
	// Once e1 has served a few segments, it dies.
	deadline := time.Now().Add(3 * time.Second)
	for edges[0].hits.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polling, bounded by the deadline
	}
	_ = edges[0].srv.Close()
	<-done

	var s report.Summary
	e.rec.summary(&s, time.Since(e.t0))
	if s.FailedSegments != 0 || s.Starts < 1 || s.Startup.Max <= 0 || s.RebufferRatio < 0 {
		t.Fatalf("failed segments %d, starts %d, start-up %+v, rebuffer %.3f", s.FailedSegments, s.Starts, s.Startup, s.RebufferRatio)
	}
	if edges[1].hits.Load() == 0 || edges[2].hits.Load() != 0 {
		t.Fatalf("after e1 died: e2 served %d, e3 (the other region) %d: want the other edge of the region", edges[1].hits.Load(), edges[2].hits.Load())
	}
	if s.PathwaySwitches < 1 {
		t.Fatalf("pathway switches %d", s.PathwaySwitches)
	}
	mu.Lock()
	defer mu.Unlock()
	var first, reload string
	for _, q := range steerQueries {
		if strings.Contains(q, "_HLS_pathway") && first == "" {
			first = q
		} else if strings.Contains(q, "_HLS_pathway") && reload == "" {
			reload = q
		}
	}
	if !strings.Contains(first, "_HLS_pathway=e1") || !strings.Contains(first, "base=e1") {
		t.Errorf("first steering request %q: want the playlist's pathway e1 and its base", first)
	}
	if !strings.HasPrefix(reload, strings.TrimPrefix(steer2.URL, "http://")+" ") {
		t.Errorf("steering reload %q: want it at RELOAD-URI (%s)", reload, steer2.URL)
	}
}

// FuzzSteeringTag: any playlist an edge sends is read without a panic; a steering tag found has
// a SERVER-URI and a pathway.
func FuzzSteeringTag(f *testing.F) {
	f.Add([]byte("#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://s/v1/steer/hls?path=/a&base=e1\",PATHWAY-ID=\"e1\"\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"x\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"))
	f.Add([]byte("#EXT-X-CONTENT-STEERING:PATHWAY-ID=\"a\",SERVER-URI=\""))
	f.Fuzz(func(t *testing.T, b []byte) {
		uri, pathway, ok := steeringTag(b)
		if ok && (uri == "" || pathway == "") {
			t.Fatalf("steering tag with SERVER-URI %q, pathway %q", uri, pathway)
		}
	})
}
