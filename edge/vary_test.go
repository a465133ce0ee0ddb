package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

// varyOrigin is an HTTP origin whose responses vary on Accept-Encoding while vary is set.
type varyOrigin struct {
	ts      *httptest.Server
	fetches atomic.Int32
	vary    atomic.Bool
	// cc is the Cache-Control of the responses with Vary; the ones without get max-age=600.
	cc string
}

func newVaryOrigin(t *testing.T, cc string) *varyOrigin {
	vo := &varyOrigin{cc: cc}
	vo.vary.Store(true)
	vo.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := vo.fetches.Add(1)
		if vo.vary.Load() {
			w.Header().Set("Cache-Control", vo.cc)
			w.Header().Set("Vary", "Accept-Encoding")
		} else {
			w.Header().Set("Cache-Control", "max-age=600")
		}
		fmt.Fprintf(w, "fetch %d enc=%s", n, r.Header.Get("Accept-Encoding"))
	}))
	t.Cleanup(vo.ts.Close)
	return vo
}

func (vo *varyOrigin) edge(t *testing.T) *harness {
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: vo.ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return startEdge(t, o, nil)
}

// TestVaryStopped: once the origin stops sending Vary, each viewer request costs one origin
// fetch at most, and the response is found again (a hit) under the URL's own key. On 718ea16
// the Vary index kept sending lookups to a variant key, the response without Vary was stored
// where none looked, and every request cost two origin fetches.
func TestVaryStopped(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"purge", "expiry"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			cc := "max-age=600"
			if how == "expiry" {
				cc = "max-age=0" // stored, stale at once: the next request refetches
			}
			vo := newVaryOrigin(t, cc)
			h := vo.edge(t)
			h.get("/v", "Accept-Encoding", "gzip")
			h.waitCached(variantKey("/v", "Accept-Encoding=gzip"))
			vo.vary.Store(false)
			if how == "purge" {
				if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/v"}}); err != nil {
					t.Fatal(err)
				}
			}
			before := vo.fetches.Load()
			resp, _ := h.get("/v", "Accept-Encoding", "gzip")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if n := vo.fetches.Load() - before; n != 1 {
				t.Fatalf("one viewer request cost %d origin fetches, want 1", n)
			}
			h.waitCached("/v")
			for _, enc := range []string{"gzip", "br", ""} {
				resp, _ := h.get("/v", "Accept-Encoding", enc)
				expect(t, resp, 200, "HIT")
			}
			if n := vo.fetches.Load() - before; n != 1 {
				t.Fatalf("origin fetched %d times, want 1", n)
			}
			if n := h.srv.store.varyLen(); n != 0 {
				t.Fatalf("Vary index holds %d URLs after the origin stopped varying, want 0", n)
			}
			if _, ok := h.srv.store.peek(variantKey("/v", "Accept-Encoding=gzip")); ok {
				t.Fatal("the old variant is still stored")
			}
		})
	}
}

// TestVaryIndexForgets: the Vary index holds a URL only while a variant of it is stored, so that
// it stays as small as the cache, and a URL whose variants are all gone is fetched once and hit.
func TestVaryIndexForgets(t *testing.T) {
	t.Parallel()
	vo := newVaryOrigin(t, "max-age=600")
	h := vo.edge(t)
	const urls = 20
	for i := range urls {
		for _, enc := range []string{"gzip", "br"} {
			h.get(fmt.Sprintf("/v%d", i), "Accept-Encoding", enc)
			h.waitCached(variantKey(fmt.Sprintf("/v%d", i), "Accept-Encoding="+enc))
		}
	}
	if n := h.srv.store.varyLen(); n != urls {
		t.Fatalf("Vary index holds %d URLs, want %d", n, urls)
	}
	// Purged, evicted (the disk tier's callback), removed one by one: every way out counts.
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/v0", "/v1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{Prefixes: []string{"/v1"}}); err != nil {
		t.Fatal(err) // /v1 and /v10 to /v19
	}
	for _, enc := range []string{"gzip", "br"} {
		k := variantKey("/v2", "Accept-Encoding="+enc)
		h.srv.store.disk.Delete(k)
		h.srv.store.evicted(k)
		h.srv.store.remove(variantKey("/v3", "Accept-Encoding="+enc))
	}
	// A fill's hold on its URL's entry ends just after its variant is stored (beginVary's done),
	// so on a loaded machine the last fills may still hold theirs for a moment.
	testenv.Eventually(t, 10*time.Second, func() bool { return h.srv.store.varyLen() == urls-14 },
		"the Vary index never came down to %d URLs after 14 of them lost their variants", urls-14)
	// One variant left: the URL stays indexed.
	h.srv.store.remove(variantKey("/v4", "Accept-Encoding=gzip"))
	if h.srv.store.varyOf("/v4") == nil {
		t.Fatal("/v4 still has a variant but left the index")
	}

	before := vo.fetches.Load()
	h.get("/v0", "Accept-Encoding", "gzip")
	h.waitCached(variantKey("/v0", "Accept-Encoding=gzip"))
	resp, _ := h.get("/v0", "Accept-Encoding", "gzip")
	expect(t, resp, 200, "HIT")
	if n := vo.fetches.Load() - before; n != 1 {
		t.Fatalf("refill after purge cost %d fetches, want 1", n)
	}

	// A response with Vary that may not be stored leaves nothing behind.
	vo2 := newVaryOrigin(t, "private")
	h2 := vo2.edge(t)
	for i := range 5 {
		h2.get(fmt.Sprintf("/p%d", i), "Accept-Encoding", "gzip")
	}
	if n := h2.srv.store.varyLen(); n != 0 {
		t.Fatalf("Vary index holds %d URLs none of which is stored", n)
	}
}

