package s3origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/s3conf"
)

// fetcher is what the edge needs from an origin; both clients must provide it.
type fetcher interface {
	Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error)
	Name() string
}

var (
	_ fetcher      = (*Origin)(nil)
	_ fetcher      = (*origin.HTTP)(nil)
	_ getObjectAPI = (*s3.Client)(nil)
	_ getObjectAPI = getObjectFunc(nil)
)

// getObjectFunc adapts a function to getObjectAPI.
type getObjectFunc func(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)

func (f getObjectFunc) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return f(ctx, in, optFns...)
}

func newTestS3(t *testing.T, srv *minioproc.Server, bucket, prefix string) *Origin {
	t.Helper()
	o, err := New(t.Context(), Config{
		Config: s3conf.Config{Endpoint: srv.Endpoint(), Bucket: bucket, AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()},
		Prefix: prefix, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return o
}

// readAll reads a response body to its end and closes it.
func readAll(t *testing.T, resp *origin.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func fetchOK(t *testing.T, o fetcher, r *origin.Request) *origin.Response {
	t.Helper()
	resp, err := o.Fetch(t.Context(), r)
	if err != nil {
		t.Fatalf("Fetch(%+v): %v", r, err)
	}
	return resp
}

func TestS3(t *testing.T) {
	srv := testenv.MinIO(t)
	client := testenv.S3Client(t, srv)

	// put stores an object directly (not through the origin under test).
	put := func(t *testing.T, in *s3.PutObjectInput) *s3.PutObjectOutput {
		t.Helper()
		out, err := client.PutObject(t.Context(), in)
		if err != nil {
			t.Fatalf("PutObject %s: %v", aws.ToString(in.Key), err)
		}
		return out
	}
	body := []byte("0123456789abcdefghij") // 20 bytes

	t.Run("round trip with synthesised headers", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		o := newTestS3(t, srv, bucket, "")
		expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		before := time.Now().Add(-time.Minute)
		out := put(t, &s3.PutObjectInput{
			Bucket:             aws.String(bucket),
			Key:                aws.String("vod/abc/seg 1.ts"),
			Body:               bytes.NewReader(body),
			ContentType:        aws.String("video/mp2t"),
			CacheControl:       aws.String("public, max-age=31536000"),
			ContentEncoding:    aws.String("identity"),
			ContentDisposition: aws.String(`attachment; filename="seg1.ts"`),
			Expires:            aws.Time(expires),
			Metadata:           map[string]string{"surrogate-key": "vod-abc vod"},
		})

		resp := fetchOK(t, o, &origin.Request{Path: "/vod/abc/seg%201.ts"})
		got := readAll(t, resp)
		if resp.Status != http.StatusOK || !bytes.Equal(got, body) || resp.ContentLength != int64(len(body)) {
			t.Fatalf("status %d, body %q, length %d; want 200, %q, %d", resp.Status, got, resp.ContentLength, body, len(body))
		}
		want := map[string]string{
			"Content-Type":        "video/mp2t",
			"Content-Length":      "20",
			"Content-Encoding":    "identity",
			"Content-Disposition": `attachment; filename="seg1.ts"`,
			"Etag":                aws.ToString(out.ETag),
			"Cache-Control":       "public, max-age=31536000",
			"Expires":             expires.Format(http.TimeFormat),
			"Accept-Ranges":       "bytes",
			"Surrogate-Key":       "vod-abc vod",
		}
		for name, v := range want {
			if g := resp.Header.Get(name); g != v {
				t.Errorf("header %s = %q, want %q", name, g, v)
			}
		}
		if _, ok := resp.Header["Content-Range"]; ok {
			t.Errorf("Content-Range %q on a whole-object read", resp.Header.Get("Content-Range"))
		}
		lm, err := http.ParseTime(resp.Header.Get("Last-Modified"))
		if err != nil || lm.Before(before) || lm.After(time.Now().Add(time.Minute)) {
			t.Errorf("Last-Modified = %q (%v), want about now in http.TimeFormat", resp.Header.Get("Last-Modified"), err)
		}
		for name := range resp.Header {
			if name != http.CanonicalHeaderKey(name) {
				t.Errorf("header name %q is not canonical", name)
			}
		}
	})

	t.Run("Put stores type, cache control and surrogate key", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		o := newTestS3(t, srv, bucket, "")
		// A non-seekable body of unknown size must work over plain HTTP.
		if err := o.Put(t.Context(), "/live/index.m3u8", iotest.OneByteReader(strings.NewReader("#EXTM3U\n")), -1,
			"application/vnd.apple.mpegurl", "max-age=2", map[string]string{"surrogate-key": "live"}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		resp := fetchOK(t, o, &origin.Request{Path: "/live/index.m3u8"})
		if got := string(readAll(t, resp)); got != "#EXTM3U\n" {
			t.Fatalf("body = %q", got)
		}
		for name, v := range map[string]string{"Content-Type": "application/vnd.apple.mpegurl", "Cache-Control": "max-age=2", "Surrogate-Key": "live"} {
			if g := resp.Header.Get(name); g != v {
				t.Errorf("header %s = %q, want %q", name, g, v)
			}
		}
		// A large non-seekable body is spooled to a file; a seekable one is read from where it is.
		big := bytes.Repeat([]byte("0123456789abcdef"), (spoolInMemory+1<<20)/16)
		if err := o.Put(t.Context(), "big.ts", io.MultiReader(bytes.NewReader(big)), int64(len(big)), "", "", nil); err != nil {
			t.Fatalf("Put big: %v", err)
		}
		if got := readAll(t, fetchOK(t, o, &origin.Request{Path: "/big.ts"})); !bytes.Equal(got, big) {
			t.Fatalf("big object: read %d bytes back, want %d", len(got), len(big))
		}
		sr := strings.NewReader("skip-kept")
		_, _ = sr.Seek(5, io.SeekStart)
		if err := o.Put(t.Context(), "offset.ts", sr, 4, "", "", nil); err != nil {
			t.Fatalf("Put from an offset: %v", err)
		}
		if got := string(readAll(t, fetchOK(t, o, &origin.Request{Path: "/offset.ts"}))); got != "kept" {
			t.Fatalf("Put from an offset stored %q, want %q", got, "kept")
		}
		if err := o.Put(t.Context(), "short", strings.NewReader("abc"), 5, "", "", nil); err == nil {
			t.Errorf("Put with a size that does not match the body succeeded")
		}
		if err := o.Put(t.Context(), "dir/", strings.NewReader("abc"), 3, "", "", nil); err == nil {
			t.Errorf("Put to a folder key succeeded")
		}
	})

	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		o := newTestS3(t, srv, testenv.Bucket(t, srv), "")
		for _, p := range []string{"/missing.ts", "/", "/folder/", ""} {
			resp := fetchOK(t, o, &origin.Request{Path: p})
			if b := readAll(t, resp); resp.Status != http.StatusNotFound || len(b) != 0 {
				t.Errorf("Fetch %q: status %d body %q, want 404 and no body", p, resp.Status, b)
			}
		}
	})

	t.Run("access denied", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		put(t, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.ts"), Body: bytes.NewReader(body)})
		o, err := New(t.Context(), Config{Config: s3conf.Config{
			Endpoint: srv.Endpoint(), Bucket: bucket, AccessKey: srv.AccessKey(), SecretKey: "not-the-secret",
		}})
		if err != nil {
			t.Fatal(err)
		}
		resp := fetchOK(t, o, &origin.Request{Path: "/a.ts"})
		if b := readAll(t, resp); resp.Status != http.StatusForbidden || len(b) != 0 {
			t.Fatalf("wrong secret: status %d body %q, want 403 and no body", resp.Status, b)
		}
	})

	t.Run("ranges", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		o := newTestS3(t, srv, bucket, "")
		// One object through Put (the SDK adds a CRC32 checksum), one with an explicit SHA256
		// checksum: ranged reads of either must not trip response checksum validation.
		if err := o.Put(t.Context(), "crc.ts", bytes.NewReader(body), int64(len(body)), "video/mp2t", "", nil); err != nil {
			t.Fatalf("Put: %v", err)
		}
		put(t, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String("sha.ts"), Body: bytes.NewReader(body),
			ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		})
		for _, key := range []string{"/crc.ts", "/sha.ts"} {
			for _, tc := range []struct {
				rng, contentRange, body string
			}{
				{"bytes=2-5", "bytes 2-5/20", "2345"},
				{"bytes=-3", "bytes 17-19/20", "hij"},
				{"bytes=15-", "bytes 15-19/20", "fghij"},
				{"bytes=0-999", "bytes 0-19/20", string(body)},
			} {
				resp := fetchOK(t, o, &origin.Request{Path: key, Range: tc.rng})
				got := string(readAll(t, resp))
				if resp.Status != http.StatusPartialContent || got != tc.body ||
					resp.Header.Get("Content-Range") != tc.contentRange ||
					resp.ContentLength != int64(len(tc.body)) ||
					resp.Header.Get("Content-Length") != strconv.Itoa(len(tc.body)) {
					t.Errorf("%s %s: status %d, Content-Range %q, length %d, body %q; want 206, %q, %d, %q",
						key, tc.rng, resp.Status, resp.Header.Get("Content-Range"), resp.ContentLength, got,
						tc.contentRange, len(tc.body), tc.body)
				}
			}
		}
	})

	t.Run("unsatisfiable range", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		o := newTestS3(t, srv, bucket, "")
		put(t, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.ts"), Body: bytes.NewReader(body)})
		resp := fetchOK(t, o, &origin.Request{Path: "/a.ts", Range: "bytes=100-"})
		readAll(t, resp)
		if resp.Status != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("status %d, want 416", resp.Status)
		}
		if cr := resp.Header.Get("Content-Range"); cr != "bytes */20" {
			t.Errorf("Content-Range = %q, want bytes */20", cr)
		}
		put(t, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("empty.ts"), Body: bytes.NewReader(nil)})
		resp = fetchOK(t, o, &origin.Request{Path: "/empty.ts", Range: "bytes=5-"})
		readAll(t, resp)
		if cr := resp.Header.Get("Content-Range"); resp.Status != http.StatusRequestedRangeNotSatisfiable || cr != "bytes */0" {
			t.Errorf("empty object: status %d Content-Range %q, want 416 bytes */0", resp.Status, cr)
		}
	})

	t.Run("conditional reads", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		o := newTestS3(t, srv, bucket, "")
		etag := aws.ToString(put(t, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.ts"), Body: bytes.NewReader(body)}).ETag)
		first := fetchOK(t, o, &origin.Request{Path: "/a.ts"})
		readAll(t, first)
		lastMod, err := http.ParseTime(first.Header.Get("Last-Modified"))
		if err != nil {
			t.Fatalf("Last-Modified: %v", err)
		}

		for _, tc := range []struct {
			name   string
			req    origin.Request
			status int
			body   string
		}{
			{"If-None-Match same", origin.Request{IfNoneMatch: etag}, http.StatusNotModified, ""},
			{"If-None-Match other", origin.Request{IfNoneMatch: `"other"`}, http.StatusOK, string(body)},
			{"If-Modified-Since later", origin.Request{IfModifiedSince: lastMod.Add(time.Hour)}, http.StatusNotModified, ""},
			{"If-Modified-Since earlier", origin.Request{IfModifiedSince: lastMod.Add(-time.Hour)}, http.StatusOK, string(body)},
			{"If-Match wrong", origin.Request{IfMatch: `"0123456789abcdef0123456789abcdef"`}, http.StatusPreconditionFailed, ""},
			{"If-Match right with range", origin.Request{IfMatch: etag, Range: "bytes=0-3"}, http.StatusPartialContent, "0123"},
			{"If-Match wrong with range", origin.Request{IfMatch: `"0123456789abcdef0123456789abcdef"`, Range: "bytes=0-3"}, http.StatusPreconditionFailed, ""},
		} {
			r := tc.req
			r.Path = "/a.ts"
			resp := fetchOK(t, o, &r)
			got := string(readAll(t, resp))
			if resp.Status != tc.status || got != tc.body {
				t.Errorf("%s: status %d body %q, want %d %q", tc.name, resp.Status, got, tc.status, tc.body)
			}
			if tc.status == http.StatusNotModified && resp.Header.Get("Etag") != etag {
				t.Errorf("%s: 304 ETag = %q, want %q", tc.name, resp.Header.Get("Etag"), etag)
			}
		}
	})

	t.Run("prefix", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		put(t, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("vod/a/b.ts"), Body: bytes.NewReader(body)})
		for _, prefix := range []string{"vod", "vod/", "/vod/"} {
			o := newTestS3(t, srv, bucket, prefix)
			if o.Name() != "s3://"+bucket+"/vod/" {
				t.Errorf("prefix %q: Name = %q", prefix, o.Name())
			}
			resp := fetchOK(t, o, &origin.Request{Path: "/a/b.ts"})
			if got := readAll(t, resp); resp.Status != http.StatusOK || !bytes.Equal(got, body) {
				t.Errorf("prefix %q: status %d body %q", prefix, resp.Status, got)
			}
			resp = fetchOK(t, o, &origin.Request{Path: "/vod/a/b.ts"})
			if readAll(t, resp); resp.Status != http.StatusNotFound {
				t.Errorf("prefix %q: the prefix was applied twice? status %d", prefix, resp.Status)
			}
		}
		o := newTestS3(t, srv, bucket, "vod")
		if err := o.Put(t.Context(), "c/d.ts", bytes.NewReader(body), int64(len(body)), "", "", nil); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if _, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("vod/c/d.ts")}); err != nil {
			t.Errorf("Put with prefix vod did not store vod/c/d.ts: %v", err)
		}
		if root := newTestS3(t, srv, bucket, ""); root.Name() != "s3://"+bucket+"/" {
			t.Errorf("Name = %q", root.Name())
		}
	})

	t.Run("connection reuse", func(t *testing.T) {
		t.Parallel()
		bucket := testenv.Bucket(t, srv)
		o := newTestS3(t, srv, bucket, "")
		put(t, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.ts"), Body: bytes.NewReader(body)})
		var newConns, reused int
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				} else {
					newConns++
				}
			},
		})
		const n = 50
		for i := range n {
			// Alternate hits, misses and ranges: error answers must leave the connection usable too.
			r := &origin.Request{Path: "/a.ts"}
			switch i % 3 {
			case 1:
				r.Path = "/missing.ts"
			case 2:
				r.Range = "bytes=1-2"
			}
			resp, err := o.Fetch(ctx, r)
			if err != nil {
				t.Fatalf("Fetch %d: %v", i, err)
			}
			readAll(t, resp)
		}
		if newConns > 2 || newConns+reused < n {
			t.Fatalf("%d fetches opened %d connections and reused %d, want at most 2 new", n, newConns, reused)
		}
	})

	t.Run("EnsureBucket", func(t *testing.T) {
		t.Parallel()
		o := newTestS3(t, srv, fmt.Sprintf("ensure-%d", time.Now().UnixNano()), "")
		for range 2 { // creates, then finds it
			if err := o.EnsureBucket(t.Context()); err != nil {
				t.Fatalf("EnsureBucket: %v", err)
			}
		}
		if err := o.Put(t.Context(), "x", strings.NewReader("x"), 1, "", "", nil); err != nil {
			t.Fatalf("Put into the ensured bucket: %v", err)
		}
	})
}

