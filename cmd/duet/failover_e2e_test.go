package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3conf"
)

// failoverRegion is one region's MinIO with the test's segments uploaded.
type failoverRegion struct {
	srv    *minioproc.Server
	bucket string
}

const failoverSegments = 60

func segmentBody(i int) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "segment %d ", i), 2000)
}

func newFailoverRegion(t *testing.T) *failoverRegion {
	t.Helper()
	srv := testenv.MinIO(t)
	bucket := testenv.Bucket(t, srv)
	client := testenv.S3Client(t, srv)
	for i := range failoverSegments {
		if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("vod/seg%d.ts", i)),
			Body: bytes.NewReader(segmentBody(i)), ContentType: aws.String("video/mp2t"),
		}); err != nil {
			t.Fatalf("put segment %d: %v", i, err)
		}
	}
	return &failoverRegion{srv: srv, bucket: bucket}
}

func (r *failoverRegion) origin(name string) edge.OriginConfig {
	return edge.OriginConfig{Name: name, Type: "s3", Config: s3conf.Config{Endpoint: r.srv.Endpoint(), Bucket: r.bucket, AccessKey: r.srv.AccessKey(), SecretKey: r.srv.SecretKey()}, Prefix: "vod", Timeout: 2 * time.Second}
}

// edgeMetric reads one sample of the edge's /metrics whose name and labels start with series, for
// example `duet_edge_origin_up{origin="region-a"}`. ok is false when it is absent.
func edgeMetric(t *testing.T, admin, series string) (v float64, ok bool) {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatalf("get metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + `\S* (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, false
	}
	v, err = strconv.ParseFloat(string(m[1]), 64)
	return v, err == nil
}

// TestEdgeFailsOverToAnotherRegion runs `duet edge` with region A's MinIO as its origin and
// region B's as the fallback. With A killed, misses are still answered 200 with the right bytes
// (from B), the metrics and the heartbeat say A is out; with A back, its breaker closes and misses
// go to A again (no more failovers).
func TestEdgeFailsOverToAnotherRegion(t *testing.T) {
	var a, b *failoverRegion
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b = newFailoverRegion(t) }()
	a = newFailoverRegion(t)
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}

	ns, err := natsserver.Start(t.Context(), natsserver.Config{Region: "eu", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var hbMu sync.Mutex
	var lastHB bus.Heartbeat
	if _, err := nc.Subscribe(bus.HealthSubject("eu", "edge-1"), func(m *nats.Msg) {
		var hb bus.Heartbeat
		if json.Unmarshal(m.Data, &hb) == nil {
			hbMu.Lock()
			lastHB = hb
			hbMu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	heartbeat := func() bus.Heartbeat { hbMu.Lock(); defer hbMu.Unlock(); return lastHB }

	cfg := defaultEdgeRoleConfig()
	cfg.Name, cfg.Region = "edge-1", "eu"
	cfg.Listen, cfg.AdminListen = freeAddr(t), freeAddr(t)
	cfg.Origin = a.origin("region-a")
	cfg.Origin.Fallbacks = edge.OriginList{b.origin("region-b")}
	cfg.Origin.BreakerFailures, cfg.Origin.BreakerCooldown = 2, 300*time.Millisecond
	cfg.Disk = edge.DiskConfig{Dir: t.TempDir(), MaxBytes: 64 << 20}
	cfg.Memory = edge.MemoryConfig{MaxBytes: 16 << 20, MaxObjectBytes: 1 << 20}
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.NATS = natsConfig{URLs: []string{ns.ClientURL()}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runEdge(ctx, cfg, silent()) }()
	t.Cleanup(func() { cancel(); <-done })
	viewer, admin := "http://"+cfg.Listen, "http://"+cfg.AdminListen

	next := 0 // the next segment never asked for: always a miss
	miss := func() {
		t.Helper()
		i := next
		next++
		if next > failoverSegments {
			t.Fatal("the test ran out of segments")
		}
		resp, err := http.Get(fmt.Sprintf("%s/seg%d.ts", viewer, i))
		if err != nil {
			t.Fatalf("get segment %d: %v", i, err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, segmentBody(i)) {
			t.Fatalf("segment %d: status %d, %d bytes, %v (want 200 and %d bytes)", i, resp.StatusCode, len(got), err, len(segmentBody(i)))
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		r, err := http.Get(admin + "/readyz")
		return err == nil && r.Body.Close() == nil && r.StatusCode == 200
	},
		"the edge did not become ready")
	miss()
	if up, ok := edgeMetric(t, admin, `duet_edge_origin_up{origin="region-a"}`); !ok || up != 1 {
		t.Fatalf("origin_up{region-a} = %v (present %v) with A healthy", up, ok)
	}

	if err := a.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		miss()
	}
	if n, _ := edgeMetric(t, admin, `duet_edge_origin_failovers_total{from="region-a",to="region-b"}`); n < 2 {
		t.Fatalf("failovers region-a -> region-b = %v, want at least 2", n)
	}
	if up, _ := edgeMetric(t, admin, `duet_edge_origin_up{origin="region-a"}`); up != 0 {
		t.Fatalf("origin_up{region-a} = %v with A's MinIO stopped", up)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		hb := heartbeat()
		return len(hb.Origins) == 2 && hb.Origins[0].Name == "region-a" && !hb.Origins[0].Healthy &&
			hb.Origins[1].Name == "region-b" && hb.Origins[1].Healthy && hb.OriginHealthy
	}, "the heartbeat does not show region-a out and region-b serving: %+v", heartbeat())

	ctxR, cancelR := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancelR()
	if err := a.srv.Restart(ctxR); err != nil {
		t.Fatal(err)
	}
	// One miss every 250ms: the first miss after A's cool-down (at most 300ms by now) sends A
	// the probe that closes its breaker.
	var last time.Time
	testenv.Eventually(t, 15*time.Second, func() bool {
		if time.Since(last) >= 250*time.Millisecond {
			last = time.Now()
			miss()
		}
		up, _ := edgeMetric(t, admin, `duet_edge_origin_up{origin="region-a"}`)
		return up == 1
	}, "region-a's breaker did not close after its MinIO came back")
	failovers, _ := edgeMetric(t, admin, `duet_edge_origin_failovers_total{from="region-a",to="region-b"}`)
	for range 5 {
		miss()
	}
	if n, _ := edgeMetric(t, admin, `duet_edge_origin_failovers_total{from="region-a",to="region-b"}`); n != failovers {
		t.Fatalf("5 misses after A came back failed over %v times: traffic did not return to A", n-failovers)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		hb := heartbeat()
		return len(hb.Origins) == 2 && hb.Origins[0].Healthy && hb.Origins[0].State == "closed"
	}, "the heartbeat does not show region-a back: %+v", heartbeat())
}
