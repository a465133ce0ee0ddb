package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/duetcdn/duet/edge/announce"
	"github.com/duetcdn/duet/edge/peers"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/rendezvous"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/internal/zipf"
	"github.com/duetcdn/duet/origin"
)

// originLog is an HTTP origin that serves /z/<n> (a few KiB, deterministic, cacheable for an
// hour) and records every request it receives: the count per path and the arrival times.
type originLog struct {
	mu    sync.Mutex
	count map[string]int
	times []time.Time
	url   string
	conns atomic.Int64 // connections the origin accepted
}

func newOriginLog(t testing.TB) *originLog { return newOriginLogBody(t, zBody) }

// newOriginLogBody is newOriginLog serving body(n) as /z/<n>.
func newOriginLogBody(t testing.TB, zBody func(int) []byte) *originLog {
	ol := &originLog{count: map[string]int{}}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ol.mu.Lock()
		ol.count[r.URL.Path]++
		ol.times = append(ol.times, time.Now())
		ol.mu.Unlock()
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/z/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		body := zBody(n)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", fmt.Sprintf(`"z%d"`, n))
		w.Header().Set("Surrogate-Key", "z all-z")
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(body)))
	}))
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			ol.conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	ol.url = ts.URL
	return ol
}

// zBody is object n's bytes: 1 to 4 KiB, starting with its number.
func zBody(n int) []byte {
	b := randomBytes(1024+(n%4)*1024, byte(n))
	copy(b, strconv.Itoa(n)+":")
	return b
}

func (ol *originLog) fetches() (total, distinct int, per map[string]int) {
	ol.mu.Lock()
	defer ol.mu.Unlock()
	per = make(map[string]int, len(ol.count))
	for p, c := range ol.count {
		total += c
		per[p] = c
	}
	return total, len(ol.count), per
}

func (ol *originLog) httpOrigin(t testing.TB) *origin.HTTP {
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ol.url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

const testPeerSecret = "region-peer-secret-0123456789"

// region is edges of one region on loopback that find each other through their heartbeats on
// a real NATS server, as `duet edge` does.
type region struct {
	edges []*harness
	names []string
	// silence stops an edge's heartbeats.
	silence []func()
}

// annSource lets the announcer read a test edge.
type annSource struct{ s *Server }

func (a annSource) Stats() announce.Stats { return announce.Stats{Serving: a.s.Ready()} }

// rewritingOrigin gives the edge started with it a manifest rewriter (startEdgeClock).
type rewritingOrigin struct {
	Origin
	rw ManifestRewriter
}

func startRegion(t *testing.T, n int, o Origin, mutate func(*Config), rewriter ...func(name string) ManifestRewriter) *region {
	t.Helper()
	ns := testenv.NATS(t)
	r := &region{}
	for i := range n {
		name := "e" + strconv.Itoa(i+1)
		eo := o
		if len(rewriter) > 0 {
			eo = rewritingOrigin{Origin: o, rw: rewriter[0](name)}
		}
		h := startEdge(t, eo, func(c *Config) {
			c.Name, c.Region = name, "r1"
			c.PeerFill = PeerFillConfig{Enabled: true, Secret: testPeerSecret, Timeout: time.Second, Cooldown: 3 * time.Second}
			if mutate != nil {
				mutate(c)
			}
		})
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ps := h.srv.Peers()
		if _, err := nc.Subscribe(ps.Subject(), func(m *nats.Msg) { _ = ps.HandleHeartbeat(m.Data, time.Now()) }); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = announce.Run(ctx, nc, announce.Config{Edge: name, Region: "r1", URL: h.url, Interval: 200 * time.Millisecond},
				annSource{h.srv}, slog.New(slog.DiscardHandler))
		}()
		var once sync.Once
		silence := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(silence)
		r.silence = append(r.silence, silence)
		r.edges = append(r.edges, h)
		r.names = append(r.names, name)
	}
	for _, h := range r.edges {
		testenv.Eventually(t, 10*time.Second, func() bool { return len(h.srv.Peers().Alive(time.Now())) == n-1 },
			"%s does not see its %d peers", h.cfg.Name, n-1)
	}
	return r
}

