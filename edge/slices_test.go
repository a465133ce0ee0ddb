package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/byterange"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

// httpOriginFor starts an HTTP origin on loopback serving h.
func httpOriginFor(t testing.TB, h http.HandlerFunc) *origin.HTTP {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// viewerGet sends a GET with an optional Range, bounded in time: a timeout is reported as such
// (a hang), any other failure as a cut connection.
func viewerGet(ctx context.Context, client *http.Client, url, rangeHdr string) (resp *http.Response, body []byte, cut error, hang bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if rangeHdr != "" {
		req.Header.Set("Range", rangeHdr)
	}
	resp, err := client.Do(req)
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		var ne net.Error
		return resp, body, err, errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	}
	return resp, body, nil, false
}

// checkAnswer reports what is wrong with an edge's answer for an object that exists in the
// given versions: a 200 must be one whole version, a 206 exactly the bytes its Content-Range
// (or, multipart, each part's) names from one version; an error status is fine.
func checkAnswer(resp *http.Response, body []byte, versions ...[]byte) error {
	switch resp.StatusCode {
	case http.StatusOK:
		for _, v := range versions {
			if bytes.Equal(body, v) {
				return nil
			}
		}
		return fmt.Errorf("200 with %d bytes that are no whole version", len(body))
	case http.StatusPartialContent:
	default:
		if resp.StatusCode < 400 {
			return fmt.Errorf("unexpected status %d", resp.StatusCode)
		}
		return nil
	}
	type part struct {
		cr   string
		body []byte
	}
	var parts []part
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "multipart/byteranges" {
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("multipart: %w", err)
			}
			b, err := io.ReadAll(p)
			if err != nil {
				return fmt.Errorf("multipart part: %w", err)
			}
			parts = append(parts, part{p.Header.Get("Content-Range"), b})
		}
	} else {
		parts = append(parts, part{resp.Header.Get("Content-Range"), body})
	}
	if len(parts) == 0 {
		return errors.New("206 without parts")
	}
next:
	for _, v := range versions {
		for _, p := range parts {
			start, end, total, err := byterange.ParseContentRange(p.cr)
			// The total is the origin's word (one that lies about it is passed on); the bytes
			// are the edge's job.
			_ = total
			if err != nil || start < 0 || end >= int64(len(v)) || !bytes.Equal(p.body, v[start:end+1]) {
				continue next
			}
		}
		return nil
	}
	return fmt.Errorf("206 whose bytes are not what its Content-Range %q names in one version", parts[0].cr)
}

// flightsIdle waits until the edge runs no fill.
func (h *harness) flightsIdle() {
	h.t.Helper()
	testenv.Eventually(h.t, 10*time.Second, func() bool {
		h.srv.fl.mu.Lock()
		defer h.srv.fl.mu.Unlock()
		return len(h.srv.fl.m) == 0
	}, "fills still running")
}

// stopPromptly shuts the edge down and fails when that takes anywhere near its shutdown timeout:
// a request still being served (a read that spins) holds shutdown up for the whole timeout.
func (h *harness) stopPromptly() {
	h.t.Helper()
	done := make(chan struct{})
	go func() { h.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(h.cfg.ShutdownTimeout / 2):
		h.t.Fatalf("edge shutdown still waiting after %v (of %v): a request is still being served", h.cfg.ShutdownTimeout/2, h.cfg.ShutdownTimeout)
	}
}

