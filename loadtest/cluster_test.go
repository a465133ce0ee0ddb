package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/route"
	hlssample "github.com/duetcdn/duet/internal/sample"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/s3origin"
)

// testEdge is a real edge on fixed loopback ports that the test control API stops and starts.
type testEdge struct {
	t            *testing.T
	name, region string
	addr, admin  string
	cfg          edge.Config
	o            edge.Origin

	mu   sync.Mutex // guards stop
	stop func()
}

func (e *testEdge) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		return nil
	}
	srv, err := edge.New(e.t.Context(), e.cfg, edge.Deps{Origin: e.o})
	if err != nil {
		return fmt.Errorf("new edge %s: %w", e.name, err)
	}
	ln, err := listenRetry(e.addr)
	if err != nil {
		srv.Close()
		return err
	}
	adm, err := listenRetry(e.admin)
	if err != nil {
		ln.Close()
		srv.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adm) }()
	deadline := time.Now().Add(5 * time.Second)
	for !srv.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) //nolint:forbidigo // poll interval inside a deadline
	}
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("edge %s serve: %v", e.name, err)
		}
	}
	return nil
}

func (e *testEdge) halt() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

func (e *testEdge) up() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stop != nil
}

// listenRetry binds addr again after a stop (the old socket may linger for a moment).
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // retry interval, bounded by the loop
	}
	return nil, fmt.Errorf("listen %s: %w", addr, err)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testCluster is two regions (eu: eu-1, eu-2; us: us-1) of real edges over one real MinIO,
// each region with a small steering (up edges, own region first; 503 while the region is
// down), and the dev control API over them.
type testCluster struct {
	t        *testing.T
	minio    *minioproc.Server
	bucket   string
	edges    []*testEdge
	regionUp map[string]bool
	mu       sync.Mutex // guards regionUp
	steering map[string]*httptest.Server
	purge    *httptest.Server
	control  *httptest.Server
}

const samplePath = "/vod/sample/master.m3u8"

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	srv := testenv.MinIO(t)
	c := &testCluster{t: t, minio: srv, bucket: testenv.Bucket(t, srv), regionUp: map[string]bool{"eu": true, "us": true}, steering: map[string]*httptest.Server{}}
	s3c := testenv.S3Client(t, srv)
	for _, f := range hlssample.Stream() {
		if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(c.bucket), Key: aws.String("vod/sample/" + f.Path),
			Body: bytes.NewReader(f.Body), ContentType: aws.String(f.ContentType)}); err != nil {
			t.Fatalf("upload sample: %v", err)
		}
	}
	o, err := s3origin.New(t.Context(), s3origin.Config{Config: s3conf.Config{Endpoint: srv.Endpoint(), Bucket: c.bucket,
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range [][2]string{{"eu-1", "eu"}, {"eu-2", "eu"}, {"us-1", "us"}} {
		cfg := edge.DefaultConfig()
		cfg.Name, cfg.Region = n[0], n[1]
		cfg.Origin = edge.OriginConfig{Type: "s3", Config: s3conf.Config{Endpoint: srv.Endpoint(), Bucket: c.bucket, AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()}, Timeout: 5 * time.Second}
		cfg.Disk = edge.DiskConfig{Dir: t.TempDir(), MaxBytes: 256 << 20}
		cfg.Memory = edge.MemoryConfig{MaxBytes: 64 << 20, MaxObjectBytes: 2 << 20}
		cfg.ShutdownTimeout = 2 * time.Second
		e := &testEdge{t: t, name: n[0], region: n[1], addr: freeAddr(t), admin: freeAddr(t), cfg: cfg, o: o}
		cfg.Listen, cfg.AdminListen, cfg.AdminToken = e.addr, e.admin, testAdminToken
		e.cfg = cfg
		if err := e.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.halt)
		c.edges = append(c.edges, e)
	}
	for _, r := range []string{"eu", "us"} {
		c.steering[r] = httptest.NewServer(c.steeringHandler(r))
		t.Cleanup(c.steering[r].Close)
	}
	c.purge = httptest.NewServer(c.purgeHandler())
	t.Cleanup(c.purge.Close)
	c.control = httptest.NewServer(c.controlHandler())
	t.Cleanup(c.control.Close)
	return c
}

func (c *testCluster) up(region string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.regionUp[region]
}

func (c *testCluster) steeringHandler(region string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/route" || r.URL.Query().Get("path") == "" {
			http.Error(w, "want /v1/route?path=", http.StatusBadRequest)
			return
		}
		if !c.up(region) {
			http.Error(w, "region down", http.StatusServiceUnavailable)
			return
		}
		var rt route.Answer
		for _, own := range []bool{true, false} {
			for _, e := range c.edges {
				if (e.region == region) == own && e.up() {
					rt.Edges = append(rt.Edges, route.Edge{Name: e.name, Region: e.region, URL: "http://" + e.addr, State: "serving"})
				}
			}
		}
		if len(rt.Edges) == 0 {
			http.Error(w, "no edge", http.StatusServiceUnavailable)
			return
		}
		rt.Region = rt.Edges[0].Region
		_ = json.NewEncoder(w).Encode(rt)
	})
}

