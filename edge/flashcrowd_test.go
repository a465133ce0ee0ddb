package edge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/origin"
)

// flashObject is the flash crowd's object: a 2 MiB segment.
const flashObject = 2 << 20

// slowOrigin serves flashObject bytes after ttfb, and counts the requests that reach it.
type slowOrigin struct {
	body  []byte
	ttfb  time.Duration
	mu    sync.Mutex
	count map[string]int // path → requests; guarded by mu
}

func newSlowOrigin(t testing.TB, ttfb time.Duration) (*slowOrigin, *origin.HTTP) {
	t.Helper()
	so := &slowOrigin{body: randomBytes(flashObject, 42), ttfb: ttfb, count: map[string]int{}}
	ts := httptest.NewServer(so)
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return so, o
}

func (so *slowOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	so.mu.Lock()
	so.count[r.URL.Path]++
	so.mu.Unlock()
	if r.URL.Path == "/warm" {
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write([]byte("warm"))
		return
	}
	time.Sleep(so.ttfb) //nolint:forbidigo // the origin's time to first byte
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Header().Set("Content-Length", strconv.Itoa(len(so.body)))
	_, _ = w.Write(so.body)
}

func (so *slowOrigin) requests(path string) int {
	so.mu.Lock()
	defer so.mu.Unlock()
	return so.count[path]
}

// crowdResult is what one flash crowd measured.
type crowdResult struct {
	loneTTFB, loneTotal time.Duration   // one viewer alone on a cold object
	loneHit             time.Duration   // the same viewer again, now a hit (to the last byte)
	ttfb, total         []time.Duration // each crowd viewer, from the common start; sorted
	hitTotal            []time.Duration // the same crowd again on the now cached object; sorted
	originRequests      int             // requests for the crowd's object that reached the origin
	// release is, for each crowd viewer, how long after the object became servable (or after
	// its request reached the handler, if later) the edge had its answer ready: the cache
	// lock's own delay, measured inside the server; hitRelease the same for the hit run.
	release, hitRelease []time.Duration
}

// handlerLog records when the handler took and answered each request for one path.
type handlerLog struct {
	mu         sync.Mutex
	path       string
	enter, out []time.Time
}

func (l *handlerLog) reset(path string) {
	l.mu.Lock()
	l.path, l.enter, l.out = path, nil, nil
	l.mu.Unlock()
}

func (l *handlerLog) wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		in := time.Now()
		next(ctx)
		out := time.Now()
		l.mu.Lock()
		if string(ctx.Path()) == l.path {
			l.enter, l.out = append(l.enter, in), append(l.out, out)
		}
		l.mu.Unlock()
	}
}

// release: each request's answer time minus max(its arrival, the first answer), sorted.
func (l *handlerLog) release() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.out) == 0 {
		return nil
	}
	first := slices.MinFunc(l.out, func(a, b time.Time) int { return a.Compare(b) })
	d := make([]time.Duration, len(l.out))
	for i := range l.out {
		from := l.enter[i]
		if first.After(from) {
			from = first
		}
		d[i] = l.out[i].Sub(from)
	}
	slices.Sort(d)
	return d
}

