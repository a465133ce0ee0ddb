package origin

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/testenv"
)

func newTestHTTP(t *testing.T, cfg HTTPConfig) *HTTP {
	t.Helper()
	o, err := NewHTTP(cfg)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	return o
}

func TestHTTPFetchPassThrough(t *testing.T) {
	ims := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		h := w.Header()
		h.Set("Content-Type", "video/mp2t")
		h.Set("Etag", `"v1"`)
		h.Set("Cache-Control", "max-age=60")
		h.Set("Surrogate-Key", "vod-abc")
		h.Set("Content-Range", "bytes 0-3/10")
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "secret")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Upgrade", "h2c")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "0123")
	}))
	t.Cleanup(srv.Close)
	o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL + "/base/", Host: "origin.example"})
	if o.Name() != srv.URL+"/base" {
		t.Errorf("Name = %q", o.Name())
	}

	resp := fetchOK(t, o, &Request{
		Path:            "/vod/a%20b/seg%2F1.ts",
		Query:           "v=1&x=%2F",
		Range:           "bytes=0-3",
		IfNoneMatch:     `"v0"`,
		IfModifiedSince: ims,
		IfMatch:         `"v1"`,
		Header: http.Header{
			"X-Request-Id": {"abc"},
			"Connection":   {"X-Private"},
			"X-Private":    {"no"},
			"Te":           {"trailers"},
			"Range":        {"bytes=9-"}, // the Request's own fields win
		},
	})
	body := readAll(t, resp)

	if got.RequestURI != "/base/vod/a%20b/seg%2F1.ts?v=1&x=%2F" {
		t.Errorf("request URI = %q", got.RequestURI)
	}
	if got.Method != http.MethodGet || got.Host != "origin.example" {
		t.Errorf("method %s host %s", got.Method, got.Host)
	}
	for name, want := range map[string]string{
		"Range":             "bytes=0-3",
		"If-None-Match":     `"v0"`,
		"If-Modified-Since": "Tue, 03 Feb 2026 04:05:06 GMT",
		"If-Match":          `"v1"`,
		"Accept-Encoding":   "identity",
		"X-Request-Id":      "abc",
		"X-Private":         "",
		"Te":                "",
		"User-Agent":        "duet",
	} {
		if v := got.Header.Get(name); v != want {
			t.Errorf("origin got %s = %q, want %q", name, v, want)
		}
	}

	if resp.Status != http.StatusPartialContent || string(body) != "0123" || resp.ContentLength != 4 {
		t.Errorf("status %d body %q length %d", resp.Status, body, resp.ContentLength)
	}
	for name, want := range map[string]string{
		"Content-Type":   "video/mp2t",
		"Etag":           `"v1"`,
		"Cache-Control":  "max-age=60",
		"Surrogate-Key":  "vod-abc",
		"Content-Range":  "bytes 0-3/10",
		"Content-Length": "4",
		"Connection":     "",
		"X-Hop":          "",
		"Keep-Alive":     "",
		"Upgrade":        "",
	} {
		if v := resp.Header.Get(name); v != want {
			t.Errorf("response %s = %q, want %q", name, v, want)
		}
	}
}

func TestHTTPFetchNoDecompression(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, "#EXTM3U\n")
	_ = zw.Close()
	var acceptEncoding string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		acceptEncoding = r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Vary", "Accept-Encoding")
		_, _ = w.Write(gz.Bytes())
	}))
	t.Cleanup(srv.Close)
	o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL})
	resp := fetchOK(t, o, &Request{Path: "/a.m3u8", Header: http.Header{"Accept-Encoding": {"gzip"}}})
	body := readAll(t, resp)
	if acceptEncoding != "gzip" {
		t.Errorf("origin got Accept-Encoding %q, want gzip", acceptEncoding)
	}
	if !bytes.Equal(body, gz.Bytes()) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("body %q Content-Encoding %q: the client decoded the body", body, resp.Header.Get("Content-Encoding"))
	}
}

func TestHTTPFetchStatuses(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the client followed a redirect")
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL})

	for _, tc := range []struct {
		path   string
		status int
		header string
		value  string
	}{
		{"/moved", http.StatusMovedPermanently, "Location", "/elsewhere"},
		{"/down", http.StatusServiceUnavailable, "Retry-After", "5"},
		{"/same", http.StatusNotModified, "Etag", `"v1"`},
		{"/missing", http.StatusNotFound, "Content-Type", "text/plain; charset=utf-8"},
	} {
		resp := fetchOK(t, o, &Request{Path: tc.path})
		readAll(t, resp)
		if resp.Status != tc.status || resp.Header.Get(tc.header) != tc.value {
			t.Errorf("%s: status %d %s %q, want %d %q", tc.path, resp.Status, tc.header, resp.Header.Get(tc.header), tc.status, tc.value)
		}
	}
}

// TestHTTPCutBody checks that a body cut before its end is a read error, never a clean end.
func TestHTTPCutBody(t *testing.T) {
	for _, tc := range []struct {
		name, head, body string
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "0123456789"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				_, _ = buf.WriteString(tc.head + tc.body)
				_ = buf.Flush()
				_ = c.Close()
			}))
			t.Cleanup(srv.Close)
			o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL})
			resp := fetchOK(t, o, &Request{Path: "/a.ts"})
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("read %q and a clean end, want an error", b)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read error %v, want io.ErrUnexpectedEOF", err)
			}
			if string(b) != "0123456789" {
				t.Errorf("read %q before the error", b)
			}
		})
	}
}

