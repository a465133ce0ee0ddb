package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/duetcdn/duet/internal/route"
	"github.com/duetcdn/duet/internal/zipf"
	"github.com/duetcdn/duet/loadtest/report"
)

// zipfPath is the request path of catalogue object rank. Each object sits in its own folder
// so that steering's content key (the first two path segments) spreads them over the edges.
func zipfPath(size int64, rank int) string {
	return fmt.Sprintf("/lt/z%d-%05d/obj.bin", size, rank)
}

// catalogue builds the zipf scenario's objects: deterministic bytes per rank, cacheable for a
// day like VOD segments (without a lifetime the edges would revalidate every hit).
func catalogue(n int, size int64) []object {
	objs := make([]object, n)
	for k := range objs {
		b := make([]byte, size)
		r := rand.New(rand.NewPCG(uint64(k), uint64(size)))
		for i := 0; i < len(b); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < len(b); j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		objs[k] = object{path: zipfPath(size, k), contentType: "application/octet-stream", cacheControl: "public, max-age=86400", body: b}
	}
	return objs
}

// runZipf uploads the catalogue (what is not there yet) and requests it at a constant rate
// with Zipf popularity, through vegeta. Each object's edge comes from steering (one route per
// content key, cached).
func runZipf(ctx context.Context, e *env) error {
	if int64(e.cfg.Objects)*e.cfg.ObjectSize > 4<<30 {
		return fmt.Errorf("%w: catalogue of %d × %d bytes is over 4 GiB", ErrConfig, e.cfg.Objects, e.cfg.ObjectSize)
	}
	sampler, err := zipf.New(e.cfg.Objects, e.cfg.ZipfS)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	start := time.Now()
	put, err := e.upload(ctx, catalogue(e.cfg.Objects, e.cfg.ObjectSize))
	if err != nil {
		return err
	}
	e.event("upload", fmt.Sprintf("%d objects", e.cfg.Objects), fmt.Sprintf("%d new, in %s", put, time.Since(start).Round(time.Millisecond)))

	// The targeter runs on vegeta's workers concurrently: mu guards rng; routes guards itself.
	var mu sync.Mutex
	rng := e.rng(0)
	routes := &zipfRoutes{byDir: map[string]route.Answer{}, benched: map[string]time.Time{}}
	fallback := e.cluster.Regions[0].Edges
	targeter := func(t *vegeta.Target) error {
		mu.Lock()
		p := zipfPath(e.cfg.ObjectSize, sampler.Draw(rng))
		mu.Unlock()
		rt, ok := routes.get(path.Dir(p))
		if !ok {
			var err error
			if rt, err = e.router.route(ctx, p, 0); err == nil {
				routes.put(path.Dir(p), rt)
			} else if len(fallback) > 0 {
				// No steering answer: this request goes to the first edge rather than stopping
				// the attack (a targeter error ends it); it is not cached, so steering is asked
				// again next time.
				rt = route.Answer{Edges: []route.Edge{{Name: fallback[0].Name, URL: fallback[0].URL}}}
			} else {
				return err
			}
		}
		t.Method, t.URL = http.MethodGet, routes.first(rt, time.Now()).URL+p
		return nil
	}

	rate := vegeta.Rate{Freq: e.cfg.Rate, Per: time.Second}
	interval := time.Second / time.Duration(e.cfg.Rate)
	retrying := &zipfRetry{next: e.client.Transport, routes: routes}
	atk := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: retrying, Timeout: e.cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}),
		vegeta.MaxWorkers(uint64(min(4096, max(64, 4*e.cfg.Rate)))),
		vegeta.MaxBody(0), // count, do not keep, the bodies
	)
	d := e.cfg.Duration
	warm := time.Now().Add(d / 2)
	var hitsAfter, statusesAfter int64
	// t0 is taken just before the attack; vegeta schedules hit n at began + n/rate, so
	// t0 + n·interval is (within microseconds) the intended send time of result n.
	t0 := time.Now()
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	for res := range atk.Attack(targeter, rate, d, "zipf") {
		intended := t0.Add(time.Duration(res.Seq) * interval)
		if res.Timestamp.Before(intended) {
			intended = res.Timestamp
		}
		s := sample{intended: intended, end: res.End(), failed: res.Error != "", hit: cacheHit(res.Headers)}
		if s.failed {
			s.reason = vegetaReason(res)
		}
		if s.end.Sub(intended) < res.Latency {
			s.end = intended.Add(res.Latency)
		}
		if res.Headers != nil {
			if n := res.Headers.Get("Content-Length"); n != "" {
				_, _ = fmt.Sscan(n, &s.bytes) // a bad length counts no bytes
			}
		}
		if by := res.Headers.Get(servedByHeader); by != "" {
			s.edge, s.region = e.whois(route.Edge{URL: by}) // retried on another edge
		} else if u, err := url.Parse(res.URL); err == nil {
			s.edge, s.region = e.whois(route.Edge{URL: u.Scheme + "://" + u.Host})
		}
		e.rec.record(s)
		if res.Timestamp.After(warm) && s.hit >= 0 {
			statusesAfter++
			hitsAfter += int64(s.hit)
		}
	}
	after := "n/a"
	if statusesAfter > 0 {
		after = fmt.Sprintf("%.1f%%", 100*float64(hitsAfter)/float64(statusesAfter))
	}
	var head float64
	for k := range min(10, sampler.N()) {
		head += sampler.Prob(k)
	}
	if n := retrying.retried.Load(); n > 0 {
		e.event("retry", "zipf", fmt.Sprintf("%d requests failed on an edge and were sent to the route's next edge", n))
	}
	e.table(report.Table{Title: "Zipf catalogue", Header: []string{"objects", "object size", "s", "top-10 share", "hit ratio after warm-up (2nd half)"},
		Rows: [][]string{{fmt.Sprint(e.cfg.Objects), fmt.Sprint(e.cfg.ObjectSize), fmt.Sprint(e.cfg.ZipfS), fmt.Sprintf("%.1f%%", 100*head), after}}})
	return nil
}