// TestSliceAnswersThatMissTheSlice: an origin whose 206 does not cover the slice the edge asked
// for (another start, short) gets a clear error, or the right bytes, never a request that
// hangs or a goroutine that spins after the viewer left; the edge then shuts down at once.
func TestSliceAnswersThatMissTheSlice(t *testing.T) {
	obj := []byte("0123456789")
	cases := []struct {
		name, viewerRange string
		// mayCut: the fault shows only mid-body, after the status went out.
		mayCut bool
		answer func(w http.ResponseWriter, r *http.Request)
	}{
		{"starts elsewhere", "bytes=0-4", false, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 4-9/10")
			w.Header().Set("Content-Length", "6")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(obj[4:])
		}},
		{"short", "bytes=5-9", false, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-4/10")
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(obj[:5])
		}},
		{"body shorter than its length", "bytes=2-9", true, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-9/10")
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(obj[:5])
			panic(http.ErrAbortHandler)
		}},
		{"416 for a range that exists", "bytes=2-3", false, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes */10")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Cache-Control", "max-age=60")
				tc.answer(w, r)
			})
			h := startEdge(t, o, func(c *Config) { c.ShutdownTimeout = 20 * time.Second })
			for range 2 {
				resp, body, cut, hang := viewerGet(t.Context(), h.client, h.url+"/v.mp4", tc.viewerRange)
				if hang {
					t.Fatalf("viewer got no answer: %v", cut)
				}
				if cut != nil && !tc.mayCut {
					t.Fatalf("connection cut instead of an answer: %v", cut)
				}
				if cut == nil {
					if err := checkAnswer(resp, body, obj); err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode >= 500 && !strings.Contains(string(body), "origin") {
						t.Errorf("%d without a reason: %q", resp.StatusCode, body)
					}
				}
			}
			h.flightsIdle()
			h.stopPromptly()
		})
	}
}