// testAdminToken is the test edges' admin token.
const testAdminToken = "loadtest-admin-token-0123"

func (c *testCluster) cluster() Cluster {
	cl := Cluster{PurgeToken: "dev-token", Sample: samplePath, Bucket: c.bucket,
		Upload: Upload{Endpoint: c.minio.Endpoint(), AccessKey: c.minio.AccessKey(), SecretKey: c.minio.SecretKey()}}
	for _, r := range []string{"eu", "us"} {
		reg := Region{Name: r, Steering: c.steering[r].URL, Purge: c.purge.URL, Origin: c.minio.Endpoint(), Up: c.up(r)}
		for _, e := range c.edges {
			if e.region == r {
				reg.Edges = append(reg.Edges, Edge{Name: e.name, URL: "http://" + e.addr, Admin: "http://" + e.admin, Up: e.up()})
			}
		}
		cl.Regions = append(cl.Regions, reg)
	}
	return cl
}

// purgeHandler is a small purge API: it applies each purge on every running edge through the
// edge's own local purge endpoint and answers with an acknowledgement per edge.
func (c *testCluster) purgeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/purge" || r.Header.Get("Authorization") != "Bearer dev-token" {
			http.Error(w, "want POST /v1/purge with the bearer token", http.StatusUnauthorized)
			return
		}
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		delete(req, "wait")
		body, _ := json.Marshal(req)
		type ack struct {
			Edge      string  `json:"edge"`
			LatencyMS float64 `json:"latency_ms"`
		}
		out := struct {
			Complete bool  `json:"complete"`
			Acks     []ack `json:"acks"`
		}{Complete: true}
		for _, e := range c.edges {
			if !e.up() {
				continue
			}
			start := time.Now()
			preq, _ := http.NewRequest(http.MethodPost, "http://"+e.admin+"/purge", bytes.NewReader(body))
			preq.Header.Set("Content-Type", "application/json")
			preq.Header.Set("Authorization", "Bearer "+testAdminToken)
			resp, err := http.DefaultClient.Do(preq)
			if err != nil || resp.StatusCode != http.StatusOK {
				out.Complete = false
				if err == nil {
					resp.Body.Close()
				}
				continue
			}
			resp.Body.Close()
			out.Acks = append(out.Acks, ack{Edge: e.name, LatencyMS: float64(time.Since(start).Microseconds()) / 1000})
		}
		_ = json.NewEncoder(w).Encode(out)
	})
}

func (c *testCluster) controlHandler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}
	mux.HandleFunc("GET /v1/dev/cluster", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(c.cluster())
	})
	edgeOp := func(name string, op func(*testEdge) error) error {
		for _, e := range c.edges {
			if e.name == name {
				return op(e)
			}
		}
		return errors.New("no edge " + name)
	}
	mux.HandleFunc("POST /v1/dev/edges/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, edgeOp(r.PathValue("name"), func(e *testEdge) error {
			if r.PathValue("op") == "stop" {
				e.halt()
				return nil
			}
			return e.start()
		}))
	})
	mux.HandleFunc("POST /v1/dev/regions/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
		name, stop := r.PathValue("name"), r.PathValue("op") == "stop"
		var err error
		for _, e := range c.edges {
			if e.region == name {
				if stop {
					e.halt()
				} else if err = e.start(); err != nil {
					break
				}
			}
		}
		c.mu.Lock()
		c.regionUp[name] = !stop
		c.mu.Unlock()
		reply(w, err)
	})
	return mux
}

// checkHTML asserts a report page is self-contained and carries its charts.
func checkHTML(t *testing.T, page string, want ...string) {
	t.Helper()
	for _, w := range append([]string{"<svg", "Latency per second", "Throughput per second", "<polyline"}, want...) {
		if !strings.Contains(page, w) {
			t.Errorf("report lacks %q", w)
		}
	}
	for _, bad := range []string{"src=", "href=", "<script", "<link"} {
		if strings.Contains(page, bad) {
			t.Errorf("report is not self-contained: it has %q", bad)
		}
	}
}