// vegetaReason classes a failed vegeta result (vegeta keeps only the error's text).
func vegetaReason(res *vegeta.Result) string {
	switch {
	case res.Code >= 400:
		return fmt.Sprintf("http %d", res.Code)
	case strings.Contains(res.Error, "Timeout") || strings.Contains(res.Error, "deadline exceeded"):
		return "timeout"
	case strings.Contains(res.Error, "connection refused"):
		return "refused"
	case strings.Contains(res.Error, "reset") || strings.Contains(res.Error, "EOF"):
		return "reset"
	}
	return "other"
}

// benchFor is how long an edge that failed a request gets no new zipf requests (a player
// benches a failed pathway; 10 s is steering's reload interval).
const benchFor = 10 * time.Second

// servedByHeader names, on a response zipfRetry got from another edge than the target's, the
// edge that answered (the load generator's own header, never sent to an edge).
const servedByHeader = "X-Loadtest-Served-By"

// zipfRoutes are the zipf scenario's steering answers by content key, and the edges that
// recently failed a request.
type zipfRoutes struct {
	mu      sync.Mutex
	byDir   map[string]route.Answer
	benched map[string]time.Time // edge base URL → until when it gets no requests
}

func (z *zipfRoutes) get(dir string) (route.Answer, bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	rt, ok := z.byDir[dir]
	return rt, ok
}

func (z *zipfRoutes) put(dir string, rt route.Answer) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.byDir[dir] = rt
}

// first is the route's first edge that is not benched (its first edge when all are).
func (z *zipfRoutes) first(rt route.Answer, now time.Time) route.Edge {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, e := range rt.Edges {
		if now.After(z.benched[strings.TrimRight(e.URL, "/")]) {
			return e
		}
	}
	return rt.Edges[0]
}

// bench keeps edge (a base URL) out of new requests for benchFor.
func (z *zipfRoutes) bench(edge string, now time.Time) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.benched[edge] = now.Add(benchFor)
}

// zipfRetry sends a request that failed on its edge (no answer: refused, reset, timed out) to
// the next edges of its route, as a player moves to the next pathway, and benches the edge
// that failed. GETs only (zipf sends nothing else), which are safe to repeat.
type zipfRetry struct {
	next    http.RoundTripper
	routes  *zipfRoutes
	retried atomic.Int64
}

func (z *zipfRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := z.next.RoundTrip(req)
	if err == nil || req.Method != http.MethodGet || req.Context().Err() != nil {
		return resp, err
	}
	failed := req.URL.Scheme + "://" + req.URL.Host
	z.routes.bench(failed, time.Now())
	rt, ok := z.routes.get(path.Dir(req.URL.Path))
	if !ok {
		return resp, err
	}
	for _, e := range rt.Edges {
		base := strings.TrimRight(e.URL, "/")
		if base == failed {
			continue
		}
		r2 := req.Clone(req.Context())
		u, perr := url.Parse(base + req.URL.RequestURI())
		if perr != nil {
			continue
		}
		r2.URL, r2.Host = u, u.Host
		z.retried.Add(1)
		resp, err = z.next.RoundTrip(r2)
		if err == nil {
			resp.Header.Set(servedByHeader, base)
			return resp, nil
		}
		z.routes.bench(base, time.Now())
		if req.Context().Err() != nil {
			break
		}
	}
	return resp, err
}