// added is what the cold crowd cost its viewers beyond the origin's own delay, at quantile p:
// (cold crowd − the same crowd on a hit) − (lone cold − lone hit). The crowd's hit run carries
// the same loopback transfer (n × 2 MiB on a small machine takes seconds), so the difference
// is the cache lock: the waiting, and the streaming from a fill rather than from a tier.
func (r crowdResult) added(p float64) time.Duration {
	return (pct(r.total, p) - pct(r.hitTotal, p)) - (r.loneTotal - r.loneHit)
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// flashCrowd runs a lone cold fetch, then n viewers at once on another cold object, over real
// loopback HTTP with one warm connection per viewer, and checks every body byte.
func flashCrowd(tb testing.TB, n int, ttfb time.Duration, path string) crowdResult {
	tb.Helper()
	so, o := newSlowOrigin(tb, ttfb)
	cfg := testConfig(tb)
	cfg.Memory.MaxObjectBytes = 4 << 20
	var handled handlerLog
	h := startEdgeConfig(tb, o, cfg, handled.wrap)
	client := &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: n, MaxIdleConns: n},
		Timeout:   60 * time.Second,
	}
	tb.Cleanup(client.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// fetch GETs path and checks the body against the origin's bytes, chunk by chunk.
	fetch := func(path string, start time.Time) (ttfb, total time.Duration, err error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		ttfb = time.Since(start)
		if path == "/warm" {
			_, err = io.Copy(io.Discard, resp.Body)
			return ttfb, time.Since(start), err
		}
		var buf [64 << 10]byte
		off := 0
		for {
			m, rerr := resp.Body.Read(buf[:])
			if m > 0 {
				if off+m > len(so.body) || !bytes.Equal(buf[:m], so.body[off:off+m]) {
					return 0, 0, fmt.Errorf("%s: wrong bytes at %d", path, off)
				}
				off += m
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return 0, 0, rerr
			}
		}
		if off != len(so.body) || resp.StatusCode != 200 {
			return 0, 0, fmt.Errorf("%s: %d, %d of %d bytes", path, resp.StatusCode, off, len(so.body))
		}
		return ttfb, time.Since(start), nil
	}
	// run starts n viewers on path at once (after every one is ready) and collects their times.
	run := func(n int, path string) (ttfb, total []time.Duration) {
		var wg sync.WaitGroup
		var failed atomic.Value
		ttfb, total = make([]time.Duration, n), make([]time.Duration, n)
		gate := make(chan struct{})
		var start time.Time
		for i := range n {
			wg.Go(func() {
				<-gate
				a, b, err := fetch(path, start)
				if err != nil {
					failed.Store(err)
				}
				ttfb[i], total[i] = a, b
			})
		}
		start = time.Now()
		close(gate)
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			tb.Fatalf("flash crowd on %s: %v", path, err)
		}
		slices.Sort(ttfb)
		slices.Sort(total)
		return ttfb, total
	}
	run(n, "/warm") // opens n connections, left idle for the crowd
	var res crowdResult
	lt, lT := run(1, path+"-lone")
	res.loneTTFB, res.loneTotal = lt[0], lT[0]
	_, lT = run(1, path+"-lone")
	res.loneHit = lT[0]
	handled.reset(path)
	res.ttfb, res.total = run(n, path)
	res.release = handled.release()
	res.originRequests = so.requests(path)
	handled.reset(path)
	_, res.hitTotal = run(n, path)
	res.hitRelease = handled.release()
	if ctx.Err() != nil {
		tb.Fatal("flash crowd ran out of time")
	}
	return res
}

// TestFlashCrowd: a thousand viewers (two hundred under the race detector) on one cold 2 MiB
// object cause exactly one origin fetch and all get the right bytes.
func TestFlashCrowd(t *testing.T) {
	n := 1000
	if raceEnabled || testing.Short() {
		n = 200
	}
	res := flashCrowd(t, n, 50*time.Millisecond, "/flash/test")
	if res.originRequests != 1 {
		t.Fatalf("%d viewers on a cold object made %d origin fetches, want 1", n, res.originRequests)
	}
	t.Logf("lone cold %v (ttfb %v), lone hit %v; %d viewers cold: ttfb p50 %v p99 %v, complete p50 %v p99 %v; "+
		"same crowd on a hit: complete p50 %v p99 %v; added p50 %v p99 %v", res.loneTotal, res.loneTTFB, res.loneHit, n,
		pct(res.ttfb, .5), pct(res.ttfb, .99), pct(res.total, .5), pct(res.total, .99),
		pct(res.hitTotal, .5), pct(res.hitTotal, .99), res.added(.5), res.added(.99))
	t.Logf("release after the object became servable: cold p50 %v p99 %v max %v; hit p50 %v p99 %v",
		pct(res.release, .5), pct(res.release, .99), pct(res.release, 1), pct(res.hitRelease, .5), pct(res.hitRelease, .99))
}

// BenchmarkFlashCrowd reports, for 1,000 viewers arriving together on a cold 2 MiB object
// behind a 50 ms origin, the origin fetches, the crowd's completion times, and the latency the
// cache lock added (see crowdResult.added).
func BenchmarkFlashCrowd(b *testing.B) {
	const n = 1000
	var i int
	for b.Loop() {
		i++
		res := flashCrowd(b, n, 50*time.Millisecond, "/flash/"+strconv.Itoa(i))
		if res.originRequests != 1 {
			b.Fatalf("%d origin fetches, want 1", res.originRequests)
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(float64(res.originRequests), "origin_fetches")
		b.ReportMetric(ms(res.loneTTFB), "lone_ttfb_ms")
		b.ReportMetric(ms(res.loneTotal), "lone_cold_ms")
		b.ReportMetric(ms(pct(res.total, .5)), "crowd_cold_p50_ms")
		b.ReportMetric(ms(pct(res.total, .99)), "crowd_cold_p99_ms")
		b.ReportMetric(ms(pct(res.hitTotal, .99)), "crowd_hit_p99_ms")
		b.ReportMetric(ms(pct(res.release, .5)), "release_p50_ms")
		b.ReportMetric(ms(pct(res.release, .99)), "release_p99_ms")
		b.ReportMetric(ms(pct(res.hitRelease, .99)), "hit_release_p99_ms")
		b.ReportMetric(ms(res.added(.5)), "added_p50_ms")
		b.ReportMetric(ms(res.added(.99)), "added_p99_ms")
	}
}
