package player_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/duetcdn/duet/steering/player"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoutes(t *testing.T) {
	h := player.New(player.Config{})
	for _, tc := range []struct {
		path, method string
		code         int
		ctype, has   string
	}{
		{"/play", "GET", 200, "text/html; charset=utf-8", `data-default-src="/r/vod/sample/master.m3u8"`},
		{"/play?src=http://127.0.0.1:1/x.m3u8", "GET", 200, "text/html; charset=utf-8", `<script src="play/hls.min.js">`},
		{"/play/hls.min.js", "GET", 200, "text/javascript; charset=utf-8", "Hls"},
		{"/play/play.js", "GET", 200, "text/javascript; charset=utf-8", "window.duetPlayer"},
		{"/play/play.css", "GET", 200, "text/css; charset=utf-8", "video"},
		{"/play/LICENSE.hls.js.txt", "GET", 200, "text/plain; charset=utf-8", "Apache License"},
		{"/play/hls.min.js", "HEAD", 200, "text/javascript; charset=utf-8", ""},
		{"/play/../go.mod", "GET", 404, "", ""},
		{"/play/player.go", "GET", 404, "", ""},
		{"/play", "POST", 405, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := get(t, h, tc.method, tc.path, nil)
			b := body(t, r)
			if r.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", r.StatusCode, tc.code)
			}
			if tc.ctype != "" && r.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", r.Header.Get("Content-Type"), tc.ctype)
			}
			if !strings.Contains(b, tc.has) {
				t.Errorf("body lacks %q", tc.has)
			}
		})
	}
}

func TestPageHeaders(t *testing.T) {
	h := player.New(player.Config{DefaultSource: `https://cdn.example/"><script>x</script>/m.m3u8`})
	r := get(t, h, "GET", "/play", nil)
	b := body(t, r)
	if strings.Contains(b, "<script>x</script>") {
		t.Fatal("DefaultSource reached the page unescaped")
	}
	if !strings.Contains(b, `data-default-src="https://cdn.example/%22%3e%3cscript%3ex%3c/script%3e/m.m3u8"`) {
		t.Errorf("DefaultSource not in the page as an escaped URL attribute:\n%s", b)
	}
	// html/template treats data-*-src as a URL: a script URL never reaches the page.
	if b := body(t, get(t, player.New(player.Config{DefaultSource: "javascript:alert(1)"}), "GET", "/play", nil)); strings.Contains(b, `data-default-src="javascript:`) {
		t.Error("a javascript: DefaultSource reached the page")
	}
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "connect-src *", "media-src 'self' blob:", "worker-src 'self' blob:"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if r.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("page Cache-Control %q, want no-cache", r.Header.Get("Cache-Control"))
	}

	js := get(t, h, "GET", "/play/hls.min.js", nil)
	etag := js.Header.Get("ETag")
	if etag == "" || !strings.Contains(js.Header.Get("Cache-Control"), "max-age") {
		t.Fatalf("hls.min.js: ETag %q, Cache-Control %q", etag, js.Header.Get("Cache-Control"))
	}
	if r := get(t, h, "GET", "/play/hls.min.js", map[string]string{"If-None-Match": etag}); r.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: %d, want 304", r.StatusCode)
	}
	if r := get(t, h, "GET", "/play/hls.min.js", map[string]string{"If-None-Match": `"other"`}); r.StatusCode != http.StatusOK {
		t.Errorf("revalidation with another ETag: %d, want 200", r.StatusCode)
	}
}
