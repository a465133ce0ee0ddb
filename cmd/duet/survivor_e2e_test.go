package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/purge"
)

// hotOrigin serves "<path> v<N>" with ETag "v<N>" and a long max-age, answers a matching
// If-None-Match with 304, and records when each edge sent each conditional request: every edge
// gets a listener of its own, so that the origin itself tells which edge asked.
type hotOrigin struct {
	mu      sync.Mutex
	version map[string]int         // path → version; absent: 1
	conds   map[string][]time.Time // "edge path" → arrival of each conditional request
}

func newHotOrigin() *hotOrigin {
	return &hotOrigin{version: map[string]int{}, conds: map[string][]time.Time{}}
}

func (o *hotOrigin) bump(path string) {
	o.mu.Lock()
	o.version[path] = max(o.version[path], 1) + 1
	o.mu.Unlock()
}

// listener starts the origin's listener for one edge and returns its URL.
func (o *hotOrigin) listener(t *testing.T, edge string) string {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		v := max(o.version[r.URL.Path], 1)
		inm := r.Header.Get("If-None-Match")
		if inm != "" {
			k := edge + " " + r.URL.Path
			o.conds[k] = append(o.conds[k], time.Now())
		}
		o.mu.Unlock()
		etag := fmt.Sprintf(`"v%d"`, v)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", etag)
		if inm == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "%s v%d", r.URL.Path, v)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestSurvivorRevalidatesOncePerBound is issue 14's acceptance 4: region A gone for 60 s, with the
