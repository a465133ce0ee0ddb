package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/internal/zipf"
	"github.com/duetcdn/duet/origin"
)

// maxPerWindow is the most origin requests that arrived within any window of length w.
func maxPerWindow(times []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestOriginBudgetAfterPurge is issue 15's acceptance 4, scaled down (1,000 objects rather than
// 100,000, at 100 origin requests per second, so that the refill takes seconds under the race
// detector; TestOriginBudgetAfterPurge100k is the full size): after a hard purge of every
// cached object a Zipf crowd arrives; the origin never sees more requests in a second than the
// budget allows, viewers get the object or the documented 503 with Retry-After, and the refill
// finishes. After a soft purge the same crowd gets no 503 at all: the soft-purged entries are
// served stale while the budget refills them.
func TestOriginBudgetAfterPurge(t *testing.T) {
	if testing.Short() {
		t.Skip("a refill of 1,000 objects at 100/s")
	}
	originBudgetAfterPurge(t, purgeCrowd{objects: 1000, budget: 100, queue: 20, crowd: 3000, viewers: 32, soft: true, body: zBody})
}

// TestOriginBudgetAfterPurge100k is acceptance 4 at its full size: 100,000 cached objects (of
// 64 to 127 bytes, in both tiers), a hard purge of all of them by tag, then a Zipf crowd of
// 128 viewers and 20,000 requests, then every object asked for until refilled, at a budget of
// 5,000 origin requests per second: the refill takes 20 s at least. The race detector would
// slow the 200,000 requests past a minute, so `make test` runs it in its step without the race
// detector (as it does the allocation budgets).
func TestOriginBudgetAfterPurge100k(t *testing.T) {
	if testing.Short() {
		t.Skip("a refill of 100,000 objects at 5,000/s")
	}
	if raceEnabled {
		t.Skip("runs without the race detector (make test's first step): 200,000 requests under -race take minutes")
	}
	originBudgetAfterPurge(t, purgeCrowd{objects: 100_000, budget: 5000, queue: 32, crowd: 20_000, viewers: 128, body: smallBody, direct: true})
}

// smallBody is object n's body for the 100k test: 64 to 127 bytes that name it.
func smallBody(n int) []byte {
	b := randomBytes(64+n%64, byte(n))
	copy(b, strconv.Itoa(n)+":")
	return b
}

// memoryBackedDir is a directory on tmpfs (/dev/shm) where there is one, else t.TempDir(). The
// 100k run creates 200,000 files and unlinks 100,000: on the development VM's disk (ext4 with
// discard) each create costs 0.3 to 0.7 ms of kernel time, which measured the disk (a refill of
// 500 to 1,700 fills a second, 100k in minutes) rather than the origin budget.
func memoryBackedDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "duet-edge-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// purgeCrowd is one run of the purge-then-crowd test.
type purgeCrowd struct {
	objects, budget, queue int
	crowd, viewers         int  // Zipf requests after the purge, and how many viewers send them
	soft                   bool // also a soft purge after the hard one
	body                   func(n int) []byte
	direct                 bool // warm by committing into the tiers, not through the edge
}

// commitZ stores /z/<n> with body in both tiers as a fill of newOriginLogBody's answer would:
// tagged "z" and "all-z", fresh for an hour, with its ETag.
func commitZ(s *Server, n int, body []byte) error {
	key := "/z/" + strconv.Itoa(n)
	w, err := s.store.disk.Create(key)
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(body); err != nil {
		return err
	}
	now := time.Now()
	etag := fmt.Sprintf(`"z%d"`, n)
	m := object.Meta{Key: key, Status: 200, Size: int64(len(body)), ETag: etag, Tags: []string{"z", "all-z"},
		Header:   []object.Field{{Name: "Cache-Control", Value: "max-age=3600"}, {Name: "Etag", Value: etag}},
		FreshFor: time.Hour, RequestTime: now, ResponseTime: now}
	if err := w.Commit(m); err != nil {
		return err
	}
	got, ok := s.store.disk.Get(key)
	if !ok {
		return errorf("%s: not in the disk tier after its commit", key)
	}
	s.store.committed(got, body)
	return nil
}

// originBudgetAfterPurge warms an edge with pc.objects objects /z/<n> tagged "all-z", purges
// them all by tag (hard, then soft if pc.soft), sends a Zipf crowd, then asks for every object
// until it is refilled, honouring Retry-After; it checks the origin's log against the budget.
func originBudgetAfterPurge(t *testing.T, pc purgeCrowd) {
	objects, budget := pc.objects, pc.budget
	ol := newOriginLogBody(t, pc.body)
	sent := &sendLog{Origin: ol.httpOrigin(t)}
	t.Cleanup(func() {
		sent.mu.Lock()
		defer sent.mu.Unlock()
		t.Logf("the origin accepted %d connections", ol.conns.Load())
		if len(sent.errs) > 0 {
			t.Logf("%d origin requests failed, the first: %v", len(sent.errs), sent.errs[0])
		}
	})
	h := startEdge(t, sent, func(c *Config) {
		c.Origin.MaxRequestsPerSec, c.Origin.MaxQueue, c.Origin.MaxWait = float64(budget), pc.queue, 300*time.Millisecond
		if pc.direct {
			c.Disk.Dir = memoryBackedDir(t)
		}
		c.Disk.MaxBytes, c.Memory.MaxBytes = max(c.Disk.MaxBytes, ByteSize(objects)*8<<10), max(c.Memory.MaxBytes, ByteSize(objects)*2<<10)
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * pc.viewers}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	// On the shared development machine the test's own origin (an httptest server in this
	// process) now and then leaves a request unanswered for the edge's 5 s origin timeout while
	// other processes load the loopback; the edge then answers 502, which is not the budget's
	// doing. Each such 502 must match an origin request that failed.
	var n502 atomic.Int64
	get := func(n int) (int, string, error) {
		resp, err := client.Get(h.url + "/z/" + strconv.Itoa(n))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			return 0, "", err
		case resp.StatusCode == 200 && string(b) != string(pc.body(n)):
			return 0, "", errorf("/z/%d: wrong body", n)
		case resp.StatusCode == 503 && (resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(resp.Header.Get("Cache-Status"), "detail=origin-budget") || !strings.Contains(string(b), "budget")):
			return 0, "", errorf("/z/%d: an undocumented 503: %v %q", n, resp.Header, b)
		case resp.StatusCode == 502 && string(b) == "duet: origin unavailable\n":
			// The origin failed this one (checked against the origin's failures below).
			n502.Add(1)
		case resp.StatusCode != 200 && resp.StatusCode != 503:
			return 0, "", errorf("/z/%d: %d %q", n, resp.StatusCode, b)
		}
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil
	}
	// Warm the cache without the budget (the budget is what the refill is measured against):
	// through the edge, or, for the 100k run, straight into both tiers as a fill would commit
	// the origin's answer (100,000 fills through HTTP would take most of the test's time).
	h.srv.budget.lim.SetLimit(rate.Inf)
	warm := time.Now()
	parallel(t, 32, objects, func(i int) error {
		if pc.direct {
			return commitZ(h.srv, i, pc.body(i))
		}
		if code, _, err := get(i); err != nil || code != 200 {
			return errorf("warm /z/%d: %d %v", i, code, err)
		}
		return nil
	})
	if n := h.srv.store.disk.Len(); n < objects {
		t.Fatalf("warmed %d objects, the disk tier holds %d", objects, n)
	}
	t.Logf("warmed %d objects in %s", objects, time.Since(warm).Round(time.Millisecond))
	h.srv.budget.lim.SetLimit(rate.Limit(budget))
	z, err := zipf.New(objects, 0.9)
	if err != nil {
		t.Fatal(err)
	}

	modes := []bool{false}
	if pc.soft {
		modes = append(modes, true)
	}
	for _, soft := range modes {
		ol.mu.Lock()
		from := len(ol.times)
		ol.mu.Unlock()
		body := `{"tags":["all-z"]}`
		if soft {
			body = `{"tags":["all-z"],"soft":true}`
		}
		began := time.Now()
		pr, err := h.adminPost("/purge", body)
		if err != nil || pr.StatusCode != 200 {
			t.Fatalf("purge: %v %v", pr, err)
		}
		var res PurgeResult
		err = json.NewDecoder(pr.Body).Decode(&res)
		_ = pr.Body.Close()
		if err != nil || res.Entries < objects {
			t.Fatalf("the purge touched %d entries of %d: %v", res.Entries, objects, err)
		}
		took := time.Since(began)
		t.Logf("soft=%v: the purge of %d entries took %s", soft, res.Entries, took.Round(time.Millisecond))
		if n := h.srv.store.disk.Len(); !soft && n != 0 {
			t.Fatalf("the disk tier holds %d entries after a hard purge of all", n)
		}
		// The crowd: Zipf requests; then every object is asked for until it is served
		// (honouring Retry-After), bounded in time.
		var n503 atomic.Int64
		parallel(t, pc.viewers, pc.crowd, func(i int) error {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			code, _, err := get(z.Draw(rng))
			if code == 503 {
				n503.Add(1)
			}
			return err
		})
		t.Logf("soft=%v: the crowd's %d requests took %s (%d 503s)", soft, pc.crowd, time.Since(began.Add(took)).Round(time.Millisecond), n503.Load())
		deadline := time.Now().Add(60 * time.Second)
		// As many at a time as the queue holds: a viewer's refill is then never refused by
		// the queue, only paced.
		parallel(t, min(32, pc.queue), objects, func(i int) error {
			for {
				code, retry, err := get(i)
				if err != nil {
					return err
				}
				m, ok := h.srv.store.peek("/z/" + strconv.Itoa(i))
				if code == 200 && ok && m.Flags&object.SoftPurged == 0 {
					return nil // refilled (hard) or revalidated (soft)
				}
				if code == 503 {
					n503.Add(1)
				}
				if time.Now().After(deadline) {
					return errorf("/z/%d not refilled after a minute (last answer %d): the refill does not finish", i, code)
				}
				secs, _ := strconv.Atoi(retry)
				//nolint:forbidigo // the viewer waits as Retry-After asks (or 50 ms for a revalidation)
				time.Sleep(max(time.Duration(secs)*time.Second, 50*time.Millisecond))
			}
		})
		refilled := time.Since(began)
		ol.mu.Lock()
		times := append([]time.Time(nil), ol.times[from:]...)
		ol.mu.Unlock()
		sentTimes := sent.since(from)
		peak, sentPeak := maxPerWindow(times, time.Second), maxPerWindow(sentTimes, time.Second)
		peak5 := maxPerWindow(times, 5*time.Second)
		t.Logf("soft=%v: purge of %d entries in %s; refilled in %s; %d origin requests; in any second at most %d sent by the edge, %d arrived at the origin (budget %d); %d in any 5 s; %d viewer 503s",
			soft, res.Entries, took.Round(time.Millisecond), refilled.Round(time.Millisecond), len(times), sentPeak, peak, budget, peak5, n503.Load())
		// The edge spaces its tokens exactly (one token, refilled at the budget's rate), but the
		// goroutine a token goes to may run late on a loaded two-core machine (-race, other
		// packages' tests beside), and a send is seen when it runs. Turns granted evenly and seen
		// up to `late` after fill any window of W with at most budget × (W + late) + 1 sends;
		// an edge without a budget sends the refill at over ten times the rate. (Seen: 111 in a
		// second and 507 in five at 100/s with the whole edge package running under -race.)
		const late = 250 * time.Millisecond
		sentPeak5 := maxPerWindow(sentTimes, 5*time.Second)
		allowed := func(w time.Duration) int { return int(float64(budget)*(w+late).Seconds()) + 1 }
		if sentPeak > allowed(time.Second) || sentPeak5 > allowed(5*time.Second) {
			t.Errorf("soft=%v: the edge sent %d origin requests within one second and %d within five, budget %d/s", soft, sentPeak, sentPeak5, budget)
		}
		// At the origin the network and the scheduler move arrivals by up to a few hundred ms on
		// a loaded test machine, which can crowd one second; over five seconds that evens out.
		if peak > budget+budget/4 || peak5 > 5*budget+budget/4 {
			t.Errorf("soft=%v: the origin received %d requests within one second, %d within five, budget %d/s", soft, peak, peak5, budget)
		}
		if len(times) < objects {
			t.Errorf("soft=%v: the refill asked the origin %d times for %d objects", soft, len(times), objects)
		}
		if len(sentTimes) != len(times) {
			t.Errorf("the edge sent %d requests, the origin received %d", len(sentTimes), len(times))
		}
		sent.mu.Lock()
		originFailed := len(sent.errs)
		sent.mu.Unlock()
		if n := n502.Load(); n > int64(originFailed) {
			t.Errorf("%d viewers got 502 but only %d origin requests failed", n, originFailed)
		}
		if soft && n503.Load() > 0 {
			t.Errorf("soft purge: %d viewers got 503 although a stale entry could answer", n503.Load())
		}
		if !soft && n503.Load() == 0 {
			t.Error("hard purge: no 503 at all: the crowd never exceeded the budget, the test proves nothing")
		}
	}
	if v := metricValue(t, h, "duet_edge_origin_budget_refused_total"); v == 0 {
		t.Error("duet_edge_origin_budget_refused_total stayed 0")
	}
	if v := metricValue(t, h, "duet_edge_origin_budget_wait_seconds_total"); v == 0 {
		t.Error("duet_edge_origin_budget_wait_seconds_total stayed 0")
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// parallel runs fn(0..n-1) on workers goroutines and fails the test with the first error.
func parallel(t *testing.T, workers, n int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		t.Fatal(err)
	}
}

// sendLog records when the edge sends each origin request (after the budget let it go).
type sendLog struct {
	Origin
	mu    sync.Mutex
	times []time.Time
	errs  []error // the origin's failures, for the test's message
}

func (l *sendLog) Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	l.mu.Lock()
	l.times = append(l.times, time.Now())
	l.mu.Unlock()
	resp, err := l.Origin.Fetch(ctx, r)
	if err != nil {
		l.mu.Lock()
		l.errs = append(l.errs, err)
		l.mu.Unlock()
	}
	return resp, err
}

func (l *sendLog) since(i int) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.times[i:]...)
}

