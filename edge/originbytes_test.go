package edge

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duetcdn/duet/origin"
)

// s3EdgeConfig makes an edge config whose origin is the S3 env's bucket, as `duet edge` would.
func s3EdgeConfig(env *s3env) func(*Config) {
	return func(c *Config) {
		c.Origin = OriginConfig{Type: "s3", Endpoint: env.minio.Endpoint(), Bucket: env.bucket, Timeout: c.Origin.Timeout}
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

// wireCounter counts the bytes an httptest origin writes to its connections: what the origin
// really sent, whatever its handler believes it wrote.
type wireCounter struct {
	net.Listener
	n atomic.Int64
}

func (l *wireCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &l.n}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
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
}

func newBigOrigin(t *testing.T, size int64) *bigOrigin {
	t.Helper()
	bo := &bigOrigin{size: size, byMet: map[string]int{}}
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
		buf := make([]byte, 32<<10)
		fl := w.(http.Flusher)
		for sent := int64(0); sent < size; {
			n := min(int64(len(buf)), size-sent)
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