// staleness bound at 3 s (20 bounds) instead of the default 10 s, so that each object is
// revalidated many times over.
// With A's NATS and purge API stopped, B's edges soon cannot prove they have every purge; serving
// a hot set of 100 cached objects at 200 requests/s, they still send the origin at most one
// conditional request per object per bound each (counted at the origin, per edge). A purge
// accepted in B meanwhile is honoured everywhere: by B's edges from its answer on, by A's edges
// (running but cut off, so they never hear of it) within the bound, as a trusted edge would;
// and by A's edges once A returns.
func TestSurvivorRevalidatesOncePerBound(t *testing.T) {
	const (
		bound   = 3 * time.Second
		outage  = 60 * time.Second
		objects = 100
		rate    = 200 // requests per second over B's two edges
	)
	origin := newHotOrigin()
	regions := []string{"A", "B"}
	a, b := &region{name: "A"}, &region{name: "B"}
	a.nats, a.natsCfg = startRegionNATS(t, "A", -1, nil, t.TempDir())
	b.nats, b.natsCfg = startRegionNATS(t, "B", 0, []string{natsserver.LeafURL(a.nats)}, t.TempDir())
	startPurgeAPI(t, a, regions)
	startPurgeAPI(t, b, regions)
	for _, r := range []*region{a, b} {
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("%s%d", strings.ToLower(r.name), i)
			r.edges = append(r.edges, startNATSEdge(t, r, name, origin.listener(t, name), regions, bound))
		}
	}
	all := append(append([]*testEdge{}, a.edges...), b.edges...)
	for _, e := range all {
		testenv.Eventually(t, 20*time.Second, e.trusted, "edge %s never trusted its cache", e.name)
	}
	path := func(i int) string { return fmt.Sprintf("/hot/seg%d.ts", i) }
	for _, e := range all {
		for i := range objects {
			e.get(t, path(i))
		}
		if body, x := e.get(t, path(0)); x != "HIT" || body != path(0)+" v1" {
			t.Fatalf("%s: %s %q after warming", e.name, x, body)
		}
	}

	// Region A goes: its purge API, then its NATS. Its edges keep running, cut off.
	a.stopAPI()
	a.nats.Shutdown()
	a.nats.WaitForShutdown()
	gone := time.Now()

	// The load: 200 requests/s, each for a random object of the hot set at one of B's edges.
	const purgedObj = 7
	var (
		purgedAt  atomic.Int64 // unix ns when B's API answered the purge; 0 before
		requests  atomic.Int64
		failures  atomic.Int64
		firstFail atomic.Value
		client    = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
		wg        sync.WaitGroup
		sem       = make(chan struct{}, 256)
	)
	loadCtx, stopLoad := context.WithTimeout(t.Context(), outage)
	defer stopLoad()
	fail := func(format string, args ...any) {
		failures.Add(1)
		firstFail.CompareAndSwap(nil, fmt.Sprintf(format, args...))
	}
	one := func(e *testEdge, i int) {
		defer func() { <-sem; wg.Done() }()
		sent := time.Now().UnixNano()
		resp, err := client.Get(e.url + path(i))
		if err != nil {
			fail("%s %s: %v", e.name, path(i), err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		requests.Add(1)
		want := path(i) + " v1"
		if i == purgedObj {
			if at := purgedAt.Load(); at != 0 && sent > at {
				want = path(i) + " v2"
			} else if string(body) == path(i)+" v2" {
				want = string(body) // the new version may be fetched before the purge's answer
			}
		}
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != want {
			fail("%s %s: %d %q (%v), want %q", e.name, path(i), resp.StatusCode, body, err, want)
		}
	}
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	type purged struct {
		st  purge.Status
		err error
	}
	purgeDone := make(chan purged, 1)
	var changed time.Time
	for n := 0; loadCtx.Err() == nil; {
		select {
		case <-loadCtx.Done():
		case <-tick.C:
			// As many as keep the rate (a ticker drops ticks when the machine is busy).
			for due := int(time.Since(gone) * rate / time.Second); n < due; n++ {
				select {
				case sem <- struct{}{}:
					wg.Add(1)
					go one(b.edges[n%2], rand.IntN(objects))
				default:
					fail("more than 256 requests outstanding: the edges fell behind")
				}
			}
		}
		if changed.IsZero() && time.Since(gone) > outage/2 {
			// Halfway: a new version of one object, and its purge through B's API.
			changed = time.Now()
			origin.bump(path(purgedObj))
			go func() {
				st, err := (&purge.Client{BaseURL: b.api, Token: testToken}).Purge(loadCtx,
					purge.Request{Target: purgereq.Target{URLs: []string{path(purgedObj)}}, Wait: "3s"})
				purgedAt.Store(time.Now().UnixNano())
				purgeDone <- purged{st, err}
			}()
		}
	}
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed; first: %v", f, requests.Load(), firstFail.Load())
	}
	for _, e := range b.edges {
		if e.trusted() {
			t.Fatalf("%s still trusts its cache %s after region A went: the test proves nothing", e.name, time.Since(gone))
		}
	}

	// At most one conditional request per object per bound, per edge; and the edges did ask.
	origin.mu.Lock()
	total, worst := 0, ""
	for _, e := range b.edges {
		for i := range objects {
			at := origin.conds[e.name+" "+path(i)]
			total += len(at)
			// Scheduling slack: the edge counts the bound from when it sent the request, the
			// origin sees each one a little later, by up to a few hundred milliseconds on a busy
			// two-core machine (-race, other tests beside): a quarter of the bound. The count
			// below is the acceptance's own measure.
			for j := 1; j < len(at); j++ {
				if gap := at[j].Sub(at[j-1]); gap < bound-bound/4 {
					worst = fmt.Sprintf("%s asked about %s twice within %s (bound %s): %v", e.name, path(i), gap, bound, at)
				}
			}
			if len(at) > int(outage/bound)+1 {
				worst = fmt.Sprintf("%s asked about %s %d times in %s (bound %s)", e.name, path(i), len(at), outage, bound)
			}
		}
	}
	origin.mu.Unlock()
	t.Logf("region A gone %s: B's edges served %d requests of %d objects with %d conditional requests to the origin",
		outage, requests.Load(), objects, total)
	if worst != "" {
		t.Fatal(worst)
	}
	if total < objects {
		t.Fatalf("only %d conditional requests: B's edges did not revalidate while untrusted", total)
	}

	// The purge: applied by both of B's edges before B's API answered.
	pr := <-purgeDone
	if pr.err != nil {
		t.Fatalf("purge through B's API during the outage: %v", pr.err)
	}
	st := pr.st
	acked := map[string]bool{}
	for _, ack := range st.Acks {
		acked[ack.Edge] = true
	}
	if !acked["b1"] || !acked["b2"] {
		t.Fatalf("B's purge during the outage: acks %v, missing %v", st.Acks, st.Missing)
	}
	// A's cut-off edges never heard of it, but serve the new version once the origin's change is
	// a bound old (they are the edges a trusted cache's bound speaks of).
	for _, e := range a.edges {
		if wait := time.Until(changed.Add(bound)); wait > 0 {
			time.Sleep(wait) //nolint:forbidigo // the test waits out the bound itself; a bound after the change, the old version is no longer allowed
		}
		if body, x := e.get(t, path(purgedObj)); body != path(purgedObj)+" v2" {
			t.Fatalf("cut-off %s serves %q (%s) a bound after the purged object changed", e.name, body, x)
		}
	}
	// A returns: its edges catch up, apply the purge and acknowledge it to B's API.
	var err error
	a.nats, err = natsserver.Start(t.Context(), a.natsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.nats.Shutdown)
	startPurgeAPI(t, a, regions)
	testenv.Eventually(t, 60*time.Second, func() bool {
		got, err := (&purge.Client{BaseURL: b.api, Token: testToken}).Get(t.Context(), st.ID)
		if err != nil {
			return false
		}
		names := []string{}
		for _, ack := range got.Acks {
			names = append(names, ack.Edge)
		}
		return slices.Contains(names, "a1") && slices.Contains(names, "a2")
	}, "A's edges never acknowledged B's purge after A returned")
	for _, e := range all {
		if body, x := e.get(t, path(purgedObj)); body != path(purgedObj)+" v2" {
			t.Fatalf("%s serves %q (%s) after A returned", e.name, body, x)
		}
	}
}
