package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/rendezvous"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/loadtest"
	"github.com/duetcdn/duet/loadtest/report"
	"github.com/duetcdn/duet/origin/s3conf"
)

// s3Log is a reverse proxy in front of MinIO that counts, per object, the GETs the edges send
// it and the body bytes it returns: the origin's own view of what a region costs it.
type s3Log struct {
	bucket string
	url    string
	bytes  atomic.Int64
	mu     sync.Mutex
	gets   map[string][]time.Time // object path (as the viewer asked for it) → when it was fetched
	first  time.Time              // the first GET
}

func newS3Log(t *testing.T, endpoint, bucket string) *s3Log {
	l := &s3Log{bucket: bucket, gets: map[string][]time.Time{}}
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			// Path-style: /<bucket>/<key>; the viewer's path is /<key>.
			if key, ok := strings.CutPrefix(r.URL.Path, "/"+bucket+"/"); ok {
				l.mu.Lock()
				now := time.Now()
				if l.first.IsZero() {
					l.first = now
				}
				l.gets["/"+key] = append(l.gets["/"+key], now)
				l.mu.Unlock()
			}
			w = &countingWriter{ResponseWriter: w, n: &l.bytes}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	l.url = srv.URL
	return l
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// fetches returns, per object, the GETs before and from at.
func (l *s3Log) fetches(at time.Time) (before, after map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	before, after = map[string]int{}, map[string]int{}
	for p, ts := range l.gets {
		for _, ti := range ts {
			if ti.Before(at) {
				before[p]++
			} else {
				after[p]++
			}
		}
	}
	return before, after
}

// scaleControl is the loadtest's view of the test's region (it cannot stop or start anything:
// the test kills its edge itself).
type scaleControl struct{ cl *loadtest.Cluster }

func (c scaleControl) Cluster(context.Context) (*loadtest.Cluster, error) { return c.cl, nil }
func (scaleControl) StopEdge(context.Context, string) error               { return errNoControl }
func (scaleControl) StartEdge(context.Context, string) error              { return errNoControl }
func (scaleControl) StopRegion(context.Context, string) error             { return errNoControl }
func (scaleControl) StartRegion(context.Context, string) error            { return errNoControl }

var errNoControl = errors.New("the scale test's region has no control API")

// TestScaleOutRegionOfEight is issue 15's scale test: one region of 8 `duet edge` processes
// with peer fill on (heartbeats through NATS), steering, an S3 origin (MinIO behind a proxy
// that counts what the origin serves), and `duet loadtest`'s zipf scenario driving them. It
// measures origin fetches per distinct object, origin bytes per viewer byte, each edge's share
// of the requests and the errors; halfway through one edge process is killed with SIGKILL: the
// load generator retries a request that edge failed on the route's next edge (as a player
// moves to its next pathway), and each object the dead edge owned is fetched at most once more,
// by its new owner. `make scale-test` runs it with the figures in its log.
func TestScaleOutRegionOfEight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO, NATS, steering and 8 edge processes")
	}
	const edges, killed = 8, 3 // the fourth edge dies
	minio := testenv.MinIO(t)
	bucket := testenv.Bucket(t, minio)
	origin := newS3Log(t, minio.Endpoint(), bucket)
	natsSrv, _ := startRegionNATS(t, "A", 0, nil, t.TempDir())
	st := startSteering(t, natsSrv.ClientURL())

	dir := t.TempDir()
	var procs []*edgeProc
	cl := &loadtest.Cluster{Bucket: bucket,
		Upload: loadtest.Upload{Endpoint: minio.Endpoint(), AccessKey: minio.AccessKey(), SecretKey: minio.SecretKey()}}
	region := loadtest.Region{Name: "A", Steering: st.url, Up: true}
	names := make([]string, edges)
	for i := range edges {
		names[i] = "e" + strconv.Itoa(i+1)
		cfg := defaultEdgeRoleConfig()
		cfg.Name, cfg.Region = names[i], "A"
		cfg.Origin = edge.OriginConfig{Type: "s3", Timeout: 5 * time.Second, Config: s3conf.Config{Endpoint: origin.url, Bucket: bucket,
			AccessKey: minio.AccessKey(), SecretKey: minio.SecretKey()}}
		cfg.Disk = edge.DiskConfig{Dir: filepath.Join(dir, names[i]), MaxBytes: 256 << 20}
		cfg.Memory = edge.MemoryConfig{MaxBytes: 32 << 20, MaxObjectBytes: 1 << 20}
		cfg.NATS = natsConfig{URLs: []string{natsSrv.ClientURL()}}
		cfg.Purge.Regions = []string{"A"}
		// Eight race-enabled edge processes share two cores here: a peer that takes longer than
		// the default second to answer is slow, not dead, and going to the origin instead would
		// count as a second fetch.
		cfg.PeerFill = edge.PeerFillConfig{Enabled: true, Secret: "scale-test-peer-secret-0123", Timeout: 3 * time.Second, Cooldown: 3 * time.Second}
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, names[i]+".yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		e := startEdgeProc(t, "--config", p, "--log-level", "warn")
		procs = append(procs, e)
		region.Edges = append(region.Edges, loadtest.Edge{Name: names[i], URL: e.url, Admin: e.admin, Up: true})
	}
	cl.Regions = []loadtest.Region{region}
	var seen []string
	testenv.Eventually(t, 30*time.Second, func() bool {
		an, code := st.route(t, "/lt/probe/obj.bin", e2eNearA)
		seen = edgeNames(an)
		return code == 200 && len(an.Edges) == edges
	}, "steering never saw all %d edges: %v", edges, &seen)

	cfg := loadtest.DefaultConfig()
	cfg.Control = "http://127.0.0.1:1" // unused: Deps.Control answers
	cfg.Objects, cfg.ObjectSize, cfg.Rate, cfg.Duration = 2000, 16<<10, 200, 20*time.Second
	if s := os.Getenv("DUET_SCALE_RATE"); s != "" { // make scale-test RATE=...
		if cfg.Rate, _ = strconv.Atoi(s); cfg.Rate <= 0 {
			t.Fatalf("DUET_SCALE_RATE=%q: want requests per second", s)
		}
	}
	// Halfway through the attack (which starts after the upload, with the origin's first GET),
	// the fourth edge dies without a word.
	var killAt time.Time
	killed9 := make(chan struct{})
	go func() {
		defer close(killed9)
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			origin.mu.Lock()
			first := origin.first
			origin.mu.Unlock()
			if !first.IsZero() && time.Since(first) >= cfg.Duration/2 {
				killAt = time.Now()
				procs[killed].kill9(t)
				return
			}
			time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polls the origin's log, bounded by deadline
		}
	}()
	sum, err := loadtest.Run(t.Context(), cfg, loadtest.Deps{Control: scaleControl{cl}})
	<-killed9
	if err != nil {
		t.Fatalf("loadtest: %v", err)
	}
	if killAt.IsZero() {
		t.Fatal("the edge was never killed: the origin saw no GET")
	}

	// Per-edge share of the viewers' requests.
	byEdge := map[string]int64{}
	for _, s := range sum.Seconds {
		for e, n := range s.ByEdge {
			byEdge[e] += n
		}
	}
	var shares []string
	for _, n := range names {
		shares = append(shares, fmt.Sprintf("%s %.1f%%", n, 100*float64(byEdge[n])/float64(max(1, sum.Requests))))
	}
	before, after := origin.fetches(killAt)
	var fetchedBefore, fetchedAfter, lostAsked, lostRefetched, worstLost int
	for _, n := range before {
		fetchedBefore += n
	}
	for p, n := range after {
		fetchedAfter += n
		// The objects the dead edge owned (rendezvous over all eight names, as every edge
		// computed it before the kill) that were asked for afterwards.
		if owner(p, names) == names[killed] {
			lostAsked++
			lostRefetched += n
			worstLost = max(worstLost, n)
		}
	}
	perObject := float64(fetchedBefore) / float64(max(1, len(before)))
	perObjectAfter := float64(fetchedAfter) / float64(max(1, len(after)))
	originPerViewer := float64(origin.bytes.Load()) / float64(max(1, sum.Bytes))
	t.Logf("%d requests, %d errors %v, hit ratio %.3f, retries: %s; per edge: %s",
		sum.Requests, sum.Errors, sum.ErrorsByReason, sum.HitRatio, retried(sum), strings.Join(shares, ", "))
	t.Logf("before the kill: %d origin fetches of %d distinct objects (%.3f per object); after: %d fetches of %d objects (%.3f per object), %d of them owned by the dead edge (%d fetches, at most %d per object)",
		fetchedBefore, len(before), perObject, fetchedAfter, len(after), perObjectAfter, lostAsked, lostRefetched, worstLost)
	t.Logf("origin bytes per viewer byte: %.4f (%d origin body bytes, %d viewer bytes; 1 - hit ratio = %.4f)",
		originPerViewer, origin.bytes.Load(), sum.Bytes, 1-sum.HitRatio)

	if sum.Errors != 0 {
		t.Errorf("viewers saw %d errors: %v", sum.Errors, sum.ErrorsByReason)
	}
	if perObject > 1.05 {
		t.Errorf("before the kill the origin served %.3f fetches per distinct object, want at most 1.05", perObject)
	}
	if worstLost > 1 {
		t.Errorf("after the kill an object the dead edge owned was fetched %d times: its new owner should fetch it at most once", worstLost)
	}
	if perObjectAfter > 1.05 {
		t.Errorf("after the kill the origin served %.3f fetches per distinct object, want at most 1.05", perObjectAfter)
	}
	if lostAsked == 0 {
		t.Error("no object the dead edge owned was asked for after the kill: the kill proved nothing")
	}
	// An origin fetch is a miss somewhere in the region; a miss the owner's peer answered is a
	// miss at the viewer's edge but no origin fetch: the origin's share of the bytes is at most
	// the viewers' miss ratio (objects are all one size).
	if originPerViewer > (1-sum.HitRatio)*1.02+0.005 {
		t.Errorf("origin bytes per viewer byte %.4f, more than the viewers' miss ratio %.4f allows", originPerViewer, 1-sum.HitRatio)
	}
	for i, n := range names {
		if i != killed && byEdge[n] == 0 {
			t.Errorf("edge %s served no request: steering did not spread the catalogue", n)
		}
	}
	if !slices.Contains(seen, names[killed]) {
		t.Errorf("steering never listed %s", names[killed])
	}
}

// owner is the edge of names that owns key in peer fill's rendezvous order (edge/peers).
func owner(key string, names []string) string {
	kh := rendezvous.Hash(key)
	best, who := -1.0, ""
	for _, n := range names {
		if sc := rendezvous.Score(kh, rendezvous.Hash(n), 0, false); sc > best || sc == best && n < who {
			best, who = sc, n
		}
	}
	return who
}

// retried is the zipf scenario's event about requests it sent to another edge ("none" without).
func retried(sum *report.Summary) string {
	for _, e := range sum.Events {
		if e.Kind == "retry" {
			return e.Detail
		}
	}
	return "none"
}