func TestHTTPForward(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Content-Type", r.Header.Get("Content-Type"))
		w.Header().Set("X-Content-Length", r.Header.Get("Content-Length"))
		w.Header().Set("X-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Uri", r.RequestURI)
		w.Header().Set("X-Private", r.Header.Get("X-Private"))
		w.Header().Set("Location", "/next")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL + "/api"})

	for _, tc := range []struct {
		name, method string
		header       http.Header
		body         io.Reader
		wantLength   string
		wantTE       string
		wantBody     string
	}{
		{"POST with length", http.MethodPost, http.Header{"Content-Type": {"application/json"}, "Content-Length": {"11"}, "Connection": {"X-Private"}, "X-Private": {"1"}},
			strings.NewReader(`{"a":"b12"}`), "11", "", `{"a":"b12"}`},
		{"PUT chunked", http.MethodPut, http.Header{"Content-Type": {"video/mp2t"}},
			io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")), "", "chunked", "abcdef"},
		{"DELETE without body", http.MethodDelete, nil, nil, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := o.Forward(t.Context(), tc.method, "/items/1", "force=1", tc.header, tc.body)
			if err != nil {
				t.Fatalf("Forward: %v", err)
			}
			body := readAll(t, resp)
			h := resp.Header
			if resp.Status != http.StatusCreated || string(body) != tc.wantBody || h.Get("X-Method") != tc.method ||
				h.Get("X-Uri") != "/api/items/1?force=1" || h.Get("Location") != "/next" {
				t.Errorf("status %d body %q method %q uri %q location %q", resp.Status, body, h.Get("X-Method"), h.Get("X-Uri"), h.Get("Location"))
			}
			if h.Get("X-Content-Length") != tc.wantLength || h.Get("X-Transfer-Encoding") != tc.wantTE {
				t.Errorf("origin got Content-Length %q Transfer-Encoding %q, want %q %q",
					h.Get("X-Content-Length"), h.Get("X-Transfer-Encoding"), tc.wantLength, tc.wantTE)
			}
			if h.Get("X-Private") != "" {
				t.Errorf("a header named by Connection was forwarded")
			}
			if want := tc.header.Get("Content-Type"); h.Get("X-Content-Type") != want {
				t.Errorf("Content-Type %q, want %q", h.Get("X-Content-Type"), want)
			}
		})
	}
	if _, err := o.Forward(t.Context(), "BAD METHOD", "/x", "", nil, nil); err == nil {
		t.Errorf("Forward with an invalid method succeeded")
	}
	if _, err := o.Forward(t.Context(), http.MethodPost, "/x", "", http.Header{"Content-Length": {"-3"}}, strings.NewReader("abc")); err == nil {
		t.Errorf("Forward with an invalid Content-Length succeeded")
	}
}

// TestHTTPTimeout checks that Timeout bounds the wait for response headers and nothing after.
func TestHTTPTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	stop := make(chan struct{}) // closed when the test ends
	more := make(chan struct{}) // lets /slow-body send the rest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-headers" {
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-stop:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Length", "6")
		_, _ = io.WriteString(w, "abc")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-more:
			_, _ = io.WriteString(w, "def")
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs before srv.Close
	o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL, Timeout: timeout})

	start := time.Now()
	resp, err := o.Fetch(t.Context(), &Request{Path: "/slow-headers"})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("Fetch answered %d, want a timeout", resp.Status)
	}
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timed out after %s, want about %s", d, timeout)
	}

	// With a request body, the clock starts once the body is sent, and still runs out.
	resp, err = o.Forward(t.Context(), http.MethodPost, "/slow-headers", "", nil, strings.NewReader("payload"))
	if !errors.Is(err, ErrTimeout) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("Forward err = %v, want ErrTimeout", err)
	}

	resp = fetchOK(t, o, &Request{Path: "/slow-body"})
	answered := time.Now()
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	head := make([]byte, 3)
	if _, err := io.ReadFull(br, head); err != nil || string(head) != "abc" {
		t.Fatalf("first bytes %q: %v", head, err)
	}
	// The body must outlive the time-to-first-byte clock: let the wall clock pass it.
	testenv.Eventually(t, 5*time.Second, func() bool { return time.Since(answered) > 3*timeout }, "the clock did not move")
	close(more)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "def" {
		t.Fatalf("rest of the body %q: %v (the timeout cut the body)", rest, err)
	}
}

func TestHTTPRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	o := newTestHTTP(t, HTTPConfig{BaseURL: url})
	resp, err := o.Fetch(t.Context(), &Request{Path: "/a.ts"})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("Fetch from a closed server answered %d, want an error", resp.Status)
	}
	if errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "/a.ts") {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPConnectionReuse(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "segment")
	}))
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	o := newTestHTTP(t, HTTPConfig{BaseURL: srv.URL})
	for i := range 50 {
		p := "/seg.ts"
		if i%2 == 1 {
			p = "/missing"
		}
		readAll(t, fetchOK(t, o, &Request{Path: p}))
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("50 sequential fetches opened %d connections, want 1", n)
	}
}

func TestNewHTTPValidation(t *testing.T) {
	for _, tc := range []HTTPConfig{
		{},
		{BaseURL: "127.0.0.1:8080"},
		{BaseURL: "ftp://example.com"},
		{BaseURL: "http://example.com/?a=b"},
		{BaseURL: "http://example.com", Timeout: -1},
		{BaseURL: "http://example.com", MaxConns: -1},
	} {
		if _, err := NewHTTP(tc); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewHTTP(%+v) err = %v, want ErrInvalidConfig", tc, err)
		}
	}
	o, err := NewHTTP(HTTPConfig{BaseURL: "https://user:pass@example.com/base/"})
	if err != nil || o.timeout != DefaultTimeout || o.Name() != "https://user:xxxxx@example.com/base" {
		t.Fatalf("defaults: %v, name %q", err, o.Name())
	}
}
