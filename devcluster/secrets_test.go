package devcluster

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/duetcdn/duet/internal/testenv"
)

// TestSecretsArePrivateAndKept: the generated credentials are written 0600 (also over a wider
// file from an earlier run) and survive a restart.
func TestSecretsArePrivateAndKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, secretsFile)
	if err := os.WriteFile(p, []byte(`{"purge_token":"kept-from-before-0123"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s1, err := loadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", p, fi.Mode(), err)
	}
	s2, err := loadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 || s1.PurgeToken != "kept-from-before-0123" || len(s1.ControlToken) < 16 || s1.ControlToken == s1.EdgeAdminToken {
		t.Fatalf("secrets not kept, or weak: %+v then %+v", s1, s2)
	}
	// Each region's peer fill secret is its own (an edge takes peer requests only from its
	// region), long enough for the edge, and the same after a restart.
	if a, b := s1.peerSecret("eu-west"), s1.peerSecret("us-east"); a == b || len(a) < 16 || a != s2.peerSecret("eu-west") || strings.Contains(a, s1.PeerFill) {
		t.Fatalf("peer secrets: %q and %q", a, b)
	}
	if tok, err := ControlToken(dir); err != nil || tok != s1.ControlToken {
		t.Fatalf("ControlToken: %q %v", tok, err)
	}
}

// TestRoleOriginUsers gives a real MinIO the roles' users: the edges' credentials read (a
// missing object is a 404) but cannot write or delete; the replicator's and the uploader's write.
func TestRoleOriginUsers(t *testing.T) {
	t.Parallel()
	srv := testenv.MinIO(t)
	bucket := testenv.Bucket(t, srv)
	root := testenv.S3Client(t, srv)
	if _, err := root.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("vod/a.ts"),
		Body: strings.NewReader("segment")}); err != nil {
		t.Fatal(err)
	}
	sec, err := loadSecrets(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // again at the next start: nothing breaks
		for _, u := range sec.originUsers(bucket) {
			if err := srv.AddUser(t.Context(), u); err != nil {
				t.Fatal(err)
			}
		}
	}
	as := func(user, secret string) *s3.Client {
		return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.Endpoint()), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(user, secret, ""), RetryMaxAttempts: 1})
	}
	code := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	get := func(c *s3.Client, key string) string {
		out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err == nil {
			b, _ := io.ReadAll(out.Body)
			out.Body.Close()
			if string(b) != "segment" {
				return "wrong body " + string(b)
			}
		}
		return code(err)
	}
	put := func(c *s3.Client, key string) string {
		_, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("segment")})
		return code(err)
	}
	del := func(c *s3.Client, key string) string {
		_, err := c.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		return code(err)
	}
	edge, repl, up := as(edgeUser, sec.EdgeOrigin), as(replicatorUser, sec.ReplicatorOrigin), as(uploadUser, sec.UploadOrigin)
	for _, c := range []struct {
		what, got, want string
	}{
		{"edge reads", get(edge, "vod/a.ts"), "ok"},
		{"edge reads a missing object", get(edge, "vod/none.ts"), "NoSuchKey"},
		{"edge overwrites", put(edge, "vod/a.ts"), "AccessDenied"},
		{"edge writes a new object", put(edge, "vod/new.ts"), "AccessDenied"},
		{"edge deletes", del(edge, "vod/a.ts"), "AccessDenied"},
		{"edge with a wrong secret", get(as(edgeUser, "not-the-secret"), "vod/a.ts"), "SignatureDoesNotMatch"},
		{"uploader writes", put(up, "vod/b.ts"), "ok"},
		{"replicator writes", put(repl, "vod/c.ts"), "ok"},
		{"replicator deletes", del(repl, "vod/c.ts"), "ok"},
		{"edge still reads", get(edge, "vod/b.ts"), "ok"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s, want %s", c.what, c.got, c.want)
		}
	}
	// No role can make a bucket, nor touch another bucket.
	other := testenv.Bucket(t, srv)
	for name, c := range map[string]*s3.Client{"edge": edge, "replicator": repl, "uploader": up} {
		if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(other), Key: aws.String("x"), Body: strings.NewReader("x")}); code(err) != "AccessDenied" {
			t.Errorf("%s writes another bucket: %s", name, code(err))
		}
		if _, err := c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String("made-by-" + name)}); code(err) != "AccessDenied" {
			t.Errorf("%s creates a bucket: %s", name, code(err))
		}
	}
}

// TestControlAPIRefusesStrangersAndWebPages: the control API answers nothing but its help page
// without the control token, and refuses cross-site, non-JSON and rebound-Host commands.
func TestControlAPIRefusesStrangersAndWebPages(t *testing.T) {
	t.Parallel()
	sec, err := loadSecrets(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: t.TempDir(), sec: sec, log: slog.New(slog.DiscardHandler)}
	h, err := c.controlHandler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	bearer, js := "Bearer "+sec.ControlToken, "application/json"
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		want               string
	}{
		{"help", "GET", "/", nil, 200, "control API"},
		{"describe without token", "GET", "/v1/dev/cluster", nil, 401, "control token"},
		{"describe with the purge token", "GET", "/v1/dev/cluster", map[string]string{"Authorization": "Bearer " + sec.PurgeToken}, 401, "wrong bearer token"},
		{"describe", "GET", "/v1/dev/cluster", map[string]string{"Authorization": bearer}, 200, sec.PurgeToken},
		{"describe through a rebound name", "GET", "/v1/dev/cluster", map[string]string{"Authorization": bearer, "Host": "evil.example"}, 403, "Host"},
		{"stop without token", "POST", "/v1/dev/regions/eu/stop", map[string]string{"Content-Type": js}, 401, "bearer token"},
		{"stop as text/plain", "POST", "/v1/dev/regions/eu/stop", map[string]string{"Authorization": bearer, "Content-Type": "text/plain"}, 415, "application/json"},
		{"stop from a form", "POST", "/v1/dev/origins/eu/stop", map[string]string{"Authorization": bearer, "Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"},
		{"stop from a foreign Origin", "POST", "/v1/dev/edges/eu-1/stop", map[string]string{"Authorization": bearer, "Content-Type": js, "Origin": "http://evil.example"}, 403, "cross-site"},
		{"stop from a cross-site fetch", "POST", "/v1/dev/edges/eu-1/stop", map[string]string{"Authorization": bearer, "Content-Type": js, "Sec-Fetch-Site": "cross-site"}, 403, "cross-site"},
		{"stop, authorised (no such edge here)", "POST", "/v1/dev/edges/eu-1/stop", map[string]string{"Authorization": bearer, "Content-Type": js}, 404, "no edge named"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		if v := tc.hdr["Host"]; v != "" {
			req.Host = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %.300s, want %d mentioning %q", tc.name, resp.StatusCode, b, tc.status, tc.want)
		}
	}
}
