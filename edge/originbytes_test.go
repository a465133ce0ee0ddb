package edge

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/s3conf"
)

// s3EdgeConfig makes an edge config whose origin is the S3 env's bucket, as `duet edge` would.
func s3EdgeConfig(env *s3env) func(*Config) {
	return func(c *Config) {
		c.Origin = OriginConfig{Type: "s3", Config: s3conf.Config{Endpoint: env.minio.Endpoint(), Bucket: env.bucket}, Timeout: c.Origin.Timeout}
	}
}

// TestS3QueryNotInKey: with an S3 origin a query string selects nothing, so by default it is not
// part of the cache key: new query strings on one object cost one origin fetch. On 718ea16 each
// new query string fetched the whole object again.
func TestS3QueryNotInKey(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(64<<10, 7)
	env.put(t, "obj.bin", body, "max-age=600", nil)
	h := startEdge(t, env.origin, s3EdgeConfig(env))
	for i, q := range []string{"?a=1", "?token=xyz&exp=99", "?session=42"} {
		resp, got := h.get("/obj.bin" + q)
		if resp.StatusCode != 200 || sum(got) != sum(body) {
			t.Fatalf("request %d: status %d, %d bytes", i, resp.StatusCode, len(got))
		}
		if i == 0 {
			h.waitCached("/obj.bin")
		} else {
			expect(t, resp, 200, "HIT")
		}
	}
	if n := h.origin.fetches("/obj.bin"); n != 1 {
		t.Fatalf("three query strings cost %d origin fetches, want 1", n)
	}
	if q := h.origin.last().Query; q != "" {
		t.Fatalf("S3 origin was asked with query %q", q)
	}
}

func TestQueryDroppedDefault(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		name string
		typ  string
		fb   []string
		set  *bool
		want bool
	}{
		{"s3", "s3", nil, nil, true},
		{"s3 set false", "s3", nil, &no, false},
		{"http", "http", nil, nil, false},
		{"http set true", "http", nil, &yes, true},
		{"s3 with s3 fallback", "s3", []string{"s3"}, nil, true},
		{"s3 with http fallback", "s3", []string{"s3", "http"}, nil, false},
	} {
		cfg := DefaultConfig()
		cfg.Origin.Type = c.typ
		for _, f := range c.fb {
			cfg.Origin.Fallbacks = append(cfg.Origin.Fallbacks, OriginConfig{Type: f})
		}
		cfg.Cache.DropQuery = c.set
		if got := cfg.QueryDropped(); got != c.want {
			t.Errorf("%s: query dropped %v, want %v", c.name, got, c.want)
		}
	}
}

// wireCounter counts the bytes, and the writes, a server makes on the connections it accepts:
// what it really sent (an httptest origin, whatever its handler believes it wrote; an edge
// under TLS, where each write is one or more records).
type wireCounter struct {
	net.Listener
	n, writes atomic.Int64
}

func (l *wireCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l *wireCounter
}

func (c *countedConn) Write(p []byte) (int, error) {
	// Counted before the bytes leave: a client that has read a response then finds all of its
	// writes counted (counted after, the last one could land in the next request's count).
	c.l.writes.Add(1)
	n, err := c.Conn.Write(p)
	c.l.n.Add(int64(n))
	return n, err
}

// bigOrigin serves size-byte objects at any path (the query ignored), in 32 KiB writes, each
// flushed, so that a handler whose reader went away stops at once. It counts what it sent
// and the requests by method.
type bigOrigin struct {
	wire  *wireCounter
	url   string
	size  int64
	mu    sync.Mutex
	byMet map[string]int
	// With pauseAt set, a GET stops after pauseAt bytes until resume is closed (or its client
	// went away). ended counts the GET handlers that returned.
	pauseAt int64
	resume  chan struct{}
	ended   atomic.Int32
}

func newBigOrigin(t *testing.T, size int64) *bigOrigin {
	return newPausingOrigin(t, size, 0)
}

