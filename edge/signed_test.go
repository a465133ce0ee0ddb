package edge

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/signedurl"
)

var (
	testKeyOld = signedurl.Key{ID: "k2026a", Secret: strings.Repeat("o", 32)}
	testKeyNew = signedurl.Key{ID: "k2026b", Secret: strings.Repeat("n", 40)}
)

// mint signs a token with one of keys.
func mint(t testing.TB, k signedurl.Key, prefix string, expires time.Time, client netip.Addr) string {
	t.Helper()
	ks, err := signedurl.NewKeys([]signedurl.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ks.Sign(signedurl.Claims{KeyID: k.ID, Expires: expires, Prefix: prefix, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func protect(keys []signedurl.Key, prefixes ...string) func(*Config) {
	return func(c *Config) {
		c.SignedURLs = signedurl.Config{Keys: keys, Protect: prefixes}
	}
}

// A protected object is served only with a valid token; every bad token is refused with 403
// and its reason before the cache is looked at, so none reaches the origin, and none is
// served from the cache either.
func TestSignedURLRefusals(t *testing.T) {
	h := startEdge(t, objectOrigin(t), protect([]signedurl.Key{testKeyOld}, "/obj/7/"))
	const obj = "/obj/7/1024"
	exp := time.Now().Add(time.Hour)
	good := mint(t, testKeyOld, "/obj/7/", exp, netip.Addr{})
	forged := mint(t, signedurl.Key{ID: testKeyOld.ID, Secret: strings.Repeat("x", 32)}, "/obj/7/", exp, netip.Addr{})
	cases := []struct{ name, uri, reason string }{
		{"missing", obj, "no token"},
		{"expired", "/_t/" + mint(t, testKeyOld, "/obj/7/", time.Now().Add(-time.Second), netip.Addr{}) + obj, "expired"},
		{"tampered", "/_t/" + good[:len(good)-2] + "AA" + obj, "signature does not match"},
		{"forged", obj + "?duet_token=" + forged, "signature does not match"},
		{"wrong prefix", "/_t/" + mint(t, testKeyOld, "/obj/70/", exp, netip.Addr{}) + obj, "does not cover this path"},
		{"unknown key", "/_t/" + mint(t, testKeyNew, "/obj/7/", exp, netip.Addr{}) + obj, "unknown or retired key"},
		{"other client", "/_t/" + mint(t, testKeyOld, "/obj/", exp, netip.MustParseAddr("192.0.2.1")) + obj, "another client address"},
		{"malformed", obj + "?duet_token=1.k.2.3", "malformed token"},
		{"encoded slash", "/obj%2F7/1024", "no token"}, // an origin reads %2F as '/'
		{"encoded slash, other scope", "/_t/" + mint(t, testKeyOld, "/obj/8/", exp, netip.Addr{}) + "/obj%2F7/1024", "does not cover"},
		{"dot-dot out of scope", "/_t/" + mint(t, testKeyOld, "/obj/8/", exp, netip.Addr{}) + "/obj/8/../7/1024", "does not cover"},
	}
	refuseAll := func(when string) {
		t.Helper()
		for _, c := range cases {
			resp, body := h.get(c.uri)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), c.reason) {
				t.Fatalf("%s: %s: got %d %q, want 403 with %q", when, c.name, resp.StatusCode, body, c.reason)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("%s: %s: a player cannot read the refusal: no CORS header", when, c.name)
			}
		}
	}
	refuseAll("cold")
	if n := h.origin.fetches(obj); n != 0 {
		t.Fatalf("refused requests fetched %s from the origin %d times", obj, n)
	}
	resp, _ := h.get("/_t/" + good + obj)
	expect(t, resp, http.StatusOK, "MISS")
	h.waitCached(obj)
	refuseAll("cached")
	if n := h.origin.fetches(obj); n != 1 {
		t.Fatalf("origin fetches of %s: %d, want 1", obj, n)
	}
	if q := h.origin.last().Query; q != "" {
		t.Fatalf("the token reached the origin: query %q", q)
	}
	// Unprotected content is served with or without a token.
	resp, _ = h.get("/obj/8/100")
	expect(t, resp, http.StatusOK, "MISS")
}

// The token is never part of the cache key: the path form, the query form, another viewer's
// token and (for unprotected content) no token at all share one entry and one origin fetch.
func TestSignedURLSharesCacheEntry(t *testing.T) {
	h := startEdge(t, objectOrigin(t), protect([]signedurl.Key{testKeyOld, testKeyNew}, "/obj/7/"))
	exp := time.Now().Add(time.Hour)
	a := mint(t, testKeyOld, "/obj/7/", exp, netip.Addr{})
	b := mint(t, testKeyNew, "/obj/", exp, netip.MustParseAddr("127.0.0.1"))
	resp, first := h.get("/_t/" + a + "/obj/7/2048")
	expect(t, resp, http.StatusOK, "MISS")
	h.waitCached("/obj/7/2048")
	for _, uri := range []string{"/obj/7/2048?duet_token=" + b, "/_t/" + b + "/obj/7/2048", "/_t/" + a + "/obj/7/2048?duet_token=" + b} {
		resp, body := h.get(uri)
		expect(t, resp, http.StatusOK, "HIT")
		if string(body) != string(first) {
			t.Fatalf("%s: other bytes", uri)
		}
	}
	resp, _ = h.get("/_t/" + a + "/obj/9/64") // a token on unprotected content is ignored
	expect(t, resp, http.StatusOK, "MISS")
	h.waitCached("/obj/9/64")
	resp, _ = h.get("/obj/9/64")
	expect(t, resp, http.StatusOK, "HIT")
	if n, m := h.origin.fetches("/obj/7/2048"), h.origin.fetches("/obj/9/64"); n != 1 || m != 1 {
		t.Fatalf("origin fetches: %d and %d, want 1 each", n, m)
	}
}

// A key rotation drops no viewer: the keys change by a rolling restart (each step runs edges
// with the old and the new configuration side by side), and at every step every token still in
// a viewer's hands is accepted by every edge. The old key is retired once the tokens it signed
// have expired, and is refused from then on.
func TestSignedURLKeyRotation(t *testing.T) {
	clk := newClock()
	o := objectOrigin(t)
	const prefix = "/obj/7/"
	steps := []struct {
		name string
		keys []signedurl.Key
		sign signedurl.Key // what the token service signs with from this step on
	}{
		{"before", []signedurl.Key{testKeyOld}, testKeyOld},
		{"add the new key", []signedurl.Key{testKeyOld, testKeyNew}, testKeyOld},
		{"sign with it", []signedurl.Key{testKeyOld, testKeyNew}, testKeyNew},
		{"retire the old key", []signedurl.Key{testKeyNew}, testKeyNew},
	}
	const lifetime = time.Hour
	type viewer struct {
		tok     string
		expires time.Time
	}
	var viewers []viewer
	var prev *harness
	for i, st := range steps {
		if st.name == "retire the old key" {
			clk.Advance(lifetime + time.Second) // the last token the old key signed has expired
		}
		cfg := testConfig(t)
		protect(st.keys, prefix)(&cfg)
		h := startEdgeClock(t, o, cfg, clk.Now)
		viewers = append(viewers, viewer{mint(t, st.sign, prefix, clk.Now().Add(lifetime), netip.Addr{}), clk.Now().Add(lifetime)})
		for _, e := range []*harness{prev, h} { // mid-rollout both configurations serve
			if e == nil {
				continue
			}
			for j, v := range viewers {
				if !clk.Now().Before(v.expires) {
					continue // that viewer's session ended with its token
				}
				resp, body := e.get("/_t/" + v.tok + prefix + "1024")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("step %d (%s): viewer %d dropped: %d %s", i, st.name, j, resp.StatusCode, body)
				}
			}
		}
		if prev != nil {
			prev.stop()
		}
		prev = h
	}
	resp, body := prev.get("/_t/" + mint(t, testKeyOld, prefix, clk.Now().Add(lifetime), netip.Addr{}) + prefix + "1024")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "retired") {
		t.Fatalf("a token of the retired key: %d %s, want 403", resp.StatusCode, body)
	}
}

