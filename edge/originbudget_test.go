package edge

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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
// 100,000, at 100 origin requests per second, so that the refill takes seconds): after a hard
// purge of every cached object a Zipf crowd arrives; the origin never sees more requests in a
// second than the budget (plus one: the first of the next second can arrive early by the
// network's jitter), viewers get the object or the documented 503 with Retry-After, and the
// refill finishes. After a soft purge the same crowd gets no 503 at all: the soft-purged
// entries are served stale while the budget refills them.
func TestOriginBudgetAfterPurge(t *testing.T) {
	if testing.Short() {
		t.Skip("a refill of 1,000 objects at 100/s")
	}
	const objects, budget = 1000, 100
	ol := newOriginLog(t)
	sent := &sendLog{Origin: ol.httpOrigin(t)}
	h := startEdge(t, sent, func(c *Config) {
		c.Origin.MaxRequestsPerSec, c.Origin.MaxQueue, c.Origin.MaxWait = budget, 20, 300*time.Millisecond
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
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
		case resp.StatusCode == 200 && string(b) != string(zBody(n)):
			return 0, "", errorf("/z/%d: wrong body", n)
		case resp.StatusCode == 503 && (resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(resp.Header.Get("Cache-Status"), "detail=origin-budget") || !strings.Contains(string(b), "budget")):
			return 0, "", errorf("/z/%d: an undocumented 503: %v %q", n, resp.Header, b)
		case resp.StatusCode != 200 && resp.StatusCode != 503:
			return 0, "", errorf("/z/%d: %d %q", n, resp.StatusCode, b)
		}
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil
	}
	// Warm the cache without the budget (the budget is what the refill is measured against).
	h.srv.budget.lim.SetLimit(rate.Inf)
	parallel(t, 32, objects, func(i int) error {
		if code, _, err := get(i); err != nil || code != 200 {
			return errorf("warm /z/%d: %d %v", i, code, err)
		}
		return nil
	})
	h.srv.budget.lim.SetLimit(budget)
	z, err := zipf.New(objects, 0.9)
	if err != nil {
		t.Fatal(err)
	}

	for _, soft := range []bool{false, true} {
		ol.mu.Lock()
		from := len(ol.times)
		ol.mu.Unlock()
		body := `{"tags":["all-z"]}`
		if soft {
			body = `{"tags":["all-z"],"soft":true}`
		}
		pr, err := h.adminPost("/purge", body)
		if err != nil || pr.StatusCode != 200 {
			t.Fatalf("purge: %v %v", pr, err)
		}
		_ = pr.Body.Close()
		// The crowd: 32 viewers, 3,000 Zipf requests; then every object is asked for until it is
		// served (honouring Retry-After), bounded in time.
		var n503 atomic.Int64
		parallel(t, 32, 3000, func(i int) error {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			code, _, err := get(z.Draw(rng))
			if code == 503 {
				n503.Add(1)
			}
			return err
		})
		deadline := time.Now().Add(60 * time.Second)
		parallel(t, 32, objects, func(i int) error {
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
		ol.mu.Lock()
		times := append([]time.Time(nil), ol.times[from:]...)
		ol.mu.Unlock()
		sentTimes := sent.since(from)
		peak, sentPeak := maxPerWindow(times, time.Second), maxPerWindow(sentTimes, time.Second)
		peak5 := maxPerWindow(times, 5*time.Second)
		t.Logf("soft=%v: %d origin requests; in any second at most %d sent by the edge, %d arrived at the origin (budget %d); %d in any 5 s; %d viewer 503s",
			soft, len(times), sentPeak, peak, budget, peak5, n503.Load())
		// The edge spaces its tokens exactly (one token, refilled at the budget's rate), but the
		// goroutine a token goes to may run tens of milliseconds late on a loaded two-core
		// machine (-race, other packages' tests beside), so a few sends can crowd one second;
		// over five seconds the budget holds to the request.
		sentPeak5 := maxPerWindow(sentTimes, 5*time.Second)
		if sentPeak > budget+budget/10 || sentPeak5 > 5*budget+2 {
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
}

func (l *sendLog) Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	l.mu.Lock()
	l.times = append(l.times, time.Now())
	l.mu.Unlock()
	return l.Origin.Fetch(ctx, r)
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
