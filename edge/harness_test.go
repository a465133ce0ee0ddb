package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/internal/tlsconf/acme"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/s3origin"
)

// countingOrigin counts the fetches that reach the real origin behind it, by path.
type countingOrigin struct {
	Origin
	mu    sync.Mutex
	count map[string]int
	reqs  []origin.Request
	// slowBody, when set, wraps every body (to make read-while-write observable).
	slowBody func(io.ReadCloser) io.ReadCloser
}

func newCounting(o Origin) *countingOrigin {
	return &countingOrigin{Origin: o, count: map[string]int{}}
}

func (c *countingOrigin) Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	c.mu.Lock()
	c.count[r.Path]++
	c.reqs = append(c.reqs, *r)
	wrap := c.slowBody
	c.mu.Unlock()
	resp, err := c.Origin.Fetch(ctx, r)
	if err == nil && wrap != nil {
		resp.Body = wrap(resp.Body)
	}
	return resp, err
}

// countingForwarder is a countingOrigin over an origin that also forwards other methods.
type countingForwarder struct{ *countingOrigin }

func (c countingForwarder) Forward(ctx context.Context, method, path, query string, h http.Header, body io.Reader) (*origin.Response, error) {
	return c.Origin.(Forwarder).Forward(ctx, method, path, query, h, body)
}

func (c *countingOrigin) fetches(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[path]
}

func (c *countingOrigin) last() origin.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[len(c.reqs)-1]
}

// harness is one running edge on loopback.
type harness struct {
	t      testing.TB
	srv    *Server
	url    string
	admin  string
	origin *countingOrigin
	client *http.Client
	cfg    Config
	stop   func()
}

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Name = "test-edge"
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Origin = OriginConfig{Type: "http", Config: s3conf.Config{Endpoint: "http://unused"}, Timeout: 5 * time.Second}
	cfg.Disk = DiskConfig{Dir: t.TempDir(), MaxBytes: 256 << 20}
	cfg.Memory = MemoryConfig{MaxBytes: 64 << 20, MaxObjectBytes: 2 << 20}
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.AdminToken = testAdminToken
	return cfg
}

// testAdminToken is the admin token of the edges tests start.
const testAdminToken = "test-admin-token-0123456789"

// adminPost sends a JSON body to the admin listener with the admin token, as an operator would.
func (h *harness) adminPost(path, body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, h.admin+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	return h.client.Do(req)
}

func startEdge(t testing.TB, o Origin, mutate func(*Config)) *harness {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	return startEdgeConfig(t, o, cfg)
}

// startEdgeConfig starts an edge with cfg; wrap, when given, wraps its viewer handler (to
// observe requests from inside the server).
func startEdgeConfig(t testing.TB, o Origin, cfg Config, wrap ...func(fasthttp.RequestHandler) fasthttp.RequestHandler) *harness {
	t.Helper()
	return startEdgeClock(t, o, cfg, nil, wrap...)
}

// startEdgeClock is startEdgeConfig with the edge's clock (nil: time.Now).
func startEdgeClock(t testing.TB, o Origin, cfg Config, now func() time.Time, wrap ...func(fasthttp.RequestHandler) fasthttp.RequestHandler) *harness {
	t.Helper()
	var rw ManifestRewriter
	if ro, ok := o.(rewritingOrigin); ok { // an origin that brings the edge's manifest rewriter
		o, rw = ro.Origin, ro.rw
	}
	co, ok := o.(*countingOrigin)
	if !ok {
		co = newCounting(o)
	}
	var o2 Origin = co
	if _, ok := co.Origin.(Forwarder); ok {
		o2 = countingForwarder{co}
	}
	srv, err := New(t.Context(), cfg, Deps{Origin: o2, Now: now, ACME: acme.Start, Rewriter: rw})
	if err != nil {
		t.Fatalf("new edge: %v", err)
	}
	for _, w := range wrap {
		srv.viewer.Handler = w(srv.viewer.Handler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	return serveHarness(t, srv, co, cfg, ln)
}

// serveHarness serves srv on the viewer listener ln (a test may wrap it) until the test ends.
func serveHarness(t testing.TB, srv *Server, co *countingOrigin, cfg Config, ln net.Listener) *harness {
	t.Helper()
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adm) }()
	h := &harness{
		t: t, srv: srv, url: "http://" + ln.Addr().String(), admin: "http://" + adm.Addr().String(), origin: co, cfg: cfg,
		client: &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 512}, Timeout: 60 * time.Second},
	}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("edge serve: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	testenv.Eventually(t, 5*time.Second, srv.Ready, "edge not ready")
	return h
}

// get sends a request; headers come as name, value pairs.
func (h *harness) do(method, path string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

func (h *harness) get(path string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	return h.do(http.MethodGet, path, hdr...)
}

// waitCached waits until key is committed to the tiers.
func (h *harness) waitCached(key string) {
	h.t.Helper()
	testenv.Eventually(h.t, 10*time.Second, func() bool { _, ok := h.srv.store.peek(key); return ok }, "%s never cached", key)
}

// expect asserts a response's X-Cache and status.
func expect(t testing.TB, resp *http.Response, status int, xcache string) {
	t.Helper()
	if resp.StatusCode != status || resp.Header.Get("X-Cache") != xcache {
		t.Fatalf("%s: got %d %s (Cache-Status %q), want %d %s", resp.Request.URL.Path, resp.StatusCode,
			resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), status, xcache)
	}
}

// s3env is a real MinIO with a fresh bucket and an origin reading it.
type s3env struct {
	minio  *minioproc.Server
	client *s3.Client
	bucket string
	origin *s3origin.Origin
}

func newS3Env(t testing.TB) *s3env {
	t.Helper()
	m := testenv.MinIO(t)
	bucket := testenv.Bucket(t, m)
	o, err := s3origin.New(t.Context(), s3origin.Config{
		Config:  s3conf.Config{Endpoint: m.Endpoint(), Bucket: bucket, AccessKey: m.AccessKey(), SecretKey: m.SecretKey()},
		Timeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &s3env{minio: m, client: testenv.S3Client(t, m), bucket: bucket, origin: o}
}

// put stores an object; cacheControl may be empty; meta is x-amz-meta-*.
func (e *s3env) put(t testing.TB, key string, body []byte, cacheControl string, meta map[string]string) string {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(body), Metadata: meta,
		ContentType: aws.String("application/octet-stream")}
	if cacheControl != "" {
		in.CacheControl = aws.String(cacheControl)
	}
	out, err := e.client.PutObject(t.Context(), in)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return aws.ToString(out.ETag)
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
