package edge

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

func TestMissThenHitFromMinIO(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(100_000, 1)
	etag := env.put(t, "vod/a/seg1.ts", body, "max-age=600", map[string]string{"surrogate-key": "show-a ep1"})
	h := startEdge(t, env.origin, nil)

	resp, got := h.get("/vod/a/seg1.ts")
	expect(t, resp, 200, "MISS")
	if !bytes.Equal(got, body) {
		t.Fatal("miss body differs from the object")
	}
	if resp.Header.Get("Etag") != etag || resp.Header.Get("Cache-Status") != "duet; fwd=uri-miss; stored" {
		t.Fatalf("headers: %v", resp.Header)
	}
	resp, got = h.get("/vod/a/seg1.ts")
	expect(t, resp, 200, "HIT")
	if !bytes.Equal(got, body) || resp.Header.Get("Cache-Status") != "duet; hit" {
		t.Fatalf("hit: %v", resp.Header)
	}
	if resp.Header.Get("Surrogate-Key") != "" {
		t.Error("Surrogate-Key leaked to the viewer")
	}
	// Two spellings of one object share one entry.
	resp, _ = h.get("/vod/./a//%73eg1.ts")
	expect(t, resp, 200, "HIT")
	if n := h.origin.fetches("/vod/a/seg1.ts"); n != 1 {
		t.Fatalf("origin fetched %d times, want 1", n)
	}
}

func TestPathEscapesAreRejected(t *testing.T) {
	t.Parallel()
	h := startEdge(t, newCounting(nil), nil)
	for _, p := range []string{"/../etc/passwd", "/a/../../x", "/%2e%2e/x", "/a%00b"} {
		req, _ := http.NewRequest(http.MethodGet, h.url+"/", nil)
		req.URL.Opaque = p // sent as written
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "bad request path") {
			t.Errorf("%s: got %d %q, want 400 with a reason", p, resp.StatusCode, b)
		}
	}
}

func TestRevalidation(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	v1 := randomBytes(5000, 2)
	env.put(t, "obj", v1, "max-age=600", nil)
	h := startEdge(t, env.origin, nil)
	h.get("/obj")

	// Unchanged object: a soft purge makes the entry stale; the edge revalidates with
	// If-None-Match, MinIO answers 304, and the cached bytes are served.
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/obj"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	resp, got := h.get("/obj")
	expect(t, resp, 200, "REVALIDATED")
	if !bytes.Equal(got, v1) || h.origin.last().IfNoneMatch == "" {
		t.Fatalf("revalidation did not use If-None-Match or served other bytes (%+v)", h.origin.last())
	}
	resp, _ = h.get("/obj")
	expect(t, resp, 200, "HIT")

	// Changed object: the conditional GET returns the new bytes, which replace the entry.
	v2 := randomBytes(7000, 3)
	env.put(t, "obj", v2, "max-age=600", nil)
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/obj"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	resp, got = h.get("/obj")
	expect(t, resp, 200, "MISS")
	if !bytes.Equal(got, v2) {
		t.Fatal("changed object: old bytes served")
	}
	resp, got = h.get("/obj")
	expect(t, resp, 200, "HIT")
	if !bytes.Equal(got, v2) {
		t.Fatal("changed object: old bytes cached")
	}
}

func TestStaleIfErrorWithMinIOStopped(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(3000, 4)
	env.put(t, "sie", body, "max-age=1, stale-if-error=3600", nil)
	env.put(t, "nosie", body, "max-age=1", nil)
	h := startEdge(t, env.origin, nil)
	h.get("/sie")
	h.get("/nosie")
	if err := env.minio.Stop(); err != nil {
		t.Fatal(err)
	}
	// Once the entries are stale, the one with stale-if-error still serves; the other fails.
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, _ := h.get("/nosie")
		return resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout
	}, "entry without stale-if-error never failed")
	resp, got := h.get("/sie")
	expect(t, resp, 200, "STALE")
	if !bytes.Equal(got, body) || !strings.Contains(resp.Header.Get("Cache-Status"), "stale-if-error") {
		t.Fatalf("stale-if-error: %v", resp.Header)
	}
	if age, _ := strconv.Atoi(resp.Header.Get("Age")); age < 1 {
		t.Errorf("stale answer has Age %q", resp.Header.Get("Age"))
	}
	if err := env.minio.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A MinIO that has just restarted may still answer 503 (initialising) for a moment.
	var last string
	testenv.Eventually(t, 30*time.Second, func() bool {
		var b []byte
		resp, b = h.get("/nosie")
		if a := fmt.Sprintf("%d %s %q", resp.StatusCode, resp.Header.Get("X-Cache"), b[:min(len(b), 1000)]); a != last {
			last = a
			// Shown only when the test fails, with what MinIO answers a client of its own,
			// to tell a MinIO that is not back from an edge that does not reach it.
			_, err := env.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(env.bucket), Key: aws.String("nosie")})
			t.Logf("after restart: edge %s; MinIO directly: %v", a, err)
		}
		return resp.StatusCode == 200
	}, "origin back, entry never revalidated")
	expect(t, resp, 200, "REVALIDATED")
}

func TestStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	v1 := randomBytes(2000, 5)
	env.put(t, "swr", v1, "max-age=1, stale-while-revalidate=3600", nil)
	h := startEdge(t, env.origin, nil)
	h.get("/swr")
	v2 := randomBytes(2000, 6)
	env.put(t, "swr", v2, "max-age=600", nil)
	// Past max-age, the stale bytes are served at once and a background fetch refreshes them.
	var staleSeen bool
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, got := h.get("/swr")
		if resp.Header.Get("X-Cache") == "STALE" {
			staleSeen = true
			if !bytes.Equal(got, v1) {
				t.Fatal("stale answer with other bytes")
			}
		}
		return bytes.Equal(got, v2)
	}, "never refreshed in the background")
	if !staleSeen {
		t.Fatal("no stale-while-revalidate answer seen")
	}
	resp, got := h.get("/swr")
	expect(t, resp, 200, "HIT")
	if !bytes.Equal(got, v2) {
		t.Fatal("refreshed entry not served")
	}
}

func TestNegativeCaching(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	h := startEdge(t, env.origin, func(c *Config) { c.Cache.NegativeTTL = time.Hour })
	resp, _ := h.get("/missing.ts")
	expect(t, resp, 404, "MISS")
	resp, _ = h.get("/missing.ts")
	expect(t, resp, 404, "HIT")
	if n := h.origin.fetches("/missing.ts"); n != 1 {
		t.Fatalf("404 fetched %d times", n)
	}
	// Uploading it does not help until the negative entry is purged or expires: purge it.
	env.put(t, "missing.ts", []byte("now here"), "", nil)
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/missing.ts"}}); err != nil {
		t.Fatal(err)
	}
	resp, got := h.get("/missing.ts")
	expect(t, resp, 200, "MISS")
	if string(got) != "now here" {
		t.Fatalf("got %q", got)
	}
}

func TestNoStoreAndPrivatePass(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	env.put(t, "nostore", []byte("a"), "no-store", nil)
	env.put(t, "private", []byte("b"), "private, max-age=600", nil)
	h := startEdge(t, env.origin, nil)
	for _, p := range []string{"/nostore", "/private"} {
		for range 3 {
			resp, _ := h.get(p)
			expect(t, resp, 200, "PASS")
		}
		if n := h.origin.fetches(p); n != 3 {
			t.Errorf("%s fetched %d times, want 3 (never cached)", p, n)
		}
	}
}

func TestHeadAndClientConditionals(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(12345, 7)
	etag := env.put(t, "c.ts", body, "max-age=600", nil)
	h := startEdge(t, env.origin, nil)

	resp, got := h.do(http.MethodHead, "/c.ts")
	if resp.StatusCode != 200 || len(got) != 0 || resp.ContentLength != int64(len(body)) || resp.Header.Get("Etag") != etag {
		t.Fatalf("HEAD miss: %d len %d cl %d %v", resp.StatusCode, len(got), resp.ContentLength, resp.Header)
	}
	// A HEAD miss is forwarded as a HEAD and stores nothing; a GET fills the cache.
	if _, ok := h.srv.store.peek("/c.ts"); ok {
		t.Fatal("a HEAD miss stored the object")
	}
	h.get("/c.ts")
	h.waitCached("/c.ts")
	resp, got = h.do(http.MethodHead, "/c.ts")
	expect(t, resp, 200, "HIT")
	if len(got) != 0 || resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD hit: len %d cl %d", len(got), resp.ContentLength)
	}
	resp, got = h.get("/c.ts", "If-None-Match", etag)
	if resp.StatusCode != 304 || len(got) != 0 || resp.Header.Get("Etag") != etag {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	resp, _ = h.get("/c.ts", "If-None-Match", `"other", `+etag)
	if resp.StatusCode != 304 {
		t.Fatalf("If-None-Match list: %d", resp.StatusCode)
	}
	resp, got = h.get("/c.ts", "If-None-Match", `"other"`)
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("If-None-Match mismatch: %d", resp.StatusCode)
	}
	lm := resp.Header.Get("Last-Modified")
	resp, _ = h.get("/c.ts", "If-Modified-Since", lm)
	if resp.StatusCode != 304 {
		t.Fatalf("If-Modified-Since: %d", resp.StatusCode)
	}
	resp, _ = h.get("/c.ts", "If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT")
	if resp.StatusCode != 200 {
		t.Fatalf("If-Modified-Since old date: %d", resp.StatusCode)
	}
	if n := h.origin.fetches("/c.ts"); n != 2 { // the HEAD and the GET
		t.Fatalf("conditionals reached the origin: %d fetches", n)
	}
}