// TestS3OriginDown checks that a stopped MinIO is an error (so the edge fails over), not a
// response, and that the client recovers when the server comes back.
func TestS3OriginDown(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.Bucket(t, srv)
	o := newTestS3(t, srv, bucket, "")
	if err := o.Put(t.Context(), "a.ts", strings.NewReader("abc"), 3, "", "", nil); err != nil {
		t.Fatalf("Put: %v", err)
	}
	readAll(t, fetchOK(t, o, &origin.Request{Path: "/a.ts"})) // leaves an idle connection in the pool

	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	resp, err := o.Fetch(t.Context(), &origin.Request{Path: "/a.ts"})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("Fetch from a stopped MinIO answered %d, want an error", resp.Status)
	}
	if !strings.Contains(err.Error(), "/a.ts") || !strings.Contains(err.Error(), o.Name()) {
		t.Errorf("error %q does not name the path and the origin", err)
	}
	t.Logf("stopped origin: %v", err)

	if err := srv.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got := string(readAll(t, fetchOK(t, o, &origin.Request{Path: "/a.ts"}))); got != "abc" {
		t.Fatalf("after Restart body = %q", got)
	}
}

// TestS3Timeout checks that an S3 endpoint that accepts connections and never answers is an
// origin.ErrTimeout after Timeout, not a hang.
func TestS3Timeout(t *testing.T) {
	addr := silentServer(t)
	o, err := New(t.Context(), Config{
		Config:  s3conf.Config{Endpoint: "http://" + addr, Bucket: "b", AccessKey: "k", SecretKey: "secret-key"},
		Timeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := o.Fetch(t.Context(), &origin.Request{Path: "/a.ts"})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("Fetch answered %d, want a timeout", resp.Status)
	}
	if !errors.Is(err, origin.ErrTimeout) {
		t.Fatalf("err = %v, want origin.ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timed out after %s, want about 200ms", d)
	}
}

// TestS3Unit covers what needs no server: paths that name no object never reach S3, and the
// mapping of S3 errors without an HTTP answer.
func TestS3Unit(t *testing.T) {
	calls := 0
	o := &Origin{bucket: "b", prefix: "p/", timeout: time.Second, name: "s3://b/p/",
		get: getObjectFunc(func(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
			calls++
			if got := aws.ToString(in.Key); got != "p/a b/c.ts" {
				t.Errorf("key = %q, want %q", got, "p/a b/c.ts")
			}
			return nil, errors.New("connection reset")
		})}
	for path, status := range map[string]int{"": 404, "/": 404, "/dir/": 404, "/bad%zz": 400} {
		resp := fetchOK(t, o, &origin.Request{Path: path})
		if resp.Status != status || resp.Body == nil {
			t.Errorf("Fetch %q: status %d, want %d", path, resp.Status, status)
		}
	}
	if calls != 0 {
		t.Fatalf("S3 was called %d times for paths that name no object", calls)
	}
	if _, err := o.Fetch(t.Context(), &origin.Request{Path: "/a%20b/c.ts"}); err == nil || calls != 1 {
		t.Fatalf("transport failure: err %v after %d calls, want an error after 1", err, calls)
	}
}

func TestS3ErrorStatuses(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusConflict, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		o := &Origin{bucket: "b", timeout: time.Second, name: "s3://b/",
			get: getObjectFunc(func(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
				return nil, &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &smithyhttp.ResponseError{
					Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{"X-Amz-origin.Request-Id": {"1"}}}},
					Err:      &smithy.GenericAPIError{Code: "Whatever", Message: "server said no"},
				}}
			})}
		resp := fetchOK(t, o, &origin.Request{Path: "/a.ts"})
		if b := readAll(t, resp); resp.Status != status || len(b) != 0 || len(resp.Header) != 0 {
			t.Errorf("status %d: got %d, body %q, header %v; want the status, no body, no header", status, resp.Status, b, resp.Header)
		}
	}
}