// TestLargeObjectWhole: an object larger than the disk tier stores whole (disk.max_bytes/8) is
// delivered whole (it used to be a 200 with the full Content-Length cut at the cap), again on
// the next request, and HEAD gives its length.
func TestLargeObjectWhole(t *testing.T) {
	t.Parallel()
	obj := randomBytes(70<<20, 3)
	var fullGets atomic.Int64
	o := httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			fullGets.Add(1)
		}
		w.Header().Set("ETag", `"big"`)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "video/mp4")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
	})
	h := startEdge(t, o, func(c *Config) {
		c.Disk.MaxBytes = 64 << 20 // stores 8 MiB whole, at most
		c.Memory = MemoryConfig{MaxBytes: 8 << 20, MaxObjectBytes: 1 << 20}
	})
	for i := range 2 {
		resp, body := h.get("/big.mp4")
		if resp.StatusCode != 200 || !bytes.Equal(body, obj) {
			t.Fatalf("GET %d: %d with %d bytes, want 200 with the %d-byte object", i, resp.StatusCode, len(body), len(obj))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "video/mp4" || resp.Header.Get("Content-Range") != "" {
			t.Errorf("GET %d: Content-Type %q, Content-Range %q", i, ct, resp.Header.Get("Content-Range"))
		}
	}
	if n := fullGets.Load(); n != 1 {
		t.Errorf("origin got %d requests for the whole object, want 1 (then slices)", n)
	}
	resp, body := h.do(http.MethodHead, "/big.mp4")
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(obj)) || len(body) != 0 {
		t.Errorf("HEAD: %d, Content-Length %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	resp, body = h.get("/big.mp4", "Range", "bytes=50000000-50000099")
	if resp.StatusCode != 206 || !bytes.Equal(body, obj[50000000:50000100]) {
		t.Errorf("range: %d", resp.StatusCode)
	}
	h.flightsIdle()
	if d := h.srv.store.disk.Stats(); d.Bytes > d.MaxBytes {
		t.Errorf("disk tier holds %d bytes of %d", d.Bytes, d.MaxBytes)
	}
	// A restarted edge knows from its disk tier that the object is sliced: no request for
	// the whole object goes to the origin.
	h.stop()
	h = startEdgeConfig(t, o, h.cfg)
	if resp, _ := h.do(http.MethodHead, "/big.mp4"); resp.StatusCode != 200 || resp.ContentLength != int64(len(obj)) {
		t.Errorf("HEAD after restart: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	if n := fullGets.Load(); n != 1 {
		t.Errorf("after a restart the origin got a request for the whole object again (%d in all)", n)
	}
}

// TestLargeObjectNoRanges: an origin that ignores ranges and sends an object too large to store
// whole gets it streamed through to the viewer, uncached, never a short answer.
func TestLargeObjectNoRanges(t *testing.T) {
	t.Parallel()
	obj := randomBytes(20<<20, 4)
	o := httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"big"`)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		_, _ = w.Write(obj)
	})
	h := startEdge(t, o, func(c *Config) { c.Disk.MaxBytes = 64 << 20 })
	for i := range 2 {
		resp, body := h.get("/big.bin")
		if resp.StatusCode != 200 || !bytes.Equal(body, obj) {
			t.Fatalf("GET %d: %d with %d bytes", i, resp.StatusCode, len(body))
		}
	}
	resp, body := h.get("/big.bin", "Range", "bytes=100-199")
	if err := checkAnswer(resp, body, obj); err != nil {
		t.Fatal(err)
	}
}

// TestLargeUncacheableWhole: a large answer that may not be stored (private) reaches the viewer
// whole: the fetch stays alive until the viewer has the body.
func TestLargeUncacheableWhole(t *testing.T) {
	t.Parallel()
	obj := randomBytes(16<<20, 6)
	o := httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private")
		w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		for b := obj; len(b) > 0; b = b[min(len(b), 1<<20):] {
			_, _ = w.Write(b[:min(len(b), 1<<20)])
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond) //nolint:forbidigo // the body outlives the fill that received its headers
		}
	})
	h := startEdge(t, o, nil)
	resp, body := h.get("/p.bin")
	if resp.StatusCode != 200 || !bytes.Equal(body, obj) {
		t.Fatalf("%d with %d of %d bytes", resp.StatusCode, len(body), len(obj))
	}
}

// TestSliceFetchesOutliveTheHandler: slices resolved while the body is written, after the
// handler returned, are fetched with the viewer's request as it was: fasthttp may reset and
// reuse a RequestCtx once its handler returned, which the wrapper here does at once.
func TestSliceFetchesOutliveTheHandler(t *testing.T) {
	t.Parallel()
	const slice = 64 << 10
	obj := randomBytes(10*slice, 7)
	var mu sync.Mutex
	probes := map[string]int{}
	o := httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		probes[r.Header.Get("X-Probe")]++
		mu.Unlock()
		w.Header().Set("ETag", `"v"`)
		w.Header().Set("Cache-Control", "max-age=3600")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
	})
	cfg := testConfig(t)
	cfg.Cache.SliceBytes, cfg.Cache.SliceAbove = slice, slice
	h := startEdgeConfig(t, o, cfg, func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			next(ctx)
			ctx.Request.Header.Set("X-Probe", "recycled")
		}
	})
	for _, rg := range []string{"bytes=0-", "bytes=0-10,100-"} { // single range, multipart
		resp, body := h.get("/r.bin", "Range", rg, "X-Probe", "viewer")
		if err := checkAnswer(resp, body, obj); err != nil || resp.StatusCode != 206 {
			t.Fatalf("Range %s: %d, %v", rg, resp.StatusCode, err)
		}
		h.flightsIdle()
		h.srv.dropSlices("/r.bin")
	}
	mu.Lock()
	defer mu.Unlock()
	if probes["recycled"] > 0 || probes["viewer"] == 0 {
		t.Errorf("origin requests by X-Probe: %v; want every slice fetched with the viewer's headers", probes)
	}
}

// TestLargeObjectNoLength: an object sent without Content-Length that runs past what the disk
// tier stores whole cannot be told apart from a small one when its answer starts; once it ran
// past, its requests go to slices (or, when the origin ignores ranges, stream through).
func TestLargeObjectNoLength(t *testing.T) {
	t.Parallel()
	obj := randomBytes(12<<20, 8)
	for _, ranges := range []bool{true, false} {
		t.Run(fmt.Sprintf("ranges=%v", ranges), func(t *testing.T) {
			o := httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"nolen"`)
				w.Header().Set("Cache-Control", "max-age=3600")
				if ranges && r.Header.Get("Range") != "" {
					http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
					return
				}
				w.(http.Flusher).Flush() // no Content-Length
				_, _ = w.Write(obj)
			})
			h := startEdge(t, o, func(c *Config) { c.Disk.MaxBytes = 64 << 20 })
			// The first answer is cut where the disk tier gave up (chunked: the viewer sees the
			// transfer fail, never a complete-looking short body).
			if resp, body, cut, hang := viewerGet(t.Context(), h.client, h.url+"/n.bin", ""); hang || cut == nil && (resp.StatusCode != 200 || !bytes.Equal(body, obj)) {
				t.Fatalf("first GET: hang %v, cut %v", hang, cut)
			}
			h.flightsIdle()
			for i := range 2 {
				resp, body := h.get("/n.bin")
				if resp.StatusCode != 200 || !bytes.Equal(body, obj) {
					t.Fatalf("GET %d: %d with %d bytes", i, resp.StatusCode, len(body))
				}
			}
		})
	}
}
