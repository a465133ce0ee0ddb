package edge

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

// headerOrigin is an HTTP origin that serves /obj/<n>/<size> (cacheable) and records the
// request headers it got, by path.
type headerOrigin struct {
	mu   sync.Mutex
	hdrs map[string][]http.Header
}

func newHeaderOrigin(t *testing.T) (*headerOrigin, *origin.HTTP) {
	t.Helper()
	ho := &headerOrigin{hdrs: map[string][]http.Header{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ho.mu.Lock()
		ho.hdrs[r.URL.Path] = append(ho.hdrs[r.URL.Path], r.Header.Clone())
		ho.mu.Unlock()
		size := 1024
		if parts := strings.Split(r.URL.Path, "/"); len(parts) == 4 {
			size, _ = strconv.Atoi(parts[3])
		}
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(randomBytes(size, 1))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return ho, o
}

func (o *headerOrigin) requests(path string) []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]http.Header(nil), o.hdrs[path]...)
}

// logLines waits for at least n lines in the access log file and returns them, parsed.
func logLines(t *testing.T, file string, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	testenv.Eventually(t, 10*time.Second, func() bool {
		lines = lines[:0]
		f, err := os.Open(file)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("a line is not JSON: %v: %s", err, sc.Text())
			}
			lines = append(lines, m)
		}
		return len(lines) >= n
	}, "fewer than %d lines in %s", n, file)
	return lines
}

func fileLogConfig(t *testing.T) func(*Config) {
	file := filepath.Join(t.TempDir(), "access.log")
	return func(c *Config) {
		c.Region = "eu"
		c.AccessLog.Sink, c.AccessLog.File = "file", file
	}
}

// TestAccessLogLineHasEveryField: a miss and then a hit over loopback each write a line with
// every field the operators read, the miss from the origin (with its time), the hit from memory;
// responses carry Server-Timing; the origin gets a traceparent whose trace id is the line's
// request id.
func TestAccessLogLineHasEveryField(t *testing.T) {
	ho, o := newHeaderOrigin(t)
	mut := fileLogConfig(t)
	var file string
	h := startEdge(t, o, func(c *Config) { mut(c); file = c.AccessLog.File })
	const path = "/obj/1/1024"
	cmcdQ := url.QueryEscape(`bl=12300,mtp=8000,ot=v,sid="sess-1",cid="sample"`)
	resp, _ := h.get(path + "?a=1&CMCD=" + cmcdQ)
	expect(t, resp, 200, "MISS")
	if st := resp.Header.Get("Server-Timing"); !strings.HasPrefix(st, `cdn-cache;desc="miss", origin;dur=`) {
		t.Errorf("miss Server-Timing %q", st)
	}
	h.waitCached(path + "?a=1")
	resp, _ = h.get(path+"?a=1", "Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	expect(t, resp, 200, "HIT")
	if st := resp.Header.Get("Server-Timing"); st != `cdn-cache;desc="hit"` {
		t.Errorf("hit Server-Timing %q", st)
	}
	lines := logLines(t, file, 2)
	fields := []string{"time", "edge", "region", "client", "method", "path", "query", "status", "bytes", "ttfb_us",
		"duration_us", "cache_status", "tier", "origin_us", "request_id"}
	for i, l := range lines {
		for _, f := range fields {
			if _, ok := l[f]; !ok {
				t.Errorf("line %d has no %q: %v", i, f, l)
			}
		}
		if l["edge"] != "test-edge" || l["region"] != "eu" || l["client"] != "127.0.0.1" || l["method"] != "GET" ||
			l["path"] != path || l["status"] != 200.0 || l["bytes"] != 1024.0 {
			t.Errorf("line %d: %v", i, l)
		}
		if id, _ := l["request_id"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Errorf("line %d: request id %q", i, id)
		}
		if _, err := time.Parse(time.RFC3339Nano, l["time"].(string)); err != nil {
			t.Errorf("line %d: time: %v", i, err)
		}
	}
	miss, hit := lines[0], lines[1] // the miss is logged when its body is done: maybe after the hit
	if hit["tier"] == "origin" {
		miss, hit = hit, miss
	}
	if miss["cache_status"] != "duet; fwd=uri-miss; stored" || miss["tier"] != "origin" || miss["origin_us"].(float64) <= 0 ||
		miss["query"] != "a=1&CMCD="+cmcdQ {
		t.Errorf("miss line: %v", miss)
	}
	if c, _ := miss["cmcd"].(map[string]any); c["bl"] != 12300.0 || c["sid"] != "sess-1" || c["ot"] != "v" || c["mtp"] != 8000.0 {
		t.Errorf("miss line's cmcd: %v", miss["cmcd"])
	}
	// (A hit comes from memory, or from disk when ristretto has not admitted the object yet.)
	if hit["cache_status"] != "duet; hit" || (hit["tier"] != "memory" && hit["tier"] != "disk") || hit["origin_us"] != 0.0 ||
		hit["request_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("hit line: %v", hit)
	}
	tp := ho.requests(path)[0].Get("Traceparent")
	if !strings.HasPrefix(tp, "00-"+miss["request_id"].(string)+"-") || len(tp) != 55 {
		t.Errorf("the origin got traceparent %q for request %v", tp, miss["request_id"])
	}
}

// TestAccessLogTokenNeverLogged: a signed URL's token and signature reach no line.
func TestAccessLogTokenNeverLogged(t *testing.T) {
	_, o := newHeaderOrigin(t)
	mut := fileLogConfig(t)
	var file string
	h := startEdge(t, o, func(c *Config) { mut(c); file = c.AccessLog.File })
	for _, q := range []string{"token=SECRET1&exp=1", "Signature=SECRET2&Key-Pair-Id=SECRET3&Policy=SECRET4", "hdnts=SECRET5", "X-Amz-Signature=SECRET6"} {
		resp, _ := h.get("/obj/2/100?" + q)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", q, resp.StatusCode)
		}
	}
	logLines(t, file, 4)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "SECRET") {
		t.Fatalf("a token reached the access log:\n%s", b)
	}
	if !strings.Contains(string(b), `token=REDACTED&exp=1`) {
		t.Fatalf("the redacted query is not logged:\n%s", b)
	}
}

