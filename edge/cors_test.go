package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/s3conf"
)

// corsOrigin serves /seg.ts (with its own, different CORS header, which the edge must replace)
// and counts the OPTIONS requests that reach it.
func corsOrigin(t *testing.T) (*origin.HTTP, *atomic.Int64) {
	t.Helper()
	var options atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			options.Add(1)
			w.Header().Set("X-From-Origin", "1")
			w.WriteHeader(http.StatusOK)
			return
		}
		if r.URL.Path != "/seg.ts" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Access-Control-Allow-Origin", "https://origin.example")
		w.Header().Set("ETag", `"v1"`)
		_, _ = w.Write(randomBytes(4096, 3))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return o, &options
}

func TestCORS(t *testing.T) {
	t.Parallel()
	const exposed = "Content-Length, Content-Range, X-Cache, Cache-Status, Age"
	o, options := corsOrigin(t)
	h := startEdge(t, o, nil) // default config: allow_origin "*"

	for _, c := range []struct {
		name, method, path string
		hdr                []string
		status             int
		xcache             string
	}{
		{"miss", http.MethodGet, "/seg.ts", nil, 200, "MISS"},
		{"hit", http.MethodGet, "/seg.ts", nil, 200, "HIT"},
		{"range hit", http.MethodGet, "/seg.ts", []string{"Range", "bytes=0-9"}, 206, "HIT"},
		{"head", http.MethodHead, "/seg.ts", nil, 200, "HIT"},
		{"not modified", http.MethodGet, "/seg.ts", []string{"If-None-Match", `"v1"`}, 304, ""},
		{"not found", http.MethodGet, "/nope", nil, 404, "MISS"},
		{"bad path", http.MethodGet, "/a/%2e%2e/%2e%2e/x", nil, 400, ""},
	} {
		resp, _ := h.do(c.method, c.path, append([]string{"Origin", "https://player.example"}, c.hdr...)...)
		if resp.StatusCode != c.status || (c.xcache != "" && resp.Header.Get("X-Cache") != c.xcache) {
			t.Fatalf("%s: %d %s, want %d %s", c.name, resp.StatusCode, resp.Header.Get("X-Cache"), c.status, c.xcache)
		}
		if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want exactly [*]", c.name, got)
		}
		if got := resp.Header.Get("Access-Control-Expose-Headers"); got != exposed {
			t.Errorf("%s: Access-Control-Expose-Headers %q, want %q", c.name, got, exposed)
		}
	}

	resp, body := h.do(http.MethodOptions, "/seg.ts", "Origin", "https://player.example",
		"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "range")
	if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("preflight: %d with %d body bytes, want 204 and none", resp.StatusCode, len(body))
	}
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
		"Access-Control-Allow-Headers": "Range",
		"Access-Control-Max-Age":       "86400",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("preflight %s = %q, want %q", name, got, want)
		}
	}
	if n := options.Load(); n != 0 {
		t.Errorf("the edge answers preflights itself, but %d reached the origin", n)
	}
}

func TestCORSOff(t *testing.T) {
	t.Parallel()
	o, options := corsOrigin(t)
	h := startEdge(t, o, func(c *Config) { c.CORS.AllowOrigin = "https://player.example" })
	resp, _ := h.get("/seg.ts")
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://player.example" {
		t.Errorf("one configured origin: Access-Control-Allow-Origin %q", got)
	}

	off := startEdge(t, o, func(c *Config) { c.CORS.AllowOrigin = "" })
	resp, _ = off.get("/seg.ts")
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://origin.example" {
		t.Errorf("CORS off: the origin's own header should pass, got %q", got)
	}
	if got := resp.Header.Get("Access-Control-Expose-Headers"); got != "" {
		t.Errorf("CORS off: Access-Control-Expose-Headers %q, want none", got)
	}
	resp, _ = off.do(http.MethodOptions, "/seg.ts", "Origin", "https://player.example", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-From-Origin") != "1" || options.Load() != 1 {
		t.Errorf("CORS off: a preflight should reach the origin: %d, origin saw %d", resp.StatusCode, options.Load())
	}
}

func TestCORSConfigValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		origin string
		maxAge time.Duration
		ok     bool
	}{
		{"*", time.Hour, true}, {"", 0, true}, {"https://player.example.com", 0, true},
		{"http://127.0.0.1:3000", 0, true},
		{"https://a.example, https://b.example", 0, false}, {"player.example.com", 0, false},
		{"https://player.example.com/", 0, false}, {"https://x.example\r\nSet-Cookie: a=b", 0, false},
		{"*", -time.Second, false},
	} {
		cfg := DefaultConfig()
		cfg.Origin = OriginConfig{Type: "http", Config: s3conf.Config{Endpoint: "http://o"}, Timeout: time.Second}
		cfg.CORS = CORSConfig{AllowOrigin: c.origin, MaxAge: c.maxAge}
		err := cfg.Validate()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("cors %q max_age %v: err %v, want ok=%v", c.origin, c.maxAge, err, c.ok)
		}
	}
}

// rawHeaderOrigin answers every path with a header map built by hand, names as given: an origin
// implementation that breaks the canonical-names contract must not break the edge's answers.
type rawHeaderOrigin struct{ header http.Header }

func (o rawHeaderOrigin) Fetch(context.Context, *origin.Request) (*origin.Response, error) {
	body := "segment"
	h := http.Header{}
	for k, v := range o.header {
		h[k] = append([]string(nil), v...)
	}
	return &origin.Response{Status: http.StatusOK, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}, nil
}

// TestStoredHeadersOnHits checks what a hit carries of the origin's headers: every value of a
// repeated header, in order; other names as sent; and one CORS header, the edge's, even when
// the origin named its own in lower case.
func TestStoredHeadersOnHits(t *testing.T) {
	t.Parallel()
	o := rawHeaderOrigin{header: http.Header{
		"Cache-Control":               {"max-age=600"},
		"Content-Type":                {"video/mp2t"},
		"link":                        {"</a.ts>; rel=preload", "</b.ts>; rel=preload"},
		"access-control-allow-origin": {"https://evil.example"},
		"x-custom":                    {"v1"},
	}}
	h := startEdge(t, o, func(c *Config) { c.CORS.AllowOrigin = "https://player.example" })
	for _, want := range []string{"MISS", "HIT"} {
		resp, body := h.get("/seg.ts")
		expect(t, resp, http.StatusOK, want)
		if string(body) != "segment" {
			t.Fatalf("%s: body %q", want, body)
		}
		if got := resp.Header.Values("Link"); len(got) != 2 || got[0] != "</a.ts>; rel=preload" || got[1] != "</b.ts>; rel=preload" {
			t.Fatalf("%s: Link %q, want both values in order", want, got)
		}
		if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "https://player.example" {
			t.Fatalf("%s: Access-Control-Allow-Origin %q, want only the edge's", want, got)
		}
		if got := resp.Header.Get("X-Custom"); got != "v1" {
			t.Fatalf("%s: X-Custom %q", want, got)
		}
		if got := resp.Header.Get("Content-Type"); got != "video/mp2t" {
			t.Fatalf("%s: Content-Type %q", want, got)
		}
	}
}
