package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/origin"
)

// validatingOrigin serves "<path> v<N>" with an ETag per version and a long max-age, answers
// If-None-Match with 304, and counts the conditional requests it receives per path.
type validatingOrigin struct {
	version atomic.Int32
	mu      sync.Mutex
	conds   map[string]int // guarded by mu
	o       *origin.HTTP
}

func newValidatingOrigin(t testing.TB) *validatingOrigin {
	vo := &validatingOrigin{conds: map[string]int{}}
	vo.version.Store(1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		etag := fmt.Sprintf(`"v%d"`, vo.version.Load())
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", etag)
		if inm := r.Header.Get("If-None-Match"); inm != "" {
			vo.mu.Lock()
			vo.conds[r.URL.Path]++
			vo.mu.Unlock()
			if inm == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		fmt.Fprintf(w, "%s v%d", r.URL.Path, vo.version.Load())
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	vo.o = o
	return vo
}

func (vo *validatingOrigin) conditionals(path string) int {
	vo.mu.Lock()
	defer vo.mu.Unlock()
	return vo.conds[path]
}

// TestUntrustedCacheAsksOncePerBound: while the edge cannot prove it has every purge, each
// entry costs the origin one conditional request, then none until the staleness bound has
// passed since the origin confirmed it; concurrent hits of an entry due for revalidation share
// one request. Soft and hard purges still take effect at once, and entries confirmed before
// trust was lost are asked about again.
func TestUntrustedCacheAsksOncePerBound(t *testing.T) {
	t.Parallel()
	vo := newValidatingOrigin(t)
	clk := newClock()
	h := startEdgeClock(t, vo.o, testConfig(t), clk.Now)
	const bound = 10 * time.Second
	h.srv.SetStalenessBound(bound)
	getBody := func(path, want, xcache string) {
		t.Helper()
		resp, b := h.get(path)
		expect(t, resp, 200, xcache)
		if string(b) != want {
			t.Fatalf("%s: %q, want %q", path, b, want)
		}
	}
	const p = "/hot/seg1.ts"
	getBody(p, p+" v1", "MISS")
	h.waitCached(p)
	getBody(p, p+" v1", "HIT")

	clk.Advance(time.Second)
	h.srv.SetCacheTrusted(false)
	clk.Advance(time.Millisecond)
	// Confirmed before trust was lost: asked about once.
	getBody(p, p+" v1", "REVALIDATED")
	for range 20 {
		getBody(p, p+" v1", "HIT")
	}
	clk.Advance(bound - time.Second)
	getBody(p, p+" v1", "HIT")
	if n := vo.conditionals(p); n != 1 {
		t.Fatalf("%d conditional requests within one staleness bound, want 1", n)
	}

	// Past the bound: the next hits, however many at once, send one conditional request.
	clk.Advance(2 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b := h.get(p)
			mu.Lock()
			got[fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("X-Cache"), b)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if n := vo.conditionals(p); n != 2 {
		t.Fatalf("32 concurrent hits past the bound sent %d conditional requests in all, want 2: %v", n, got)
	}
	for k := range got {
		if !strings.HasPrefix(k, "200 ") || !strings.HasSuffix(k, p+" v1") {
			t.Fatalf("concurrent answers: %v", got)
		}
	}

	// A soft purge makes the entry stale within the bound; a hard purge removes it.
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{p}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	getBody(p, p+" v1", "REVALIDATED")
	vo.version.Store(2)
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{p}}); err != nil {
		t.Fatal(err)
	}
	getBody(p, p+" v2", "MISS")
	h.waitCached(p)
	getBody(p, p+" v2", "HIT") // filled since trust was lost: confirmed

	// Trust comes back and goes again: what was confirmed before is asked about again.
	h.srv.SetCacheTrusted(true)
	getBody(p, p+" v2", "HIT")
	clk.Advance(time.Second)
	h.srv.SetCacheTrusted(false)
	clk.Advance(time.Millisecond)
	before := vo.conditionals(p)
	getBody(p, p+" v2", "REVALIDATED")
	getBody(p, p+" v2", "HIT")
	if n := vo.conditionals(p) - before; n != 1 {
		t.Fatalf("after trust was lost again: %d conditional requests, want 1", n)
	}

	// Without a staleness bound (an edge library user that never set one), every hit asks.
	h.srv.SetStalenessBound(0)
	getBody(p, p+" v2", "REVALIDATED")
	getBody(p, p+" v2", "REVALIDATED")
}