// TestAccessLogBlockedSinkNeverDelaysViewers: the log file is a FIFO nobody reads, so the log's
// writer blocks for good; hits still answer, and the lines that do not fit the buffer are
// counted as dropped.
func TestAccessLogBlockedSinkNeverDelaysViewers(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "access.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, o := newHeaderOrigin(t)
	h := startEdge(t, o, func(c *Config) { c.AccessLog.Sink, c.AccessLog.File, c.AccessLog.Buffer = "file", fifo, 16 })
	t.Cleanup(func() { // unblock the writer, so that the edge can stop
		if f, err := os.Open(fifo); err == nil {
			go func() { _, _ = io.Copy(io.Discard, f); _ = f.Close() }()
		}
	})
	const path = "/obj/3/1024"
	h.get(path)
	h.waitCached(path)
	for i := range 200 {
		resp, _ := h.get(path)
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("hit %d: %d %s", i, resp.StatusCode, resp.Header.Get("X-Cache"))
		}
	}
	dropped := metricValue(t, h, `duet_access_log_lines_total{result="dropped"}`)
	// At most 16 lines wait in the buffer, and 16 more in the sink's own buffer before it
	// writes (and blocks): the 201 requests' other lines are dropped.
	if dropped < 201-2*16 {
		t.Fatalf("%v lines counted as dropped, want at least %d", dropped, 201-2*16)
	}
}

// metricValue reads one series from the edge's /metrics.
func metricValue(t *testing.T, h *harness, series string) float64 {
	t.Helper()
	resp, err := h.client.Get(h.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

// TestCMCDOneCacheEntry: the same object asked with CMCD (query or headers) and without is one
// cache entry and one origin fetch, and the origin never sees the CMCD parameter.
func TestCMCDOneCacheEntry(t *testing.T) {
	ho, o := newHeaderOrigin(t)
	h := startEdge(t, o, nil)
	const path = "/obj/4/1024"
	resp, _ := h.get(path + "?CMCD=" + url.QueryEscape(`bl=2000,sid="s"`))
	expect(t, resp, 200, "MISS")
	h.waitCached(path)
	resp, _ = h.get(path)
	expect(t, resp, 200, "HIT")
	resp, _ = h.get(path, "CMCD-Request", "bl=3000", "CMCD-Session", `sid="s"`)
	expect(t, resp, 200, "HIT")
	resp, _ = h.get(path + "?CMCD=" + url.QueryEscape(`bl=4000,sid="t",bs`))
	expect(t, resp, 200, "HIT")
	if n := h.origin.fetches(path); n != 1 {
		t.Fatalf("%d origin fetches, want 1", n)
	}
	if q := h.origin.last().Query; q != "" {
		t.Fatalf("the origin was asked with query %q", q)
	}
	for _, hdr := range ho.requests(path) {
		if hdr.Get("Cmcd-Request") != "" {
			t.Fatalf("the origin got CMCD headers: %v", hdr)
		}
	}
	if v := metricValue(t, h, `duet_cmcd_buffer_starvation_total{content="none"}`); v != 1 {
		t.Fatalf("buffer starvation counted %v times, want 1", v)
	}
	sum := h.srv.Stats().QoE
	if sum == nil || sum.Sessions != 2 || sum.Rebuffering != 1 {
		t.Fatalf("QoE %+v", sum)
	}
}
