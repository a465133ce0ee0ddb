package s3origin

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

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
	resp := fetchOK(t, o, &origin.Request{Path: "/a/big.mp4", Head: true})
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

	resp = fetchOK(t, o, &origin.Request{Path: "/a/big.mp4", Head: true, IfNoneMatch: aws.ToString(out.ETag)})
	_ = readAll(t, resp)
	if resp.Status != http.StatusNotModified {
		t.Fatalf("If-None-Match: status %d, want 304", resp.Status)
	}
	resp = fetchOK(t, o, &origin.Request{Path: "/a/missing.mp4", Head: true})
	_ = readAll(t, resp)
	if resp.Status != http.StatusNotFound {
		t.Fatalf("missing: status %d, want 404", resp.Status)
	}
}
