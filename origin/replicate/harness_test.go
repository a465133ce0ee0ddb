package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3conf"
)

const testBucket = "origin"

// testRegion is one region of a test: its NATS server, its MinIO with the NATS target, a
// client to each, and its replicator.
type testRegion struct {
	name  string
	nats  *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	minio *minioproc.Server
	s3    *s3.Client
	arn   string

	mu     sync.Mutex // guards rep and stop
	rep    *Replicator
	reg    *prometheus.Registry
	stop   context.CancelFunc
	done   chan struct{}
	logBuf *bytes.Buffer
}

// twoRegions starts regions A (leafnode hub) and B (a leafnode of A), each with NATS and MinIO
// (a bucket notifying its region's origin stream); replicators are started by startReplicator.
func twoRegions(t testing.TB) (a, b *testRegion) {
	t.Helper()
	return twoRegionsNotify(t, false)
}

// twoRegionsNotify is twoRegions; noQueue makes MinIO publish events without its queue
// directory (see minioproc.NotifyNATS.NoQueue).
func twoRegionsNotify(t testing.TB, noQueue bool) (a, b *testRegion) {
	t.Helper()
	a = newRegion(t, "A", natsserver.Config{LeafPort: -1}, noQueue)
	b = newRegion(t, "B", natsserver.Config{LeafRemotes: []string{natsserver.LeafURL(a.nats)}}, noQueue)
	return a, b
}

func newRegion(t testing.TB, name string, sc natsserver.Config, noQueue bool) *testRegion {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sc.Region, sc.Port, sc.StoreDir = name, -1, t.TempDir()
	ns, err := natsserver.Start(ctx, sc)
	if err != nil {
		t.Fatalf("start nats %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{ns.ClientURL()}, Name: "test-" + name}, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	notify := &minioproc.NotifyNATS{Address: ns.Addr().String(), Subject: bus.OriginEventSubject(name), NoQueue: noQueue}
	dir := t.TempDir()
	var log bytes.Buffer
	srv, err := minioproc.Start(ctx, minioproc.Config{Bin: testenv.MinIOBin(t), Dir: filepath.Join(dir, "data"),
		NotifyNATS: notify, Stdout: &lockedWriter{w: &log}})
	if err != nil {
		t.Fatalf("start minio %s: %v", name, err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	r := &testRegion{name: name, nats: ns, nc: nc, js: js, minio: srv, s3: testenv.S3Client(t, srv), arn: notify.ARN(), logBuf: &log}
	if _, err := r.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatalf("create bucket in %s: %v", name, err)
	}
	if err := EnsureNotification(ctx, r.s3, testBucket, r.arn); err != nil {
		t.Fatal(err)
	}
	if err := EnsureNotification(ctx, r.s3, testBucket, r.arn); err != nil { // idempotent
		t.Fatal(err)
	}
	return r
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// testConfig is a replicator config for region self of the given regions.
func testConfig(self *testRegion, all ...*testRegion) Config {
	cfg := DefaultConfig()
	cfg.Region = self.name
	cfg.SweepInterval = -1
	cfg.PartSize = 8 << 20
	if c := os.Getenv("DUET_REPLICATE_CONCURRENCY"); c != "" {
		cfg.Concurrency, _ = strconv.Atoi(c)
	}
	for _, r := range all {
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: r.name, Config: s3conf.Config{Endpoint: r.minio.Endpoint(),
			Bucket: testBucket, AccessKey: r.minio.AccessKey(), SecretKey: r.minio.SecretKey()}})
	}
	return cfg
}

// startReplicator runs the region's replicator until stopReplicator or the test's end.
func (r *testRegion) startReplicator(t testing.TB, cfg Config) *Replicator {
	t.Helper()
	reg := prometheus.NewRegistry()
	level := slog.LevelWarn
	if os.Getenv("DUET_REPLICATE_LOGS") == "1" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	rep, err := New(t.Context(), cfg, Deps{NATS: r.nc, Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rep.Run(ctx); err != nil {
			t.Errorf("replicator %s: %v", r.name, err)
		}
	}()
	r.mu.Lock()
	r.rep, r.reg, r.stop, r.done = rep, reg, cancel, done
	r.mu.Unlock()
	t.Cleanup(r.stopReplicator)
	testenv.Eventually(t, 30*time.Second, rep.Ready, "replicator %s never became ready", r.name)
	return rep
}

func (r *testRegion) stopReplicator() {
	r.mu.Lock()
	stop, done := r.stop, r.done
	r.stop, r.done = nil, nil
	r.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// put stores data under key in the region's bucket with a plain PutObject.
func (r *testRegion) put(t testing.TB, key string, data []byte, meta map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		Body: bytes.NewReader(data), ContentType: aws.String("video/mp2t"), CacheControl: aws.String("max-age=60"), Metadata: meta})
	if err != nil {
		t.Fatalf("put %s in %s: %v", key, r.name, err)
	}
}

func (r *testRegion) del(t testing.TB, key string) {
	t.Helper()
	if _, err := r.s3.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); err != nil {
		t.Fatalf("delete %s in %s: %v", key, r.name, err)
	}
}

// sum is the sha256 of key's bytes in the region, or "" when it is missing or unreadable.
func (r *testRegion) sum(t testing.TB, key string) string {
	t.Helper()
	out, err := r.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		return ""
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (r *testRegion) head(t testing.TB, key string) (*s3.HeadObjectOutput, bool) {
	t.Helper()
	out, err := r.s3.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		var nf *types.NotFound
		if errors.As(err, &nf) || statusOf(err) == 404 {
			return nil, false
		}
		t.Logf("head %s in %s: %v", key, r.name, err)
		return nil, false
	}
	return out, true
}

// listing is key → ETag of the region's bucket (nil when it cannot be listed).
func (r *testRegion) listing(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	p := s3.NewListObjectsV2Paginator(r.s3, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			return nil
		}
		for _, c := range page.Contents {
			out[aws.ToString(c.Key)] = aws.ToString(c.ETag) + "@" + c.LastModified.String()
		}
	}
	return out
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// purgeURLs lists the URLs of the purges stored by region from's replicator, as seen in r's
// purge stream, with their soft flag ("url soft=true").
func (r *testRegion) purgeURLs(t testing.TB, from string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := r.js.Stream(ctx, bus.PurgeStreamName(r.name))
	if err != nil {
		return nil
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || !strings.HasPrefix(m.Subject, "duet.purge."+from+".cmd.auto-") {
			continue
		}
		var p bus.Purge
		if json.Unmarshal(m.Data, &p) != nil {
			continue
		}
		for _, u := range p.URLs {
			out = append(out, fmt.Sprintf("%s soft=%v", u, p.Soft))
		}
	}
	return out
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// randomBytes is n deterministic bytes from seed.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = rng.Read(b)
	return b
}
