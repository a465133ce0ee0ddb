package failover_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/failover"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/s3origin"
)

// counting counts the fetches that reach a member.
type counting struct {
	failover.Fetcher
	n atomic.Int64
}

func (c *counting) Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	c.n.Add(1)
	return c.Fetcher.Fetch(ctx, r)
}

// region is one MinIO holding the test object, and an S3 origin reading it.
type region struct {
	srv *minioproc.Server
	o   *counting
}

func newRegion(t *testing.T, key string, body []byte) *region {
	t.Helper()
	srv := testenv.MinIO(t)
	bucket := testenv.Bucket(t, srv)
	if _, err := testenv.S3Client(t, srv).PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentType: aws.String("video/mp2t"),
	}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	o, err := s3origin.New(t.Context(), s3origin.Config{Config: s3conf.Config{Endpoint: srv.Endpoint(), Bucket: bucket,
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &region{srv: srv, o: &counting{Fetcher: o}}
}

// startTwo starts both regions' MinIO at once (each takes a second or two).
func startTwo(t *testing.T, key string, body []byte) (a, b *region) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b = newRegion(t, key, body) }()
	a = newRegion(t, key, body)
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}
	return a, b
}

// TestMinIOPrimaryDownAndBack: region A's MinIO stops; fetches are served by B with the same
// bytes and ETag; A's breaker opens after 3 failures so A stops being asked; once A is back and
// its cool-down is over, a probe closes the breaker and traffic returns to A. With both down,
// fetches fail fast.
func TestMinIOPrimaryDownAndBack(t *testing.T) {
	body := bytes.Repeat([]byte("duet-segment "), 4096)
	a, b := startTwo(t, "live/seg1.ts", body)
	fx := newGroup(t, failover.Config{Members: []failover.Member{{Name: "region-a", Origin: a.o}, {Name: "region-b", Origin: b.o}},
		Failures: 3, Cooldown: 200 * time.Millisecond, Now: time.Now})
	g := fx.g
	fetch := func() (string, string) {
		t.Helper()
		resp, err := g.Fetch(t.Context(), &origin.Request{Path: "/live/seg1.ts"})
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			t.Fatalf("read body: %v", err)
		}
		if resp.Status != http.StatusOK || !bytes.Equal(buf.Bytes(), body) {
			t.Fatalf("status %d, %d bytes (want 200 and the %d bytes uploaded)", resp.Status, buf.Len(), len(body))
		}
		return resp.Header.Get("Etag"), resp.Header.Get("Content-Type")
	}
	etagA, _ := fetch()
	if a.o.n.Load() != 1 || b.o.n.Load() != 0 {
		t.Fatalf("healthy primary: a=%d b=%d fetches", a.o.n.Load(), b.o.n.Load())
	}

	if err := a.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		etag, ctype := fetch()
		if etag != etagA || ctype != "video/mp2t" {
			t.Fatalf("fallback answered ETag %s, Content-Type %s; want %s, video/mp2t (same object)", etag, ctype, etagA)
		}
	}
	// The breaker opened after 3 failures (with a 200ms cool-down, a probe or two may have
	// been let through while the loop ran, never one per fetch).
	if n := a.o.n.Load() - 1; n < 3 || n > 6 {
		t.Fatalf("the stopped primary was asked %d times in 10 fetches, want 3 (plus a probe or two)", n)
	}
	if h := health(g, "region-a"); h.Healthy || h.LastError == "" {
		t.Fatalf("stopped primary's health: %+v", h)
	}
	if n := metric(t, fx.reg, "duet_edge_origin_failovers_total", "from", "region-a", "to", "region-b"); n < 3 {
		t.Fatalf("failovers a->b = %v, want at least 3", n)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := a.srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		fetch()
		return health(g, "region-a").State == failover.StateClosed
	}, "region-a's breaker did not close after its MinIO came back: %+v", health(g, "region-a"))
	aN, bN := a.o.n.Load(), b.o.n.Load()
	for range 5 {
		fetch()
	}
	if a.o.n.Load() != aN+5 || b.o.n.Load() != bN {
		t.Fatalf("after A came back: a got %d, b got %d of 5 fetches", a.o.n.Load()-aN, b.o.n.Load()-bN)
	}

	if err := errors.Join(a.srv.Stop(), b.srv.Stop()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		start := time.Now()
		resp, err := g.Fetch(t.Context(), &origin.Request{Path: "/live/seg1.ts"})
		if err == nil {
			resp.Body.Close()
			t.Fatalf("fetch %d answered %d with both regions down", i, resp.Status)
		}
		if !errors.Is(err, failover.ErrAllFailed) {
			t.Fatalf("error %v, want ErrAllFailed", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("fetch %d took %s to fail with both regions down", i, took)
		}
	}
}
