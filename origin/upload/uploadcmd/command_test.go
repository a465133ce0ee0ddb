package uploadcmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/vbauerster/mpb/v8"

	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/s3origin"
	uploadpkg "github.com/duetcdn/duet/origin/upload"
)

// TestUploadCommand runs `duet upload` as a user would, against a real MinIO, and reads its
// output: plain lines (stdout is not a terminal), a summary, failures named, a non-zero exit.
func TestUploadCommand(t *testing.T) {
	m := testenv.MinIO(t)
	s3c := testenv.S3Client(t, m)
	bucket := testenv.Bucket(t, m)
	dir := t.TempDir()
	conf := filepath.Join(dir, "upload.yaml")
	writeFile := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(conf, fmt.Sprintf(`regions:
  - {name: a, endpoint: %s, bucket: %s, access_key: %s, secret_key: %s, path_style: true}
  - {name: b, endpoint: %s, bucket: no-such-bucket, access_key: %s, secret_key: %s, path_style: true}
  - {name: c, endpoint: %s, bucket: %s, access_key: %s, secret_key: wrong, path_style: true}
  - {name: d, endpoint: %s, bucket: %s, access_key: %s}
`, m.Endpoint(), bucket, m.AccessKey(), m.SecretKey(),
		m.Endpoint(), m.AccessKey(), m.SecretKey(),
		m.Endpoint(), bucket, m.AccessKey(),
		m.Endpoint(), bucket, m.AccessKey()))
	src := filepath.Join(dir, "abc")
	writeFile(filepath.Join(src, "master.m3u8"), "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8\n")
	writeFile(filepath.Join(src, "720p/index.m3u8"), "#EXTM3U\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n")
	writeFile(filepath.Join(src, "720p/seg1.ts"), strings.Repeat("s", 2000))
	writeFile(filepath.Join(src, "720p/init.mp4"), "init")
	writeFile(filepath.Join(src, ".hidden"), "x")
	bigData := pattern(5, 11<<20+7) // three 5 MiB parts with --part_size 5MiB
	writeFile(filepath.Join(src, "720p/big.mp4"), string(bigData))
	fifo := filepath.Join(src, "720p/broken.ts")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	upload := func(args ...string) (string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"--config", conf}, args...), &out, &errb, nil)
		return out.String(), err
	}
	sortedLines := func(out, prefix string) []string {
		var l []string
		for s := range strings.Lines(out) {
			if strings.HasPrefix(s, prefix) {
				l = append(l, strings.TrimSpace(s))
			}
		}
		slices.Sort(l)
		return l
	}

	t.Run("first run uploads, names the failing file, exits non-zero", func(t *testing.T) {
		out, err := upload(src, "--region", "a", "--prefix", "/vod/abc/", "--tag", "show-abc", "--tag", "vod", "--part_size", "5MiB")
		if err == nil || !strings.Contains(err.Error(), "1 of 6 files failed: "+fifo) {
			t.Fatalf("error %v: want it to name %s\n%s", err, fifo, out)
		}
		want := []string{
			"uploaded vod/abc/720p/big.mp4 11.0 MiB",
			"uploaded vod/abc/720p/index.m3u8 42 B",
			"uploaded vod/abc/720p/init.mp4 4 B",
			"uploaded vod/abc/720p/seg1.ts 2.0 KiB",
			"uploaded vod/abc/master.m3u8 54 B",
		}
		if got := sortedLines(out, "uploaded vod/"); !slices.Equal(got, want) {
			t.Errorf("uploaded lines %q, want %q\n%s", got, want, out)
		}
		for _, re := range []string{
			`(?m)^failed .*broken\.ts: not a regular file \(a named pipe\)$`,
			`(?m)^uploading vod/abc/720p/big\.mp4 11\.0 MiB in parts$`,
			`(?m)^uploaded 5 files \(11\.0 MiB\) to s3://` + bucket + ` in \S+, [0-9.]+ MiB/s; skipped 0 unchanged; 1 failed$`,
			`(?m)^left out 1 hidden files and folders`,
			`(?m)^FAILED .*broken\.ts: `,
		} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("output does not match %s:\n%s", re, out)
			}
		}
		h, err := s3c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("vod/abc/720p/seg1.ts")})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(h.ContentType) != "video/mp2t" || aws.ToString(h.CacheControl) != "public, max-age=31536000, immutable" || h.Metadata["surrogate-key"] != "show-abc vod" {
			t.Errorf("seg1.ts headers: %s / %s / %v", aws.ToString(h.ContentType), aws.ToString(h.CacheControl), h.Metadata)
		}
		// The multipart object has the file's bytes, and the edge's S3 origin reads its tags as
		// Surrogate-Key, so `duet purge tag show-abc` reaches it.
		o, err := s3origin.New(t.Context(), s3origin.Config{Prefix: "vod/abc",
			Config: s3conf.Config{Endpoint: m.Endpoint(), Bucket: bucket, AccessKey: m.AccessKey(), SecretKey: m.SecretKey()}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := o.Fetch(t.Context(), &origin.Request{Path: "/720p/big.mp4"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || sha256.Sum256(got) != sha256.Sum256(bigData) {
			t.Fatalf("big.mp4 read back %d bytes (%v), sha256 differs from the file's", len(got), err)
		}
		if sk := resp.Header.Get("Surrogate-Key"); sk != "show-abc vod" {
			t.Errorf("edge origin sees Surrogate-Key %q", sk)
		}
		if et := resp.Header.Get("Etag"); !strings.HasSuffix(et, `-3"`) {
			t.Errorf("big.mp4 ETag %s: want 3 parts", et)
		}
	})

	t.Run("second run skips every unchanged file", func(t *testing.T) {
		if err := os.Remove(fifo); err != nil {
			t.Fatal(err)
		}
		out, err := upload(src, "--region", "a", "--prefix", "vod/abc", "--tag", "show-abc", "--tag", "vod", "--part_size", "5MiB")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got := sortedLines(out, "skipped vod/"); len(got) != 5 {
			t.Errorf("skipped lines %q, want 5\n%s", got, out)
		}
		if !regexp.MustCompile(`(?m)^uploaded 0 files \(0 B\) .*; skipped 5 unchanged; 0 failed$`).MatchString(out) {
			t.Errorf("summary:\n%s", out)
		}
	})

	t.Run("dry run says what would change and changes nothing", func(t *testing.T) {
		writeFile(filepath.Join(src, "720p/seg2.ts"), "new")
		out, err := upload(src, "--region", "a", "--prefix", "vod/abc", "--dry-run", "--cache-control-segment", "max-age=9")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "would upload vod/abc/720p/seg2.ts 3 B (new; video/mp2t, max-age=9)") ||
			!strings.Contains(out, "would skip vod/abc/master.m3u8 (unchanged)") ||
			!strings.Contains(out, "dry run, nothing changed: would upload 1 files (3 B)") {
			t.Errorf("dry run output:\n%s", out)
		}
		if _, err := s3c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("vod/abc/720p/seg2.ts")}); err == nil {
			t.Error("dry run uploaded seg2.ts")
		}
	})

	t.Run("one bucket from flags and AWS_* credentials", func(t *testing.T) {
		var out bytes.Buffer
		err := run(t.Context(), []string{filepath.Join(src, "720p/seg2.ts"), "--endpoint", m.Endpoint(), "--bucket", bucket, "--prefix", "x"},
			&out, &out, []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey(), "AWS_SECRET_ACCESS_KEY=" + m.SecretKey()})
		if err != nil || !strings.Contains(out.String(), "uploaded x/seg2.ts 3 B") {
			t.Fatalf("%v\n%s", err, &out)
		}
	})

	t.Run("no credentials anywhere", func(t *testing.T) {
		for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
			t.Setenv(v, "")
			os.Unsetenv(v)
		}
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
		var out bytes.Buffer
		err := run(t.Context(), []string{src, "--endpoint", m.Endpoint(), "--bucket", bucket}, &out, &out, nil)
		if err == nil || !strings.Contains(err.Error(), "no credentials for region") || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
			t.Fatalf("error %v\n%s", err, &out)
		}
	})

	for _, tc := range []struct{ name, region, want string }{
		{"unknown region", "zz", `unknown region "zz": known regions are a, b, c, d`},
		{"missing bucket", "b", `bucket not found: bucket "no-such-bucket" of region b`},
		{"wrong secret", "c", "access denied to bucket"},
		{"missing secret", "d", "no credentials: region d: set access_key and secret_key together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := upload(src, "--region", tc.region)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if out != "" {
				t.Fatalf("something ran before the check failed:\n%s", out)
			}
		})
	}
}