// TestScaleOutConfigErrors: bad origin budget and peer fill settings are refused, each error
// naming the setting to fix.
func TestScaleOutConfigErrors(t *testing.T) {
	for _, c := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Origin.MaxRequestsPerSec = -1 }, "origin.max_requests_per_sec"},
		{func(c *Config) { c.Origin.MaxRequestsPerSec, c.Origin.MaxQueue = 10, 0 }, "origin.max_queue and origin.max_wait must be positive"},
		{func(c *Config) {
			c.Origin.Fallbacks = OriginList{{Name: "us", Type: "http", Config: c.Origin.Config, MaxRequestsPerSec: 5}}
		}, "origin.fallbacks[0]: max_requests_per_sec"},
		{func(c *Config) { c.PeerFill.Enabled = true }, "peer_fill.enabled needs peer_fill.secret"},
		{func(c *Config) { c.PeerFill.Enabled, c.PeerFill.Secret = true, "short" }, "peer_fill.secret must be at least 16"},
		{func(c *Config) { c.PeerFill.Enabled, c.PeerFill.Secret = true, testPeerSecret }, "peer_fill.enabled needs name and region"},
		{func(c *Config) {
			c.PeerFill.Enabled, c.PeerFill.Secret, c.PeerFill.SecretFile = true, testPeerSecret, "/x"
		}, "set one of peer_fill.secret and peer_fill.secret_file"},
	} {
		cfg := testConfig(t)
		cfg.Name = ""
		c.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error with %q, got %v", c.want, err)
		}
	}
	cfg := testConfig(t)
	cfg.Name, cfg.Region = "e1", "r1"
	cfg.PeerFill = PeerFillConfig{Enabled: true, SecretFile: t.TempDir() + "/missing", Timeout: time.Second, Cooldown: time.Second}
	if _, err := New(t.Context(), cfg, Deps{Origin: objectOrigin(t)}); err == nil || !strings.Contains(err.Error(), "peer_fill.secret_file") {
		t.Errorf("a missing secret file: %v", err)
	}
}