func TestRangesFromCache(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(100_000, 8)
	etag := env.put(t, "r.mp4", body, "max-age=600", nil)
	h := startEdge(t, env.origin, nil)
	h.get("/r.mp4") // whole object cached

	resp, got := h.get("/r.mp4", "Range", "bytes=100-199")
	expect(t, resp, 206, "HIT")
	if !bytes.Equal(got, body[100:200]) || resp.Header.Get("Content-Range") != "bytes 100-199/100000" {
		t.Fatalf("single range: %q", resp.Header.Get("Content-Range"))
	}
	resp, got = h.get("/r.mp4", "Range", "bytes=-10")
	if resp.StatusCode != 206 || !bytes.Equal(got, body[len(body)-10:]) {
		t.Fatal("suffix range")
	}
	// Multiple ranges: multipart/byteranges, each part checked.
	resp, got = h.get("/r.mp4", "Range", "bytes=0-9,500-599,99990-")
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 206 || err != nil || mt != "multipart/byteranges" {
		t.Fatalf("multi range: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(got), params["boundary"])
	want := [][2]int{{0, 10}, {500, 600}, {99990, 100000}}
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("%d parts, want %d", i, len(want))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := io.ReadAll(p)
		w := want[i]
		if !bytes.Equal(pb, body[w[0]:w[1]]) || p.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/100000", w[0], w[1]-1) {
			t.Fatalf("part %d: %q", i, p.Header.Get("Content-Range"))
		}
	}
	// If-Range: a matching validator gets the range, another one the whole object.
	resp, got = h.get("/r.mp4", "Range", "bytes=0-0", "If-Range", etag)
	if resp.StatusCode != 206 || len(got) != 1 {
		t.Fatalf("If-Range match: %d", resp.StatusCode)
	}
	resp, got = h.get("/r.mp4", "Range", "bytes=0-0", "If-Range", `"stale-etag"`)
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("If-Range mismatch: %d", resp.StatusCode)
	}
	// Unsatisfiable: 416 with the size.
	resp, _ = h.get("/r.mp4", "Range", "bytes=200000-")
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != "bytes */100000" {
		t.Fatalf("416: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	// A malformed Range is ignored.
	resp, got = h.get("/r.mp4", "Range", "pages=1-2")
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("malformed range: %d", resp.StatusCode)
	}
	if n := h.origin.fetches("/r.mp4"); n != 1 {
		t.Fatalf("ranges reached the origin: %d fetches", n)
	}
}