// owner is the edge among names that owns key (what edge/peers computes).
func owner(key string, names []string) string {
	best, who := -1.0, ""
	for _, n := range names {
		if sc := rendezvous.Score(rendezvous.Hash(key), rendezvous.Hash(n), 0, false); sc > best {
			best, who = sc, n
		}
	}
	return who
}

// TestPeerFillZipfRegion is issue 15's acceptance 1: a Zipf load over 10,000 objects through 4
// edges of one region costs the origin at most 1.05 fetches per distinct object (counted at the
// origin; without peer fill up to 4); then one edge is stopped mid-run: no viewer sees an
// error, and each of its objects is fetched at most once by its new owner.
func TestPeerFillZipfRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("a load of 24,000 requests")
	}
	ol := newOriginLog(t)
	reg := startRegion(t, 4, ol.httpOrigin(t), nil)
	z, err := zipf.New(10_000, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	const workers = 24
	var live atomic.Pointer[[]*harness]
	all := slices.Clone(reg.edges)
	live.Store(&all)
	var inflight [4]atomic.Int64
	var errs, done atomic.Int64
	var firstErr atomic.Value
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	run := func(requests int, seed uint64) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				for range requests / workers {
					n := z.Draw(rng)
					edges := *live.Load()
					i := rng.IntN(len(edges))
					h := edges[i]
					idx := slices.Index(reg.edges, h)
					inflight[idx].Add(1)
					if *live.Load() == nil || !slices.Contains(*live.Load(), h) {
						inflight[idx].Add(-1) // taken out meanwhile: as steering would, ask another
						continue
					}
					resp, err := client.Get(h.url + "/z/" + strconv.Itoa(n))
					var body []byte
					if err == nil {
						body, err = io.ReadAll(resp.Body)
						_ = resp.Body.Close()
						if err == nil && (resp.StatusCode != 200 || string(body) != string(zBody(n))) {
							err = fmt.Errorf("%s /z/%d: %d %q (%d bytes)", h.cfg.Name, n, resp.StatusCode, resp.Header.Get("Cache-Status"), len(body))
						}
					}
					inflight[idx].Add(-1)
					done.Add(1)
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				}
			}()
		}
		wg.Wait()
	}

	run(16_000, 1)
	total, distinct, _ := ol.fetches()
	t.Logf("4 edges, 16,000 requests: %d origin fetches for %d distinct objects (%.3f per object)", total, distinct, float64(total)/float64(distinct))
	if errs.Load() > 0 {
		t.Fatalf("%d viewer errors, first: %v", errs.Load(), firstErr.Load())
	}
	if ratio := float64(total) / float64(distinct); ratio > 1.05 {
		t.Fatalf("origin fetches per distinct object %.3f > 1.05", ratio)
	}

	// Mid-run, the last edge leaves: steering stops sending it viewers, then it stops.
	before := map[string]int{}
	for _, h := range reg.edges {
		h.origin.mu.Lock()
		for p, c := range h.origin.count {
			before[h.cfg.Name+p] = c
		}
		h.origin.mu.Unlock()
	}
	victim := reg.edges[3]
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		// Mid-run: once a quarter of the second half is done.
		for deadline := time.Now().Add(time.Minute); done.Load() < 16_000+2_000 && time.Now().Before(deadline); {
			<-tick.C
		}
		rest := slices.Clone(reg.edges[:3])
		live.Store(&rest)
		// The viewers it still serves finish; no new one comes.
		for deadline := time.Now().Add(10 * time.Second); inflight[3].Load() > 0 && time.Now().Before(deadline); {
			<-tick.C
		}
		victim.stop()
	}()
	run(8_000, 2)
	<-killed
	if errs.Load() > 0 {
		t.Fatalf("%d viewer errors after an edge left, first: %v", errs.Load(), firstErr.Load())
	}
	total2, distinct2, _ := ol.fetches()
	t.Logf("after the kill: %d origin fetches for %d distinct objects (%.3f per object)", total2, distinct2, float64(total2)/float64(distinct2))
	survivors := reg.names[:3]
	moved, refetched := 0, 0
	for _, h := range reg.edges[:3] {
		h.origin.mu.Lock()
		for p, c := range h.origin.count {
			if owner(p, reg.names) != victim.cfg.Name || owner(p, survivors) != h.cfg.Name {
				continue
			}
			moved++
			if c > 1 {
				t.Errorf("%s, the new owner of %s, fetched it %d times from the origin", h.cfg.Name, p, c)
			}
			if c > before[h.cfg.Name+p] {
				refetched++
			}
		}
		h.origin.mu.Unlock()
	}
	t.Logf("%d objects of the stopped edge fetched by their new owners (%d of them after the stop)", moved, refetched)
	if refetched == 0 {
		t.Fatal("no object of the stopped edge was fetched by its new owner: the test did not exercise the kill")
	}
}

