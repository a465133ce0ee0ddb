package upload_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/upload"
)

// env is one MinIO shared by the subtests of a test, each with its own bucket.
type env struct {
	srv *minioproc.Server
}

func (e env) region(t *testing.T) (upload.Region, *s3.Client) {
	t.Helper()
	r := upload.Region{Name: "a", Config: s3conf.Config{Endpoint: e.srv.Endpoint(), Bucket: testenv.Bucket(t, e.srv),
		AccessKey: e.srv.AccessKey(), SecretKey: e.srv.SecretKey()}}
	c, err := upload.NewClient(t.Context(), r, nil, 16)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func write(t *testing.T, dir, rel string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// random writes size deterministic pseudo-random bytes (PCG, fast) to p and returns their sha256.
func random(t testing.TB, p string, size int64, seed uint64) [32]byte {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		for i := 0; i+8 <= len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
		}
		n := min(left, int64(len(buf)))
		h.Write(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
	return [32]byte(h.Sum(nil))
}

func run(t *testing.T, cfg upload.Config, api upload.API, paths ...string) upload.Result {
	t.Helper()
	u, err := upload.New(cfg, api)
	if err != nil {
		t.Fatal(err)
	}
	res, err := u.Run(t.Context(), paths, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res
}

func head(t *testing.T, c *s3.Client, bucket, key string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	return out
}

func exists(t *testing.T, c *s3.Client, bucket, key string) bool {
	t.Helper()
	_, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	return err == nil
}

func pendingUploads(t *testing.T, c *s3.Client, bucket string) int {
	t.Helper()
	out, err := c.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

func TestUpload(t *testing.T) {
	e := env{srv: testenv.MinIO(t)}

	t.Run("folder: kinds get their headers, tags become surrogate keys, dotfiles stay home", func(t *testing.T) {
		r, c := e.region(t)
		dir := t.TempDir()
		write(t, dir, "master.m3u8", []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n720p/index.m3u8\n"))
		write(t, dir, "720p/index.m3u8", []byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n"))
		write(t, dir, "vod/index.m3u8", []byte("#EXTM3U\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n"))
		write(t, dir, "live.mpd", []byte(`<MPD type="dynamic"></MPD>`))
		write(t, dir, "720p/seg1.ts", []byte("ts bytes"))
		write(t, dir, "720p/init.mp4", []byte("init"))
		write(t, dir, "720p/chunk-1.m4s", []byte("m4s"))
		write(t, dir, "poster.jpg", []byte("jpg"))
		write(t, dir, "notes.txt", []byte("hello"))
		write(t, dir, ".DS_Store", []byte("x"))
		write(t, dir, ".git/config", []byte("x"))
		cfg := upload.Config{Bucket: r.Bucket, Prefix: "/vod/abc/", Tags: []string{"show-abc", "vod"},
			CacheControlByKind: map[upload.Kind]string{upload.KindImage: "public, max-age=5"}}
		res := run(t, cfg, c, dir)
		if res.Uploaded != 9 || res.Failed != 0 || res.Hidden != 2 {
			t.Fatalf("uploaded %d failed %d hidden %d, want 9 0 2", res.Uploaded, res.Failed, res.Hidden)
		}
		want := map[string][2]string{
			"vod/abc/master.m3u8":      {"application/vnd.apple.mpegurl", upload.CacheMultivariant},
			"vod/abc/720p/index.m3u8":  {"application/vnd.apple.mpegurl", upload.CacheLivePlaylist},
			"vod/abc/vod/index.m3u8":   {"application/vnd.apple.mpegurl", upload.CacheVODPlaylist},
			"vod/abc/live.mpd":         {"application/dash+xml", upload.CacheLivePlaylist},
			"vod/abc/720p/seg1.ts":     {"video/mp2t", upload.CacheSegment},
			"vod/abc/720p/init.mp4":    {"video/mp4", upload.CacheSegment},
			"vod/abc/720p/chunk-1.m4s": {"video/iso.segment", upload.CacheSegment},
			"vod/abc/poster.jpg":       {"image/jpeg", "public, max-age=5"},
			"vod/abc/notes.txt":        {"text/plain; charset=utf-8", upload.CacheOther},
		}
		for key, w := range want {
			h := head(t, c, r.Bucket, key)
			if got := aws.ToString(h.ContentType); got != w[0] {
				t.Errorf("%s: Content-Type %q, want %q", key, got, w[0])
			}
			if got := aws.ToString(h.CacheControl); got != w[1] {
				t.Errorf("%s: Cache-Control %q, want %q", key, got, w[1])
			}
			if got := h.Metadata["surrogate-key"]; got != "show-abc vod" {
				t.Errorf("%s: surrogate-key %q, want %q", key, got, "show-abc vod")
			}
		}
		for _, key := range []string{"vod/abc/.DS_Store", "vod/abc/.git/config"} {
			if exists(t, c, r.Bucket, key) {
				t.Errorf("hidden %s was uploaded", key)
			}
		}
	})

	t.Run("second run skips everything; a changed file re-uploads, multipart included", func(t *testing.T) {
		r, c := e.region(t)
		dir := t.TempDir()
		for i := range 6 {
			write(t, dir, "s/"+string(rune('a'+i))+".ts", []byte(strings.Repeat("x", 1000+i)))
		}
		write(t, dir, "s/empty.vtt", nil)
		big := filepath.Join(dir, "s", "big.mp4")
		random(t, big, 12<<20+3, 1) // three 5 MiB parts
		cfg := upload.Config{Bucket: r.Bucket, PartSize: 5 << 20}
		if res := run(t, cfg, c, dir); res.Uploaded != 8 || res.Bytes != 6*1000+15+12<<20+3 {
			t.Fatalf("first run: uploaded %d (%d bytes), want 8", res.Uploaded, res.Bytes)
		}
		if et := aws.ToString(head(t, c, r.Bucket, "s/big.mp4").ETag); !strings.HasSuffix(et, `-3"`) {
			t.Fatalf("big.mp4 ETag %s: want a 3-part multipart ETag", et)
		}
		if res := run(t, cfg, c, dir); res.Uploaded != 0 || res.Skipped != 8 {
			t.Fatalf("second run: uploaded %d skipped %d, want 0 and 8", res.Uploaded, res.Skipped)
		}
		// Same sizes, other bytes: only the ETag can tell.
		write(t, dir, "s/a.ts", []byte(strings.Repeat("y", 1000)))
		f, err := os.OpenFile(big, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{0xAA, 0xBB}, 7<<20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		res := run(t, cfg, c, dir)
		var reuploaded []string
		for _, it := range res.Items {
			if it.Action == upload.ActionUpload {
				reuploaded = append(reuploaded, it.Key+" "+it.Reason)
			}
		}
		slices.Sort(reuploaded)
		if want := []string{"s/a.ts content differs", "s/big.mp4 content differs"}; !slices.Equal(reuploaded, want) {
			t.Fatalf("third run uploaded %q, want %q", reuploaded, want)
		}
		// Another tool's part size (8 MiB, the AWS CLI's) is recognised too.
		cfg.PartSize = 8 << 20
		if res := run(t, cfg, c, dir); res.Uploaded != 0 {
			t.Fatalf("with another part size: uploaded %d, want 0", res.Uploaded)
		}
	})

	t.Run("unreadable files are named and fail; the others upload", func(t *testing.T) {
		r, c := e.region(t)
		dir := t.TempDir()
		write(t, dir, "ok1.ts", []byte("1"))
		write(t, dir, "ok2.ts", []byte("2"))
		dangling := filepath.Join(dir, "gone.ts")
		if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
			t.Fatal(err)
		}
		fifo := filepath.Join(dir, "pipe.ts")
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		missing := filepath.Join(t.TempDir(), "missing.ts")
		res := run(t, upload.Config{Bucket: r.Bucket}, c, dir, missing)
		if res.Uploaded != 2 || res.Failed != 3 {
			t.Fatalf("uploaded %d failed %d, want 2 and 3", res.Uploaded, res.Failed)
		}
		var failed []string
		for _, it := range res.FailedItems() {
			failed = append(failed, it.Path)
			if it.Err == nil || !strings.Contains(it.Err.Error(), it.Path) {
				t.Errorf("%s: error %v does not name the file", it.Path, it.Err)
			}
		}
		slices.Sort(failed)
		if want := []string{dangling, fifo, missing}; !slices.Equal(failed, want) {
			t.Fatalf("failed %q, want %q", failed, want)
		}
		if !exists(t, c, r.Bucket, "ok1.ts") || !exists(t, c, r.Bucket, "ok2.ts") {
			t.Fatal("the readable files were not uploaded")
		}
	})

	t.Run("a failing multipart upload is aborted: nothing visible, no parts left", func(t *testing.T) {
		r, c := e.region(t)
		dir := t.TempDir()
		random(t, filepath.Join(dir, "big.ts"), 26<<20, 2) // six parts
		write(t, dir, "small.ts", []byte("fine"))
		api := &faulty{Client: c, failPart: 3}
		res := run(t, upload.Config{Bucket: r.Bucket, PartSize: 5 << 20, Parts: 2}, api, dir)
		if res.Failed != 1 || res.Uploaded != 1 {
			t.Fatalf("failed %d uploaded %d, want 1 and 1", res.Failed, res.Uploaded)
		}
		if f := res.FailedItems()[0]; !strings.Contains(f.Err.Error(), "big.ts") || !strings.Contains(f.Err.Error(), "injected") {
			t.Fatalf("error %v: want it to name big.ts and the cause", f.Err)
		}
		if exists(t, c, r.Bucket, "big.ts") {
			t.Fatal("a failed multipart upload is visible")
		}
		if n := pendingUploads(t, c, r.Bucket); n != 0 {
			t.Fatalf("%d multipart uploads left open", n)
		}
	})

	t.Run("a cancelled multipart upload is aborted", func(t *testing.T) {
		r, c := e.region(t)
		dir := t.TempDir()
		random(t, filepath.Join(dir, "big.ts"), 31<<20, 3)
		ctx, cancel := context.WithCancel(t.Context())
		api := &faulty{Client: c, afterPart: cancel} // cancel once the first part is stored
		u, err := upload.New(upload.Config{Bucket: r.Bucket, PartSize: 5 << 20, Parts: 1}, api)
		if err != nil {
			t.Fatal(err)
		}
		res, err := u.Run(ctx, []string{dir}, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run error %v, want context.Canceled", err)
		}
		if res.Failed != 1 {
			t.Fatalf("failed %d, want 1", res.Failed)
		}
		if exists(t, c, r.Bucket, "big.ts") {
			t.Fatal("a cancelled multipart upload is visible")
		}
		if n := pendingUploads(t, c, r.Bucket); n != 0 {
			t.Fatalf("%d multipart uploads left open", n)
		}
	})

	t.Run("dry run plans and compares but touches nothing", func(t *testing.T) {
		r, c := e.region(t)
		dir := t.TempDir()
		write(t, dir, "a.ts", []byte("a"))
		write(t, dir, "b.ts", []byte("b"))
		run(t, upload.Config{Bucket: r.Bucket}, c, filepath.Join(dir, "a.ts"))
		write(t, dir, "c.ts", []byte("c"))
		res := run(t, upload.Config{Bucket: r.Bucket, DryRun: true}, c, dir)
		got := map[string]upload.Action{}
		for _, it := range res.Items {
			got[it.Key] = it.Action
		}
		if got["a.ts"] != upload.ActionSkip || got["b.ts"] != upload.ActionUpload || got["c.ts"] != upload.ActionUpload {
			t.Fatalf("plan %v: want a skipped, b and c uploaded", got)
		}
		if exists(t, c, r.Bucket, "b.ts") || res.Bytes != 0 {
			t.Fatal("dry run uploaded")
		}
	})

	t.Run("bucket check: missing bucket, wrong secret, dead endpoint", func(t *testing.T) {
		r, c := e.region(t)
		if err := upload.CheckBucket(t.Context(), c, r); err != nil {
			t.Fatalf("good bucket: %v", err)
		}
		missing := r
		missing.Bucket = "no-such-bucket"
		if err := upload.CheckBucket(t.Context(), c, missing); !errors.Is(err, upload.ErrBucketNotFound) || !strings.Contains(err.Error(), "no-such-bucket") {
			t.Fatalf("missing bucket: %v", err)
		}
		bad := r
		bad.SecretKey = "wrong-secret"
		bc, err := upload.NewClient(t.Context(), bad, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := upload.CheckBucket(t.Context(), bc, bad); !errors.Is(err, upload.ErrAccessDenied) || !strings.Contains(err.Error(), "secret_key") {
			t.Fatalf("wrong secret: %v", err)
		}
		dead := r
		dead.Endpoint = "http://127.0.0.1:1"
		dc, err := upload.NewClient(t.Context(), dead, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := upload.CheckBucket(t.Context(), dc, dead); !errors.Is(err, upload.ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Fatalf("dead endpoint: %v", err)
		}
	})
}

// TestLargeMultipartIdenticalBytes: a 210 MiB file uploaded in parallel parts reads back with the
// same sha256.
func TestLargeMultipartIdenticalBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and uploads 210 MiB; runs without -short")
	}
	e := env{srv: testenv.MinIO(t)}
	r, c := e.region(t)
	dir := t.TempDir()
	const size = 210<<20 + 12345
	sum := random(t, filepath.Join(dir, "movie.mp4"), size, 42)
	start := time.Now()
	res := run(t, upload.Config{Bucket: r.Bucket, Prefix: "vod/movie"}, c, filepath.Join(dir, "movie.mp4"))
	took := time.Since(start)
	if res.Uploaded != 1 || res.Bytes != size {
		t.Fatalf("uploaded %d (%d bytes)", res.Uploaded, res.Bytes)
	}
	t.Logf("210 MiB in %s: %.0f MiB/s", took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds())
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(r.Bucket), Key: aws.String("vod/movie/movie.mp4")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	if et := aws.ToString(out.ETag); !strings.HasSuffix(et, `-14"`) {
		t.Errorf("ETag %s: want 14 parts of 16 MiB", et)
	}
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		t.Fatal(err)
	}
	if got := [32]byte(h.Sum(nil)); got != sum {
		t.Fatalf("sha256 %x, uploaded %x", got, sum)
	}
}

// faulty is the real client with one injected failure or cancellation, to prove aborts.
type faulty struct {
	*s3.Client
	failPart  int32  // UploadPart of this part number fails
	afterPart func() // called after the first part is stored
	once      atomic.Bool
}

func (f *faulty) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if aws.ToInt32(in.PartNumber) == f.failPart {
		return nil, errors.New("injected part failure")
	}
	out, err := f.Client.UploadPart(ctx, in, opts...)
	if err == nil && f.afterPart != nil && f.once.CompareAndSwap(false, true) {
		f.afterPart()
	}
	return out, err
}