func newPausingOrigin(t *testing.T, size, pauseAt int64) *bigOrigin {
	t.Helper()
	bo := &bigOrigin{size: size, byMet: map[string]int{}, pauseAt: pauseAt, resume: make(chan struct{})}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bo.mu.Lock()
		bo.byMet[r.Method]++
		bo.mu.Unlock()
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Etag", `"big"`)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		if r.Method == http.MethodHead {
			return
		}
		defer bo.ended.Add(1)
		buf := make([]byte, 32<<10)
		fl := w.(http.Flusher)
		for sent := int64(0); sent < size; {
			if bo.pauseAt > 0 && sent == bo.pauseAt {
				select {
				case <-bo.resume:
				case <-r.Context().Done():
					return
				}
			}
			n := min(int64(len(buf)), size-sent)
			if bo.pauseAt > sent {
				n = min(n, bo.pauseAt-sent)
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			fl.Flush()
			sent += n
		}
	}))
	bo.wire = &wireCounter{Listener: ts.Listener}
	ts.Listener = bo.wire
	ts.Start()
	t.Cleanup(ts.Close)
	bo.url = ts.URL
	return bo
}

func (bo *bigOrigin) requests(method string) int {
	bo.mu.Lock()
	defer bo.mu.Unlock()
	return bo.byMet[method]
}

func (bo *bigOrigin) edge(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: bo.url})
	if err != nil {
		t.Fatal(err)
	}
	return startEdge(t, o, mutate)
}

// TestHeadMissForwardsHead: a HEAD of an uncached object reaches the origin as a HEAD and is
// answered with its headers: the origin sends no body. On 718ea16 the edge fetched the whole
// object (a GET) to answer it.
func TestHeadMissForwardsHead(t *testing.T) {
	t.Parallel()
	const size = 50 << 20
	bo := newBigOrigin(t, size)
	h := bo.edge(t, nil)
	for range 2 {
		resp, b := h.do(http.MethodHead, "/cold.mp4")
		if resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != size {
			t.Fatalf("HEAD: status %d, %d body bytes, Content-Length %d; want 200, 0, %d", resp.StatusCode, len(b), resp.ContentLength, size)
		}
		if resp.Header.Get("Etag") != `"big"` || resp.Header.Get("Content-Type") != "video/mp4" {
			t.Fatalf("HEAD lost the origin's headers: %v", resp.Header)
		}
	}
	if n := bo.requests(http.MethodGet); n != 0 {
		t.Fatalf("the origin got %d GETs for HEAD requests", n)
	}
	if n := bo.wire.n.Load(); n > 64<<10 {
		t.Fatalf("the origin sent %d bytes for two HEAD requests", n)
	}
	if _, ok := h.srv.store.peek("/cold.mp4"); ok {
		t.Fatal("a HEAD answer was stored")
	}
}

// TestHeadMissS3: on an S3 origin a HEAD miss is a HeadObject.
func TestHeadMissS3(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(3<<20, 3)
	env.put(t, "v.mp4", body, "max-age=600", nil)
	h := startEdge(t, env.origin, s3EdgeConfig(env))
	resp, b := h.do(http.MethodHead, "/v.mp4")
	if resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD: status %d, %d body bytes, Content-Length %d", resp.StatusCode, len(b), resp.ContentLength)
	}
	if r := h.origin.last(); !r.Head {
		t.Fatalf("origin asked with %+v, want a HEAD", r)
	}
	resp, b = h.do(http.MethodHead, "/none.mp4")
	if resp.StatusCode != 404 || len(b) != 0 {
		t.Fatalf("HEAD of a missing object: status %d", resp.StatusCode)
	}
	// A GET afterwards is an ordinary miss, then a hit.
	resp, got := h.get("/v.mp4")
	if resp.StatusCode != 200 || sum(got) != sum(body) {
		t.Fatalf("GET after HEAD: %d, %d bytes", resp.StatusCode, len(got))
	}
	h.waitCached("/v.mp4")
	resp, _ = h.do(http.MethodHead, "/v.mp4")
	expect(t, resp, 200, "HIT")
	if resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD hit: Content-Length %d", resp.ContentLength)
	}
}

