package devcluster

import (
	"bytes"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/internal/sample"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/upload"
)

// TestSampleUploadedWithCacheControl: the dev sample's objects get the Cache-Control `duet
// upload` gives their kind (a year for segments, a minute for the multivariant playlist...), and
// a bucket that already holds the same bytes without it (from an older `duet dev`) gets it too.
func TestSampleUploadedWithCacheControl(t *testing.T) {
	t.Parallel()
	m := testenv.MinIO(t)
	r := &region{name: "a", minio: m, bucket: testenv.Bucket(t, m)}
	c := &cluster{regions: []*region{r}}
	client := testenv.S3Client(t, m)
	// An older upload: the master playlist's bytes, without Cache-Control.
	var master sample.File
	for _, f := range sample.Stream() {
		if f.Path == sample.Master {
			master = f
		}
	}
	if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(r.bucket),
		Key: aws.String(samplePrefix + master.Path), Body: bytes.NewReader(master.Body)}); err != nil {
		t.Fatal(err)
	}
	files, err := c.uploadSample(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, f := range files {
		out, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(r.bucket), Key: aws.String(samplePrefix + f.Path)})
		if err != nil {
			t.Fatalf("head %s: %v", f.Path, err)
		}
		want := upload.DefaultCacheControl(upload.Classify(f.Path), f.Path, f.Body)
		if got := aws.ToString(out.CacheControl); got != want || want == "" {
			t.Errorf("%s: Cache-Control %q, want %q", f.Path, got, want)
		}
		kinds[want] = true
	}
	for _, want := range []string{upload.CacheSegment, upload.CacheMultivariant} {
		if !kinds[want] {
			t.Errorf("no sample file got %q; kinds seen: %v", want, kinds)
		}
	}
	if !strings.HasSuffix(master.Path, ".m3u8") {
		t.Fatalf("sample.Master is %q", master.Path)
	}
}
