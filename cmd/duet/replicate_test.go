package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/replicate"
)

// TestReplicateConfigErrorsSayWhatToFix: a bad replicate configuration fails before anything
// connects, naming the settings to fix.
func TestReplicateConfigErrorsSayWhatToFix(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"replicate", "--region", "A", "--purge_mode", "gentle",
		"--regions", "name=A;bucket=a;access_key=ak;secret_key=sk1234567,name=B;endpoint=ftp://x"}, &out, &out, nil)
	if err == nil {
		t.Fatal("a bad configuration was accepted")
	}
	for _, want := range []string{"purge_mode \"gentle\"", "regions[1].bucket is required", "regions[1].endpoint", "regions[1]: access_key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestReplicateRole runs `duet replicate` for region B from a YAML file (secrets from the
// environment): an object put into A's MinIO appears in B's, and the admin listener answers
// /readyz and /metrics.
func TestReplicateRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	type reg struct {
		leaf  string
		js    jetstream.JetStream
		url   string
		minio *minioproc.Server
		s3    *s3.Client
	}
	start := func(name string, sc natsserver.Config) reg {
		sc.Region, sc.Port, sc.StoreDir = name, -1, t.TempDir()
		ns, err := natsserver.Start(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{ns.ClientURL()}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		notify := &minioproc.NotifyNATS{Address: ns.Addr().String(), Subject: bus.OriginEventSubject(name)}
		m, err := minioproc.Start(ctx, minioproc.Config{Bin: testenv.MinIOBin(t), Dir: filepath.Join(t.TempDir(), "data"), NotifyNATS: notify})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Stop() })
		c := testenv.S3Client(t, m)
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("origin")}); err != nil {
			t.Fatal(err)
		}
		if err := replicate.EnsureNotification(ctx, c, "origin", notify.ARN()); err != nil {
			t.Fatal(err)
		}
		return reg{leaf: natsserver.LeafURL(ns), js: js, url: ns.ClientURL(), minio: m, s3: c}
	}
	a := start("A", natsserver.Config{LeafPort: -1})
	b := start("B", natsserver.Config{LeafRemotes: []string{a.leaf}})                // B is a leafnode of A
	if _, err := bus.EnsureOriginStream(ctx, a.js, "A", []string{"B"}); err != nil { // A runs no replicator here
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "replicate.yaml")
	yaml := fmt.Sprintf(`region: B
sweep_interval: 1h
nats: {urls: [%q]}
regions:
  - {name: A, endpoint: %q, bucket: origin, access_key: %q}
  - {name: B, endpoint: %q, bucket: origin, access_key: %q, secret_key: %q}
`, b.url, a.minio.Endpoint(), a.minio.AccessKey(), b.minio.Endpoint(), b.minio.AccessKey(), b.minio.SecretKey())
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	// A's secret comes from the environment: the whole regions list is replaced by it.
	env := []string{"DUET_REPLICATE_REGIONS=" + fmt.Sprintf("name=A;endpoint=%s;bucket=origin;access_key=%s;secret_key=%s,name=B;endpoint=%s;bucket=origin;access_key=%s;secret_key=%s",
		a.minio.Endpoint(), a.minio.AccessKey(), a.minio.SecretKey(), b.minio.Endpoint(), b.minio.AccessKey(), b.minio.SecretKey())}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(rctx, []string{"replicate", "--config", file, "--admin", admin, "--log-level", "warn"}, io.Discard, io.Discard, env)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("duet replicate: %v", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, func() bool { return httpStatus("http://"+admin+"/readyz") == http.StatusOK }, "never ready")

	body := []byte("replicated by the role")
	if _, err := a.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("origin"), Key: aws.String("vod/x.ts"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		out, err := b.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("origin"), Key: aws.String("vod/x.ts")})
		if err != nil {
			return false
		}
		defer out.Body.Close()
		got, _ := io.ReadAll(out.Body)
		return bytes.Equal(got, body)
	}, "the object never reached B")
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		m, _ := io.ReadAll(resp.Body)
		return bytes.Contains(m, []byte(`duet_replicate_objects_total{from="A",op="put"} 1`))
	}, "metrics do not count the copy")
}

func httpStatus(url string) int {
	resp, err := http.Get(url) //nolint:gosec // a test URL
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