// TestUploadBars drives the terminal progress UI with a run's calls (mpb renders into a buffer),
// so its bookkeeping is checked under -race.
func TestUploadBars(t *testing.T) {
	var buf bytes.Buffer
	b := newBars(&buf, 10, mpb.WithAutoRefresh())
	b.Begin(3, 130)
	big := uploadItem("big.ts", 100)
	b.Started(big)
	b.Advanced(big, 60)
	b.Advanced(big, 40)
	big.Action = uploadpkg.ActionUpload
	b.Finished(big)
	skipped := uploadItem("same.ts", 10)
	skipped.Action = uploadpkg.ActionSkip
	b.Finished(skipped)
	failed := uploadItem("bad.ts", 20)
	failed.Action, failed.Err = uploadpkg.ActionFail, fmt.Errorf("read bad.ts: boom")
	b.Finished(failed)
	b.Close()
	if b.want != 100 {
		t.Fatalf("total %d bytes, want 100 once skipped and failed files are taken out", b.want)
	}
	if !strings.Contains(buf.String(), "failed bad.ts: read bad.ts: boom") || !strings.Contains(buf.String(), "total (3 files)") {
		t.Fatalf("output:\n%s", buf.String())
	}
}

func uploadItem(key string, size int64) uploadpkg.Item {
	return uploadpkg.Item{Path: key, Key: key, Size: size}
}

// run runs `duet upload ARGS` as the duet binary does: errors returned, not printed with usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	cmd := Command(func() (*slog.Logger, error) { return slog.New(slog.NewTextHandler(stderr, nil)), nil }, stdout, environ)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd.ExecuteContext(ctx)
}

// pattern is size bytes that differ from those of another seed n.
func pattern(n, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + n*13 + i/251)
	}
	return b
}