// primedSignedEdge is primedEdge for a protected object requested with a token in the path
// (or, with query set, in the query).
func primedSignedEdge(tb testing.TB, obj string, query bool) (*harness, *bufio.Writer, string) {
	h := startEdge(tb, objectOrigin(tb), func(c *Config) {
		c.Memory.MaxObjectBytes = 1 << 20
		protect([]signedurl.Key{testKeyOld, testKeyNew}, "/obj/")(c)
	})
	tok := mint(tb, testKeyNew, "/obj/", time.Now().Add(time.Hour), netip.Addr{})
	uri := "/_t/" + tok + obj
	if query {
		uri = obj + "?duet_token=" + tok
	}
	resp, _ := h.get(uri)
	if resp.StatusCode != 200 {
		tb.Fatalf("prime %s: %d", uri, resp.StatusCode)
	}
	h.waitCached(obj)
	return h, bufio.NewWriterSize(io.Discard, 64<<10), uri
}

// TestSignedHitAllocations: checking a token adds no allocation to a memory hit.
func TestSignedHitAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	for _, query := range []bool{false, true} {
		h, w, uri := primedSignedEdge(t, "/obj/9/1024", query)
		ctx := handlerCtx(uri)
		if err := serveOnce(h.srv, ctx, w); err != nil || ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Cache")) != "HIT" {
			t.Fatalf("%s: %d %s %v", uri, ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Cache"), err)
		}
		allocs := testing.AllocsPerRun(1000, func() {
			if err := serveOnce(h.srv, ctx, w); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0 {
			t.Fatalf("a signed memory hit (query form: %v) allocates %.1f times per request, want 0", query, allocs)
		}
	}
}