// TestPeerFillSlicesOwnedPerSlice: a large object, cached as slices, is read whole through each
// of 3 edges: every slice is fetched from the origin once for the region, by its own owner, so
// the slices spread over the edges.
func TestPeerFillSlicesOwnedPerSlice(t *testing.T) {
	const size, slice = 1 << 20, 64 << 10
	big := randomBytes(size, 42)
	var mu sync.Mutex
	ranges := map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges[r.Header.Get("Range")]++
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", `"big"`)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(big)))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	reg := startRegion(t, 3, o, func(c *Config) { c.Cache.SliceBytes, c.Cache.SliceAbove = slice, 2*slice })
	for _, h := range reg.edges {
		resp, body := h.get("/big.bin")
		if resp.StatusCode != 200 || string(body) != string(big) {
			t.Fatalf("%s: %d, %d bytes", h.cfg.Name, resp.StatusCode, len(body))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	fetchedBy := map[string]int{}
	for i := range size / slice {
		r := fmt.Sprintf("bytes=%d-%d", i*slice, (i+1)*slice-1)
		if ranges[r] != 1 {
			t.Errorf("slice %d (%s) fetched %d times from the origin", i, r, ranges[r])
		}
	}
	for _, h := range reg.edges {
		h.origin.mu.Lock()
		for _, rq := range h.origin.reqs {
			if rq.Range != "" {
				fetchedBy[h.cfg.Name]++
			}
		}
		h.origin.mu.Unlock()
	}
	for _, h := range reg.edges {
		if failed := testutil.ToFloat64(h.srv.peer.fetches.WithLabelValues("failed")); failed > 0 {
			t.Errorf("%s: %v peer fetches failed (peers waiting for each other?)", h.cfg.Name, failed)
		}
	}
	if ranges[""] != 1 {
		t.Errorf("the whole object was asked for %d times, want once for the region (its size says: slices)", ranges[""])
	}
	t.Logf("slices fetched from the origin per edge: %v", fetchedBy)
	if len(fetchedBy) < 2 {
		t.Errorf("the slices were all fetched by one edge (%v): not owned per slice", fetchedBy)
	}
}

// TestPeerFillGuards: a forged peer header is refused with a reason; a signed peer request is
// answered by the edge that gets it, never sent on to the owner; an owner that hangs costs one
// timeout, then misses go to the origin at once; an owner that is gone is skipped at once.
func TestPeerFillGuards(t *testing.T) {
	ol := newOriginLog(t)
	reg := startRegion(t, 2, ol.httpOrigin(t), func(c *Config) { c.PeerFill.Timeout = 300 * time.Millisecond })
	e1, e2 := reg.edges[0], reg.edges[1]
	// Keys e2 owns.
	var keys []string
	for n := 0; len(keys) < 4; n++ {
		if k := "/z/" + strconv.Itoa(n); owner(k, reg.names) == "e2" {
			keys = append(keys, k)
		}
	}

	resp, body := e1.get(keys[0], peers.Header, "v1 1 e2 "+strings.Repeat("0", 64))
	if resp.StatusCode != 403 || !strings.Contains(string(body), "peer request refused") {
		t.Fatalf("forged peer header: %d %q", resp.StatusCode, body)
	}
	sig := peers.Sign([]byte(testPeerSecret), "e2", time.Now(), peers.Request{Method: "GET", URI: keys[0]})
	resp, _ = e1.get(keys[0], peers.Header, sig)
	if resp.StatusCode != 200 || e1.origin.fetches(keys[0]) != 1 || e2.origin.fetches(keys[0]) != 0 {
		t.Fatalf("a signed peer request to the non-owner: %d, origin fetches e1 %d e2 %d (want 1, 0: never forwarded)",
			resp.StatusCode, e1.origin.fetches(keys[0]), e2.origin.fetches(keys[0]))
	}
	// The normal way: e1 asks e2, which fetches.
	resp, _ = e1.get(keys[1])
	if resp.StatusCode != 200 || e1.origin.fetches(keys[1]) != 0 || e2.origin.fetches(keys[1]) != 1 {
		t.Fatalf("peer fill: %d, origin fetches e1 %d e2 %d (want 0, 1)", resp.StatusCode, e1.origin.fetches(keys[1]), e2.origin.fetches(keys[1]))
	}

	// e2 hangs: it stops beating, and a listener that accepts and never answers takes its URL.
	reg.silence[1]()
	testenv.Eventually(t, 5*time.Second, func() bool { return len(e1.srv.Peers().Alive(time.Now())) == 0 }, "e2's last heartbeat (draining) not seen")
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hang.Close() })
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	e1.srv.Peers().Observe(bus.Heartbeat{Edge: "e2", Region: "r1", URL: "http://" + hang.Addr().String(), State: bus.StateServing}, time.Now())
	start := time.Now()
	resp, _ = e1.get(keys[2])
	if resp.StatusCode != 200 || e1.origin.fetches(keys[2]) != 1 {
		t.Fatalf("hanging owner: %d, e1 origin fetches %d", resp.StatusCode, e1.origin.fetches(keys[2]))
	}
	t.Logf("a miss with a hanging owner took %v (peer_fill.timeout 300ms)", time.Since(start))
	if len(e1.srv.Peers().Alive(time.Now())) != 0 || testutil.ToFloat64(e1.srv.peer.fetches.WithLabelValues("failed")) != 1 {
		t.Fatal("the hanging owner was not asked, or is still used")
	}
	// e2 is stopped: e1 serves e2's keys from the origin, without error.
	e2.stop()
	for _, k := range keys[3:] {
		if resp, body := e1.get(k); resp.StatusCode != 200 || string(body) != string(zBody(mustAtoi(t, strings.TrimPrefix(k, "/z/")))) {
			t.Fatalf("%s with its owner stopped: %d", k, resp.StatusCode)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// edgeStamp is a manifest rewriter that marks a playlist with its edge's name, as content
// steering injects the edge's pathway; a playlist already marked is kept (already steered).
type edgeStamp string

func (e edgeStamp) Rewrite(_ string, body []byte) ([]byte, bool) {
	if strings.Contains(string(body), "#X-EDGE:") {
		return nil, false
	}
	return append(append([]byte(nil), body...), "#X-EDGE:"+string(e)+"\n"...), true
}

// TestPeerFillLeavesRewrittenManifestsToEachEdge: with content steering injected, every edge
// of a region serves a playlist rewritten for itself (its pathway), never its owner's copy,
// while media still comes from the owner.
func TestPeerFillLeavesRewrittenManifestsToEachEdge(t *testing.T) {
	var fetches sync.Map
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := fetches.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		if strings.HasSuffix(r.URL.Path, ".m3u8") {
			_, _ = io.WriteString(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nv.m3u8\n")
			return
		}
		_, _ = w.Write(zBody(1))
	}))
	t.Cleanup(o.Close)
	ho, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: o.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := startRegion(t, 2, ho, nil, func(name string) ManifestRewriter { return edgeStamp(name) })
	for _, p := range []string{"/s/master.m3u8", "/s/seg1.ts"} {
		for i, h := range r.edges {
			resp, err := h.client.Get(h.url + p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d", r.names[i], p, resp.StatusCode)
			}
			if want := "#X-EDGE:" + r.names[i] + "\n"; strings.HasSuffix(p, ".m3u8") && !strings.HasSuffix(string(b), want) {
				t.Errorf("%s serves %s rewritten for another edge: %q", r.names[i], p, b)
			}
		}
	}
	n, _ := fetches.Load("/s/seg1.ts")
	if got := n.(*atomic.Int64).Load(); got != 1 {
		t.Errorf("the segment was fetched %d times from the origin: peer fill is off for media too", got)
	}
}
