package s3client_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3client"
	"github.com/duetcdn/duet/origin/s3conf"
)

// sent is one request as it left the client.
type sent struct {
	op     string // the S3 operation, from the query and method
	host   string
	path   string
	header http.Header
}

// recorder passes requests for allowed hosts to a real transport and records them; a request for
// any other host is refused unsent (a virtual-hosted bucket.127.0.0.1 must not reach a resolver).
type recorder struct {
	allowed string
	next    http.RoundTripper
	mu      sync.Mutex
	reqs    []sent
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, sent{op: opOf(req), host: req.URL.Host, path: req.URL.Path, header: req.Header.Clone()})
	r.mu.Unlock()
	if req.URL.Host != r.allowed {
		return nil, fmt.Errorf("test: request for %s refused unsent", req.URL.Host)
	}
	return r.next.RoundTrip(req)
}

func (r *recorder) requests() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.reqs...)
}

func opOf(req *http.Request) string {
	q := req.URL.Query()
	switch {
	case q.Has("delete"):
		return "DeleteObjects"
	case q.Has("uploads"):
		return "CreateMultipartUpload"
	case q.Has("partNumber"):
		return "UploadPart"
	case q.Has("uploadId") && req.Method == http.MethodPost:
		return "CompleteMultipartUpload"
	}
	return req.Method
}

func newRecorder(t *testing.T, srv *minioproc.Server) *recorder {
	t.Helper()
	u, err := url.Parse(srv.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &recorder{allowed: u.Host, next: tr}
}

// TestDefaultsAgainstMinIO: with only an endpoint, a bucket and keys, the client addresses MinIO
// path-style, sends no checksum MinIO was not asked for on uploads (no CRC32 headers, no
// aws-chunked trailers), still sends the checksum DeleteObjects requires, and MinIO accepts every
// one of those requests, multipart included.
func TestDefaultsAgainstMinIO(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.Bucket(t, srv)
	rec := newRecorder(t, srv)
	c, err := s3client.New(t.Context(), s3conf.Config{Endpoint: srv.Endpoint(), Bucket: bucket,
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()}, s3client.Options{HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	body := bytes.Repeat([]byte("duet"), 1<<10)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/one.ts"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	got, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/one.ts"), Range: aws.String("bytes=0-9")})
	if err != nil {
		t.Fatalf("ranged GetObject: %v", err)
	}
	part, err := io.ReadAll(got.Body)
	got.Body.Close()
	if err != nil || string(part) != "duetduetdu" {
		t.Fatalf("ranged GetObject read %q, %v", part, err)
	}
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("a/big.mp4")})
	if err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String("a/big.mp4"), UploadId: mp.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatalf("UploadPart: %v", err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("a/big.mp4"),
		UploadId: mp.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: up.ETag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	del, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{
		Objects: []types.ObjectIdentifier{{Key: aws.String("a/one.ts")}, {Key: aws.String("a/big.mp4")}}}})
	if err != nil || len(del.Errors) != 0 || len(del.Deleted) != 2 {
		t.Fatalf("DeleteObjects (S3 requires a checksum): %+v, %v", del, err)
	}

	seen := map[string]bool{}
	for _, r := range rec.requests() {
		seen[r.op] = true
		if !strings.HasPrefix(r.path, "/"+bucket+"/") && r.path != "/"+bucket {
			t.Errorf("%s went to %s%s: want path-style /%s/...", r.op, r.host, r.path, bucket)
		}
		checksums := checksumHeaders(r.header)
		switch r.op {
		case "DeleteObjects":
			if len(checksums) == 0 && r.header.Get("Content-Md5") == "" {
				t.Errorf("DeleteObjects carried no checksum, which S3 requires: %v", r.header)
			}
		default:
			if len(checksums) != 0 || strings.Contains(r.header.Get("Content-Encoding"), "aws-chunked") {
				t.Errorf("%s carried checksums nobody asked for: %v (Content-Encoding %q)", r.op, checksums, r.header.Get("Content-Encoding"))
			}
		}
	}
	for _, op := range []string{"PUT", "GET", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "DeleteObjects"} {
		if !seen[op] {
			t.Errorf("no %s request was recorded", op)
		}
	}
}

// checksumHeaders are the flexible-checksum headers of a request.
func checksumHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if k := strings.ToLower(k); strings.HasPrefix(k, "x-amz-checksum-") || k == "x-amz-sdk-checksum-algorithm" || k == "x-amz-trailer" {
			out = append(out, k)
		}
	}
	return out
}

// TestAddressing: path_style's default follows the endpoint (path-style for MinIO, virtual-hosted
// for AWS, with or without its endpoint), and an explicit false is obeyed even with an endpoint
// (TestDefaultsAgainstMinIO checks the path-style default against MinIO).
func TestAddressing(t *testing.T) {
	if c, err := s3client.New(t.Context(), s3conf.Config{Bucket: "media", AccessKey: "k", SecretKey: "s"}, s3client.Options{}); err != nil || c.Options().UsePathStyle {
		t.Fatalf("AWS (no endpoint): path style %v, %v; want virtual-hosted", c != nil && c.Options().UsePathStyle, err)
	}
	if c, err := s3client.New(t.Context(), s3conf.Config{Endpoint: "https://s3.eu-west-1.amazonaws.com", Bucket: "media",
		AccessKey: "k", SecretKey: "s"}, s3client.Options{}); err != nil || c.Options().UsePathStyle {
		t.Fatalf("AWS endpoint: path style %v, %v; want virtual-hosted", c != nil && c.Options().UsePathStyle, err)
	}
	if c, err := s3client.New(t.Context(), s3conf.Config{Bucket: "media", AccessKey: "k", SecretKey: "s"}, s3client.Options{}); err != nil || c.Options().Region != s3conf.DefaultRegion {
		t.Fatalf("default region: %v", err)
	}
	// An explicit false is obeyed with an endpoint. (What goes on the wire for an IP-address
	// endpoint is still path-style: the SDK cannot put a bucket in front of an IP address.)
	if c, err := s3client.New(t.Context(), s3conf.Config{Endpoint: "https://storage.example.com", Bucket: "media", PathStyle: new(false),
		AccessKey: "k", SecretKey: "s"}, s3client.Options{}); err != nil || c.Options().UsePathStyle {
		t.Fatalf("path_style false with an endpoint: path style %v, %v; want virtual-hosted", c != nil && c.Options().UsePathStyle, err)
	}
}