func TestNewS3Validation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no bucket", Config{Config: s3conf.Config{AccessKey: "a", SecretKey: "b"}}},
		{"slash in bucket", Config{Config: s3conf.Config{Bucket: "a/b", AccessKey: "a", SecretKey: "b"}}},
		{"half credentials", Config{Config: s3conf.Config{Bucket: "b", AccessKey: "a"}}},
		{"bad endpoint", Config{Config: s3conf.Config{Bucket: "b", Endpoint: "127.0.0.1:9000", AccessKey: "a", SecretKey: "b"}}},
		{"negative timeout", Config{Config: s3conf.Config{Bucket: "b", AccessKey: "a", SecretKey: "b"}, Timeout: -1}},
		{"negative conns", Config{Config: s3conf.Config{Bucket: "b", AccessKey: "a", SecretKey: "b"}, MaxConns: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(t.Context(), tc.cfg); !errors.Is(err, origin.ErrInvalidConfig) {
				t.Fatalf("New(%+v) err = %v, want origin.ErrInvalidConfig", tc.cfg, err)
			}
		})
	}
	o, err := New(t.Context(), Config{Config: s3conf.Config{Bucket: "b", AccessKey: "a", SecretKey: "b"}})
	if err != nil || o.timeout != origin.DefaultTimeout || o.region != DefaultRegion || o.Name() != "s3://b/" {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

// silentServer accepts connections and never answers; it returns its address.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return l.Addr().String()
}