func TestSlicesAcrossAChangedObject(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	const slice = 256 << 10
	v1 := randomBytes(5*slice+1000, 9)
	env.put(t, "big.mp4", v1, "max-age=600", nil)
	h := startEdge(t, env.origin, func(c *Config) { c.Cache.SliceBytes = slice })

	// A seek into a cold large object fetches only the slice it touches.
	resp, got := h.get("/big.mp4", "Range", "bytes=10-99")
	expect(t, resp, 206, "MISS")
	if !bytes.Equal(got, v1[10:100]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-99/%d", len(v1)) {
		t.Fatalf("first slice: %q", resp.Header.Get("Content-Range"))
	}
	if r := h.origin.last(); r.Range != fmt.Sprintf("bytes=0-%d", slice-1) {
		t.Fatalf("origin asked for %q, want the first slice", r.Range)
	}
	h.waitCached(sliceKey("/big.mp4", 0)) // the slice fill goes on after the viewer's 90 bytes
	resp, got = h.get("/big.mp4", "Range", "bytes=20-29")
	expect(t, resp, 206, "HIT")
	if !bytes.Equal(got, v1[20:30]) {
		t.Fatal("slice hit bytes")
	}
	// A range across slices 0..2 (0 cached, 1 and 2 not) and the tail.
	resp, got = h.get("/big.mp4", "Range", fmt.Sprintf("bytes=%d-%d", slice-5, 2*slice+5))
	if resp.StatusCode != 206 || !bytes.Equal(got, v1[slice-5:2*slice+6]) {
		t.Fatalf("cross-slice range: %d", resp.StatusCode)
	}
	resp, got = h.get("/big.mp4", "Range", "bytes=-100")
	if resp.StatusCode != 206 || !bytes.Equal(got, v1[len(v1)-100:]) {
		t.Fatalf("suffix range on slices: %d", resp.StatusCode)
	}

	// The object changes at the origin. Slice 0 is still cached (v1); slice 3 is not. A range
	// over both must not mix versions: the edge notices the new ETag and serves v2 throughout.
	v2 := randomBytes(5*slice+1000, 10)
	env.put(t, "big.mp4", v2, "max-age=600", nil)
	resp, got = h.get("/big.mp4", "Range", fmt.Sprintf("bytes=100-%d", 3*slice+100))
	if resp.StatusCode != 206 {
		t.Fatalf("changed object: %d", resp.StatusCode)
	}
	if !bytes.Equal(got, v2[100:3*slice+101]) {
		if bytes.Equal(got[:100], v1[100:200]) {
			t.Fatal("answer mixed the old and the new version")
		}
		t.Fatal("answer is not the new version")
	}
	resp, got = h.get("/big.mp4", "Range", "bytes=0-99")
	if !bytes.Equal(got, v2[:100]) {
		t.Fatalf("old slice still served after the change (%s)", resp.Header.Get("X-Cache"))
	}
	// Unsatisfiable range on a sliced object.
	resp, _ = h.get("/big.mp4", "Range", fmt.Sprintf("bytes=%d-", 10*slice))
	if resp.StatusCode != 416 {
		t.Fatalf("416 on slices: %d", resp.StatusCode)
	}
}

// TestVary uses an HTTP origin, since S3 cannot send Vary.
func TestVary(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Encoding, X-Device")
		fmt.Fprintf(w, "enc=%s device=%s", r.Header.Get("Accept-Encoding"), r.Header.Get("X-Device"))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	cases := []struct{ enc, dev, want string }{
		{"gzip, deflate", "tv", "enc=gzip device=tv"},
		{"gzip;q=1.0, identity", "tv", "enc=gzip device=tv"},
		{"br, gzip", "tv", "enc=br device=tv"},
		{"", "tv", "enc=identity device=tv"},
		{"gzip", "phone", "enc=gzip device=phone"},
	}
	for _, c := range cases {
		_, got := h.get("/v", "Accept-Encoding", c.enc, "X-Device", c.dev)
		if string(got) != c.want {
			t.Fatalf("%q/%q: got %q want %q", c.enc, c.dev, got, c.want)
		}
	}
	if n := hits.Load(); n != 4 {
		t.Fatalf("origin saw %d requests, want 4 variants", n)
	}
	for _, c := range cases {
		resp, got := h.get("/v", "Accept-Encoding", c.enc, "X-Device", c.dev)
		expect(t, resp, 200, "HIT")
		if string(got) != c.want {
			t.Fatalf("hit %q/%q: got %q", c.enc, c.dev, got)
		}
	}
}

func TestUnsafeMethodsPassAndInvalidate(t *testing.T) {
	t.Parallel()
	var version atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			version.Add(1)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "posted %s", b)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "v%d", version.Load())
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	_, got := h.get("/doc")
	if string(got) != "v0" {
		t.Fatal(string(got))
	}
	req, _ := http.NewRequest(http.MethodPost, h.url+"/doc", strings.NewReader("hello"))
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != "posted hello" || resp.Header.Get("X-Cache") != "PASS" {
		t.Fatalf("POST: %d %q", resp.StatusCode, b)
	}
	resp2, got := h.get("/doc")
	expect(t, resp2, 200, "MISS")
	if string(got) != "v1" {
		t.Fatalf("after POST got %q, want the invalidated entry refetched", got)
	}
	// An S3 origin is read-only: other methods get a 405 that says so.
	env := newS3Env(t)
	h2 := startEdge(t, env.origin, nil)
	req, _ = http.NewRequest(http.MethodDelete, h2.url+"/doc", nil)
	resp, err = h2.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("DELETE on S3 edge: %d", resp.StatusCode)
	}
}