// TestCredentialRules: explicit keys are used as they are (right keys in the environment do not
// rescue a wrong secret, wrong ones do not spoil right keys); without keys the environment's
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY come first, then the AWS chain (here the shared
// credentials file); with none of them CheckCredentials says so; half a key pair is refused.
// Not parallel: the chain reads the process environment.
func TestCredentialRules(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.Bucket(t, srv)
	dir := t.TempDir()
	// No ambient AWS identity, and no instance metadata service: nothing leaves loopback.
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-credentials"))

	right := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey(), "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey()}
	wrong := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey(), "AWS_SECRET_ACCESS_KEY=wrong-secret"}
	put := func(t *testing.T, cfg s3conf.Config, environ []string) error {
		t.Helper()
		cfg.Endpoint, cfg.Bucket = srv.Endpoint(), bucket
		c, err := s3client.New(t.Context(), cfg, s3client.Options{Environ: environ, MaxAttempts: 1})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		_, err = c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("creds"), Body: strings.NewReader("x")})
		return err
	}
	denied := func(err error) bool {
		var re *smithyhttp.ResponseError
		return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
	}

	t.Run("explicit keys win over the environment", func(t *testing.T) {
		if err := put(t, s3conf.Config{AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()}, wrong); err != nil {
			t.Fatalf("right keys with a wrong environment: %v", err)
		}
		if err := put(t, s3conf.Config{AccessKey: srv.AccessKey(), SecretKey: "wrong-secret"}, right); !denied(err) {
			t.Fatalf("a wrong explicit secret with right keys in the environment: %v, want 403", err)
		}
	})
	t.Run("environment keys without explicit ones", func(t *testing.T) {
		if err := put(t, s3conf.Config{}, right); err != nil {
			t.Fatalf("keys from the environment: %v", err)
		}
	})
	t.Run("shared credentials file through the AWS chain", func(t *testing.T) {
		file := filepath.Join(dir, "credentials")
		if err := os.WriteFile(file, []byte("[default]\naws_access_key_id = "+srv.AccessKey()+"\naws_secret_access_key = "+srv.SecretKey()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
		if err := put(t, s3conf.Config{}, []string{}); err != nil {
			t.Fatalf("keys from the shared credentials file: %v", err)
		}
	})
	t.Run("no credentials anywhere", func(t *testing.T) {
		c, err := s3client.New(t.Context(), s3conf.Config{Endpoint: srv.Endpoint(), Bucket: bucket}, s3client.Options{Environ: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s3client.CheckCredentials(t.Context(), c); !errors.Is(err, s3client.ErrNoCredentials) {
			t.Fatalf("CheckCredentials = %v, want ErrNoCredentials", err)
		}
	})
	t.Run("half a key pair", func(t *testing.T) {
		_, err := s3client.New(t.Context(), s3conf.Config{Endpoint: srv.Endpoint(), Bucket: bucket, AccessKey: "only-the-key"}, s3client.Options{})
		if !errors.Is(err, s3conf.ErrInvalid) || !errors.Is(err, s3conf.ErrCredentials) || !strings.Contains(err.Error(), "secret_key") {
			t.Fatalf("New = %v, want ErrInvalid and ErrCredentials naming secret_key", err)
		}
	})
}

// TestRetries: a 503 is tried DefaultMaxAttempts times by default and MaxAttempts times when set,
// and a client's retries are not rationed by a retry quota (many failed requests in a row are
// each still retried).
func TestRetries(t *testing.T) {
	var calls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`<Error><Code>SlowDown</Code><Message>busy</Message></Error>`))
	}))
	t.Cleanup(ts.Close)
	for _, tc := range []struct {
		name     string
		attempts int
		want     int64
	}{{"default", 0, s3client.DefaultMaxAttempts}, {"edge-like", 2, 2}, {"no retry", 1, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s3client.New(t.Context(), s3conf.Config{Endpoint: ts.URL, Bucket: "b", AccessKey: "k", SecretKey: "s"},
				s3client.Options{MaxAttempts: tc.attempts, MaxBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			// The standard retryer's quota (500 tokens, 5 per retry) would stop retrying after
			// 100 retries; 60 requests × 2 retries must all still retry.
			const requests = 60
			calls.Store(0)
			for range requests {
				if _, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")}); err == nil {
					t.Fatal("a 503 was a success")
				}
			}
			if got := calls.Load(); got != requests*tc.want {
				t.Fatalf("%d requests reached the server, want %d (%d attempts each)", got, requests*tc.want, tc.want)
			}
		})
	}
}