// readAndLeave is a viewer that reads the first n bytes of a GET and closes the connection.
func (h *harness) readAndLeave(path string, n int) {
	h.t.Helper()
	tr := &http.Transport{DisableCompression: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get(h.url + path)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != 200 {
		h.t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, n)); err != nil {
		h.t.Fatalf("GET %s: read %d bytes: %v", path, n, err)
	}
	_ = resp.Body.Close() // before the end: the transport closes the connection
}

// TestAbandonedFillStops: a viewer that reads 100 bytes of a cold 50 MB object and leaves
// does not make the origin send the other 50 MB: the fill nobody reads stops (it was less
// than cache.background_fill_percent along), caches nothing, and the next viewer starts a
// fill of its own. On 718ea16 the fill ran to the end.
func TestAbandonedFillStops(t *testing.T) {
	t.Parallel()
	const size = 50 << 20
	// The origin pauses after 2 MiB, so the edge's decision does not race a loopback that could
	// deliver all 50 MB before the viewer's close is seen; it resumes once the fill is gone.
	bo := newPausingOrigin(t, size, 2<<20)
	h := bo.edge(t, func(c *Config) { c.Disk.MaxBytes = 1 << 30 }) // objects up to 128 MiB
	h.readAndLeave("/cold.mp4", 100)
	gone := func() bool { _, ok := h.srv.fl.get("/cold.mp4"); return !ok }
	for i := 0; i < 500 && !gone(); i++ {
		time.Sleep(10 * time.Millisecond) //nolint:forbidigo // poll interval, bounded by the loop
	}
	close(bo.resume)
	testenv.Eventually(t, 30*time.Second, func() bool { return bo.ended.Load() == 1 }, "origin handler never returned")
	if n := bo.wire.n.Load(); n > 16<<20 {
		t.Fatalf("the origin sent %d MiB for a viewer that read 100 bytes", n>>20)
	}
	if _, ok := h.srv.store.peek("/cold.mp4"); ok {
		t.Fatal("an abandoned fill was cached")
	}
	// The next viewer gets the whole object from a fill of its own.
	resp, b := h.get("/cold.mp4")
	if resp.StatusCode != 200 || len(b) != size {
		t.Fatalf("after the abandoned fill: status %d, %d bytes", resp.StatusCode, len(b))
	}
	if n := bo.requests(http.MethodGet); n != 2 {
		t.Fatalf("origin got %d GETs, want 2", n)
	}
	h.waitCached("/cold.mp4")
}

// TestFillPastThresholdCompletes: a fill more than cache.background_fill_percent along when its
// viewer leaves completes and is cached.
func TestFillPastThresholdCompletes(t *testing.T) {
	t.Parallel()
	const size = 20 << 20
	bo := newPausingOrigin(t, size, 12<<20) // 60 %
	h := bo.edge(t, nil)
	tr := &http.Transport{DisableCompression: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(h.url + "/warm.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		f, ok := h.srv.fl.get("/warm.mp4")
		if !ok {
			return false
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.written == 12<<20
	}, "fill never reached the origin's pause")
	_ = resp.Body.Close()
	time.Sleep(50 * time.Millisecond) //nolint:forbidigo // let the edge see the viewer go before the origin goes on
	close(bo.resume)
	h.waitCached("/warm.mp4")
	resp2, b := h.get("/warm.mp4")
	expect(t, resp2, 200, "HIT")
	if len(b) != size || bo.requests(http.MethodGet) != 1 {
		t.Fatalf("%d bytes, %d origin GETs; want %d, 1", len(b), bo.requests(http.MethodGet), size)
	}
}

// TestAbandonedFillsS3: three viewers that each read 100 bytes of a cold 50 MB S3 object, with
// a new query string each, cost the origin far less than one whole fetch. On 718ea16 they cost
// three whole fetches (157 MB).
func TestAbandonedFillsS3(t *testing.T) {
	t.Parallel()
	const size = 50 << 20
	env := newS3Env(t)
	env.put(t, "big.mp4", randomBytes(size, 9), "max-age=600", nil)
	co := newCounting(env.origin)
	var read atomic.Int64
	// Throttled to about 16 MB/s, so that the bytes the edge read before it saw a viewer leave
	// measure its reaction, not the speed of loopback.
	co.slowBody = func(rc io.ReadCloser) io.ReadCloser { return &throttled{ReadCloser: rc, n: &read} }
	h := startEdge(t, co, s3EdgeConfig(env))
	for _, q := range []string{"?a=1", "?b=2", "?c=3"} {
		h.readAndLeave("/big.mp4"+q, 100)
		testenv.Eventually(t, 30*time.Second, func() bool { _, ok := h.srv.fl.get("/big.mp4"); return !ok }, "fill still running")
	}
	h.srv.fl.wait(t.Context())
	t.Logf("the edge read %d KiB from the origin", read.Load()>>10)
	if n := read.Load(); n > 25<<20 {
		t.Fatalf("three viewers of 100 bytes made the edge read %d MiB from the origin", n>>20)
	}
}

type throttled struct {
	io.ReadCloser
	n *atomic.Int64
}

func (t *throttled) Read(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond) //nolint:forbidigo // paces a deliberately slow origin
	n, err := t.ReadCloser.Read(p[:min(len(p), 32<<10)])
	t.n.Add(int64(n))
	return n, err
}