// TestTagsReplacedOnRefill: a new version of an object that no longer carries a surrogate key
// is not reached by a purge of that key. On 718ea16 the tag index kept the old version's tags,
// and the purge removed the new version.
func TestTagsReplacedOnRefill(t *testing.T) {
	t.Parallel()
	var tagged atomic.Bool
	tagged.Store(true)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tagged.Load() {
			w.Header().Set("Surrogate-Key", "old-tag")
			w.Header().Set("Cache-Control", "max-age=0") // stored, stale at once
		} else {
			w.Header().Set("Cache-Control", "max-age=600")
		}
		fmt.Fprint(w, "body")
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	h.get("/a")
	h.waitCached("/a")
	tagged.Store(false)
	h.get("/a") // stale: refetched, stored without the tag
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, _ := h.get("/a")
		return resp.Header.Get("X-Cache") == "HIT"
	}, "the refetched version is never a hit")
	res, err := h.srv.Purge(t.Context(), purgereq.Target{Tags: []string{"old-tag"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 0 {
		t.Fatalf("a purge of a tag the stored version does not carry removed %d entries", res.Entries)
	}
	resp, _ := h.get("/a")
	expect(t, resp, 200, "HIT")
}

// TestVaryBackgroundRevalidation: a stale-while-revalidate hit on a variant refreshes that
// variant, asking the origin with the viewer's Accept-Encoding. On 718ea16 the background
// fetch asked for the identity coding, stored it, and dropped the viewer's variant.
func TestVaryBackgroundRevalidation(t *testing.T) {
	t.Parallel()
	var fetches atomic.Int32
	var mu sync.Mutex
	var encs []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := fetches.Add(1)
		mu.Lock()
		encs = append(encs, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=0, stale-while-revalidate=600")
		w.Header().Set("Vary", "Accept-Encoding")
		fmt.Fprintf(w, "fetch %d enc=%s", n, r.Header.Get("Accept-Encoding"))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	gz := variantKey("/r", "Accept-Encoding=gzip")
	h.get("/r", "Accept-Encoding", "gzip")
	h.waitCached(gz)
	resp, _ := h.get("/r", "Accept-Encoding", "gzip") // stale: served, refreshed in the background
	expect(t, resp, 200, "STALE")
	testenv.Eventually(t, 10*time.Second, func() bool { return fetches.Load() == 2 }, "no background fetch")
	h.srv.fl.wait(t.Context())
	mu.Lock()
	defer mu.Unlock()
	if encs[1] != "gzip" {
		t.Fatalf("background revalidation asked for Accept-Encoding %q, want gzip", encs[1])
	}
	m, ok := h.srv.store.peek(gz)
	if !ok {
		t.Fatal("the gzip variant is gone after its background revalidation")
	}
	if m.ResponseTime.IsZero() {
		t.Fatal("no response time")
	}
}

// TestVaryStar: a response with Vary: * is never stored nor indexed; each request asks the origin.
func TestVaryStar(t *testing.T) {
	t.Parallel()
	var fetches atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "*")
		fmt.Fprint(w, "any")
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	for range 3 {
		resp, b := h.get("/s", "Accept-Encoding", "gzip")
		if resp.StatusCode != 200 || string(b) != "any" || resp.Header.Get("X-Cache") == "HIT" {
			t.Fatalf("Vary: * answered %d %q %s", resp.StatusCode, b, resp.Header.Get("X-Cache"))
		}
	}
	if n := fetches.Load(); n != 3 {
		t.Fatalf("%d origin fetches for 3 requests, want 3", n)
	}
	if n := h.srv.store.varyLen(); n != 0 {
		t.Fatalf("Vary index holds %d URLs", n)
	}
}

// TestVaryKeptAfterUnsharedAnswer: an answer that cannot be stored (here a 401 to one viewer's
// bad credentials, without Vary) says nothing about the URL's variants: they stay cached and
// the next anonymous viewer is a hit. Dropping them would let any viewer empty the cache of a
// URL with a bogus Authorization header.
func TestVaryKeptAfterUnsharedAnswer(t *testing.T) {
	t.Parallel()
	var fetches atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if r.Header.Get("Authorization") != "" {
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Encoding")
		fmt.Fprintf(w, "enc=%s", r.Header.Get("Accept-Encoding"))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	h.get("/v", "Accept-Encoding", "gzip")
	h.waitCached(variantKey("/v", "Accept-Encoding=gzip"))
	if resp, _ := h.get("/v", "Accept-Encoding", "gzip", "Authorization", "Bearer bogus"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("request with bad credentials: status %d, want the origin's 401", resp.StatusCode)
	}
	before := fetches.Load()
	resp, body := h.get("/v", "Accept-Encoding", "gzip")
	if got := resp.Header.Get("X-Cache"); got != "HIT" || fetches.Load() != before {
		t.Fatalf("anonymous viewer after the 401: X-Cache %q, %d origin fetches (body %q); want a hit", got, fetches.Load()-before, body)
	}
}