func TestIgnoredQueryParametersShareAnEntry(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	env.put(t, "q.ts", []byte("segment"), "max-age=600", nil)
	h := startEdge(t, env.origin, func(c *Config) { c.Cache.IgnoreParams = []string{"token", "sid"} })
	resp, _ := h.get("/q.ts?token=abc&sid=1")
	expect(t, resp, 200, "MISS")
	resp, _ = h.get("/q.ts?sid=2&token=xyz")
	expect(t, resp, 200, "HIT")
	resp, _ = h.get("/q.ts")
	expect(t, resp, 200, "HIT")
}

func TestSurrogateKeyAndPrefixPurge(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	env.put(t, "show/a/1.ts", []byte("a1"), "max-age=600", map[string]string{"surrogate-key": "show-a"})
	env.put(t, "show/a/2.ts", []byte("a2"), "max-age=600", map[string]string{"surrogate-key": "show-a"})
	env.put(t, "show/b/1.ts", []byte("b1"), "max-age=600", map[string]string{"surrogate-key": "show-b"})
	h := startEdge(t, env.origin, nil)
	for _, p := range []string{"/show/a/1.ts", "/show/a/2.ts", "/show/b/1.ts"} {
		h.get(p)
	}
	res, err := h.srv.Purge(t.Context(), purgereq.Target{Tags: []string{"show-a"}})
	if err != nil || res.Entries != 2 {
		t.Fatalf("tag purge: %+v %v", res, err)
	}
	resp, _ := h.get("/show/a/1.ts")
	expect(t, resp, 200, "MISS")
	resp, _ = h.get("/show/b/1.ts")
	expect(t, resp, 200, "HIT")
	// The admin endpoint purges by prefix, and rejects bad input with a reason.
	pr, err := h.adminPost("/purge", `{"prefixes":["/show/"]}`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(pr.Body)
	pr.Body.Close()
	if pr.StatusCode != 200 || !strings.Contains(string(b), `"entries":2`) {
		t.Fatalf("prefix purge: %d %s", pr.StatusCode, b)
	}
	for body, want := range map[string]string{`{}`: "at least one", `{"urls":["/x"],"bogus":1}`: "unknown field", `{"urls":["/../x"]}`: "url"} {
		pr, err := h.adminPost("/purge", body)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(pr.Body)
		pr.Body.Close()
		if pr.StatusCode != 400 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %s", body, pr.StatusCode, b)
		}
	}
}

func TestVideoDefaultTTLs(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	env.put(t, "live/index.m3u8", []byte("#EXTM3U\n"), "", nil)
	env.put(t, "live/seg1.ts", []byte("seg"), "", nil)
	h := startEdge(t, env.origin, func(c *Config) { c.Cache.PlaylistTTL = time.Second; c.Cache.SegmentTTL = time.Hour })
	h.get("/live/index.m3u8")
	h.get("/live/seg1.ts")
	m, _ := h.srv.store.peek("/live/index.m3u8")
	s, _ := h.srv.store.peek("/live/seg1.ts")
	if m.FreshFor != time.Second || s.FreshFor != time.Hour {
		t.Fatalf("playlist fresh for %v, segment for %v", m.FreshFor, s.FreshFor)
	}
	// The playlist goes stale quickly and is revalidated; the segment stays a hit.
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, _ := h.get("/live/index.m3u8")
		return resp.Header.Get("X-Cache") == "REVALIDATED"
	}, "playlist never revalidated")
	resp, _ := h.get("/live/seg1.ts")
	expect(t, resp, 200, "HIT")
}

// TestUntrustedCacheRevalidatesEverything: while the edge may have missed purges, a fresh entry
// is not served until the origin confirms it, and nothing is served stale on origin errors.
func TestUntrustedCacheRevalidatesEverything(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := []byte("segment bytes")
	env.put(t, "u.ts", body, "max-age=600, stale-if-error=3600", nil)
	h := startEdge(t, env.origin, nil)
	h.get("/u.ts")
	h.srv.SetCacheTrusted(false)
	resp, got := h.get("/u.ts")
	expect(t, resp, 200, "REVALIDATED")
	if !bytes.Equal(got, body) {
		t.Fatal("wrong bytes")
	}
	if err := env.minio.Stop(); err != nil {
		t.Fatal(err)
	}
	resp, _ = h.get("/u.ts")
	if resp.StatusCode < 500 {
		t.Fatalf("untrusted cache served %d %s while the origin was down", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	h.srv.SetCacheTrusted(true)
	resp, _ = h.get("/u.ts")
	expect(t, resp, 200, "HIT")
}