func TestBgFillCompletes(t *testing.T) {
	p := bgFill{percent: 50, minBytes: 4 << 20}
	for _, c := range []struct {
		written, expect int64
		want            bool
	}{
		{100, 50 << 20, false},
		{25 << 20, 50 << 20, true},
		{24 << 20, 50 << 20, false},
		{47 << 20, 50 << 20, true}, // 3 MiB left
		{0, 4 << 20, true},         // small object
		{1 << 20, -1, true},        // unknown length, under the bound
		{5 << 20, -1, false},
	} {
		if got := p.completes(c.written, c.expect); got != c.want {
			t.Errorf("completes(%d, %d) = %v, want %v", c.written, c.expect, got, c.want)
		}
	}
	if !(bgFill{percent: 0}).completes(0, 1<<40) || !(bgFill{percent: 0}).completes(1<<40, -1) {
		t.Error("percent 0 must complete every fill")
	}
	if (bgFill{percent: 100}).completes(99, 100<<20) {
		t.Error("percent 100 completed a fill far from its end")
	}
}

// TestRangeReaderKeepsFill: a viewer whose range was served in full from a running fill (a
// stale object being refetched) leaves it running: the next range is a hit, not a new fill
// from byte 0.
func TestRangeReaderKeepsFill(t *testing.T) {
	t.Parallel()
	const size = 20 << 20
	bo := newBigOrigin(t, size)
	h := bo.edge(t, nil)
	// The first fill: the object is cached, then made stale.
	h.get("/seq.mp4")
	h.waitCached("/seq.mp4")
	m, _ := h.srv.store.peek("/seq.mp4")
	mm := *m
	mm.Flags |= object.SoftPurged
	if err := h.srv.store.updateMeta(mm); err != nil {
		t.Fatal(err)
	}
	resp, b := h.get("/seq.mp4", "Range", "bytes=0-99")
	if resp.StatusCode != 206 || len(b) != 100 {
		t.Fatalf("range on a stale object: %d, %d bytes", resp.StatusCode, len(b))
	}
	h.srv.fl.wait(t.Context())
	resp, _ = h.get("/seq.mp4", "Range", "bytes=100-199")
	expect(t, resp, 206, "HIT")
	if n := bo.requests(http.MethodGet); n != 2 {
		t.Fatalf("origin got %d GETs, want 2", n)
	}
}

func TestBackgroundFillConfig(t *testing.T) {
	for _, c := range []struct {
		percent int
		min     ByteSize
		ok      bool
	}{{50, 4 << 20, true}, {0, 0, true}, {100, 1 << 30, true}, {101, 0, false}, {-1, 0, false}, {50, -1, false}} {
		cfg := testConfig(t)
		cfg.Cache.BackgroundFillPercent, cfg.Cache.BackgroundFillMinBytes = c.percent, c.min
		err := cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("percent %d, min %d: %v", c.percent, c.min, err)
		}
		if err != nil && !strings.Contains(err.Error(), "cache.background_fill") {
			t.Errorf("error does not name the setting: %v", err)
		}
	}
}
