package origin

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/internal/testenv"
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

	resp := fetch(t, o, &Request{Path: "/big.mp4", Head: true, Range: "bytes=0-9"})
	if got := readAll(t, resp); resp.Status != http.StatusOK || len(got) != 0 || resp.ContentLength != 50<<20 {
		t.Fatalf("status %d, %d body bytes, length %d; want 200, 0, %d", resp.Status, len(got), resp.ContentLength, 50<<20)
	}
	if resp.Header.Get("Etag") != `"v1"` || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("headers %v", resp.Header)
	}
	resp = fetch(t, o, &Request{Path: "/missing", Head: true})
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

// TestS3Head: a Head request is a HeadObject: the object's headers, Content-Length included, no
// body; a missing key is a 404 and a matching If-None-Match a 304, as for a read.
func TestS3Head(t *testing.T) {
	t.Parallel()
	srv := testenv.MinIO(t)
	client := testenv.S3Client(t, srv)
	bucket := testenv.Bucket(t, srv)
	o := newTestS3(t, srv, bucket, "p")
	body := bytes.Repeat([]byte("x"), 3<<20)
	out, err := client.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("p/a/big.mp4"), Body: bytes.NewReader(body),
		ContentType: aws.String("video/mp4"), CacheControl: aws.String("max-age=60"),
		Metadata: map[string]string{"surrogate-key": "big"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp := fetch(t, o, &Request{Path: "/a/big.mp4", Head: true})
	if got := readAll(t, resp); resp.Status != http.StatusOK || len(got) != 0 || resp.ContentLength != int64(len(body)) {
		t.Fatalf("status %d, %d body bytes, length %d; want 200, 0, %d", resp.Status, len(got), resp.ContentLength, len(body))
	}
	for name, want := range map[string]string{
		"Content-Length": strconv.Itoa(len(body)), "Content-Type": "video/mp4", "Etag": aws.ToString(out.ETag),
		"Cache-Control": "max-age=60", "Surrogate-Key": "big", "Accept-Ranges": "bytes",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if resp.Header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}

	resp = fetch(t, o, &Request{Path: "/a/big.mp4", Head: true, IfNoneMatch: aws.ToString(out.ETag)})
	_ = readAll(t, resp)
	if resp.Status != http.StatusNotModified {
		t.Fatalf("If-None-Match: status %d, want 304", resp.Status)
	}
	resp = fetch(t, o, &Request{Path: "/a/missing.mp4", Head: true})
	_ = readAll(t, resp)
	if resp.Status != http.StatusNotFound {
		t.Fatalf("missing: status %d, want 404", resp.Status)
	}
}
