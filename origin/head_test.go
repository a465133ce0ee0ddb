package origin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// TestHTTPHead: a Head request reaches the origin as HEAD, and its answer carries the object's
// length and headers with an empty body.
func TestHTTPHead(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var methods []string
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Content-Length", strconv.Itoa(50<<20))
		if r.Method == http.MethodGet {
			_, _ = io.CopyN(w, zeroes{}, 50<<20)
		}
	}))
	t.Cleanup(srv.Close)
	o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL})

	resp := fetchOK(t, o, &Request{Path: "/big.mp4", Head: true, Range: "bytes=0-9"})
	if got := readAll(t, resp); resp.Status != http.StatusOK || len(got) != 0 || resp.ContentLength != 50<<20 {
		t.Fatalf("status %d, %d body bytes, length %d; want 200, 0, %d", resp.Status, len(got), resp.ContentLength, 50<<20)
	}
	if resp.Header.Get("Etag") != `"v1"` || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("headers %v", resp.Header)
	}
	resp = fetchOK(t, o, &Request{Path: "/missing", Head: true})
	_ = readAll(t, resp)
	if resp.Status != http.StatusNotFound {
		t.Fatalf("missing: status %d", resp.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, m := range methods {
		if m != http.MethodHead || ranges[i] != "" {
			t.Fatalf("request %d reached the origin as %s with Range %q, want HEAD without Range", i, m, ranges[i])
		}
	}
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
