package failover_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/failover"
)

// httpMember is a real HTTP origin on loopback whose handler the test can change, counting the
// requests that reach it.
type httpMember struct {
	srv     *httptest.Server
	hits    atomic.Int64
	mu      sync.Mutex
	handler http.HandlerFunc
}

func newHTTPMember(t *testing.T, h http.HandlerFunc) *httpMember {
	t.Helper()
	m := &httpMember{handler: h}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		m.mu.Lock()
		h := m.handler
		m.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *httpMember) set(h http.HandlerFunc) {
	m.mu.Lock()
	m.handler = h
	m.mu.Unlock()
}

// origin is an origin.HTTP client of m with a short timeout.
func (m *httpMember) origin(t *testing.T) *origin.HTTP {
	t.Helper()
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: m.srv.URL, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// clock is a test clock the breakers read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	g   *failover.Group
	reg *prometheus.Registry
	clk *clock
}

func newGroup(t *testing.T, cfg failover.Config) fixture {
	t.Helper()
	f := fixture{reg: prometheus.NewRegistry(), clk: &clock{t: time.Unix(1_800_000_000, 0)}}
	// The edge's series, as cmd/duet wires them.
	m, err := edge.NewOriginMetrics(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics = m
	if cfg.Now == nil {
		cfg.Now = f.clk.Now
	}
	g, err := failover.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.g = g
	return f
}

// metric reads one series from the registry, as /metrics would show it (0 when absent).
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			want := map[string]string{}
			for i := 0; i+1 < len(labels); i += 2 {
				want[labels[i]] = labels[i+1]
			}
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// get fetches path and returns the status and body.
func get(t *testing.T, o failover.Fetcher, path string) (int, string) {
	t.Helper()
	resp, err := o.Fetch(t.Context(), &origin.Request{Path: path})
	if err != nil {
		t.Fatalf("fetch %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp.Status, string(b)
}

func health(g *failover.Group, name string) failover.MemberHealth {
	for _, h := range g.Health() {
		if h.Name == name {
			return h
		}
	}
	return failover.MemberHealth{}
}

// TestServerErrorFailsOver: a 5xx from the first member moves the fetch to the second, and the
// metrics say so.
func TestServerErrorFailsOver(t *testing.T) {
	a := newHTTPMember(t, status(http.StatusServiceUnavailable, "down for maintenance"))
	b := newHTTPMember(t, status(http.StatusOK, "bytes from b"))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "eu", Origin: a.origin(t)}, {Name: "us", Origin: b.origin(t)}}})
	code, body := get(t, f.g, "/seg1.ts")
	if code != http.StatusOK || body != "bytes from b" {
		t.Fatalf("got %d %q, want b's 200", code, body)
	}
	if a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Fatalf("hits a=%d b=%d, want 1 and 1", a.hits.Load(), b.hits.Load())
	}
	if n := metric(t, f.reg, "duet_edge_origin_failovers_total", "from", "eu", "to", "us"); n != 1 {
		t.Errorf("failovers eu->us = %v, want 1", n)
	}
	if n := metric(t, f.reg, "duet_edge_origin_member_errors_total", "origin", "eu", "reason", "5xx"); n != 1 {
		t.Errorf("eu 5xx errors = %v, want 1", n)
	}
	if h := health(f.g, "eu"); h.ConsecutiveFailures != 1 || h.State != failover.StateClosed || h.LastError != "status 503" {
		t.Errorf("eu health %+v", h)
	}
}

// TestClientErrorsAreAnswers: 404, 304, 412 and 416 are the object's state, not failures: they
// are returned from the first member and the second is never asked.
func TestClientErrorsAreAnswers(t *testing.T) {
	for _, code := range []int{http.StatusNotFound, http.StatusNotModified, http.StatusPreconditionFailed, http.StatusRequestedRangeNotSatisfiable} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			a := newHTTPMember(t, status(code, ""))
			b := newHTTPMember(t, status(http.StatusOK, "b"))
			f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}}})
			for range 5 { // more than the breaker's threshold: a 4xx never opens it
				if got, _ := get(t, f.g, "/x"); got != code {
					t.Fatalf("status %d, want %d", got, code)
				}
			}
			if b.hits.Load() != 0 {
				t.Fatalf("the fallback was asked %d times after a %d", b.hits.Load(), code)
			}
			if h := health(f.g, "a"); !h.Healthy || h.ConsecutiveFailures != 0 {
				t.Fatalf("a's health after %d answers: %+v", code, h)
			}
		})
	}
}

// TestTimeoutFailsOver: a member that does not answer within its timeout is left for the next.
func TestTimeoutFailsOver(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	a := newHTTPMember(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	b := newHTTPMember(t, status(http.StatusOK, "b"))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}}})
	start := time.Now()
	if code, body := get(t, f.g, "/x"); code != 200 || body != "b" {
		t.Fatalf("got %d %q", code, body)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("failover after a timeout took %s (member timeout 300ms)", took)
	}
	if n := metric(t, f.reg, "duet_edge_origin_member_errors_total", "origin", "a", "reason", "timeout"); n != 1 {
		t.Errorf("a timeouts = %v, want 1", n)
	}
}

// TestCancelledContextDoesNotFailOver: a caller that gives up stops the fetch at once; the
// fallback is not asked and the member is not blamed.
func TestCancelledContextDoesNotFailOver(t *testing.T) {
	arrived := make(chan struct{}, 1)
	a := newHTTPMember(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	// A long member timeout, so that only the caller's cancellation can end the wait.
	ao, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: a.srv.URL, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b := newHTTPMember(t, status(http.StatusOK, "b"))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: ao}, {Name: "b", Origin: b.origin(t)}}})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	start := time.Now()
	resp, err := f.g.Fetch(ctx, &origin.Request{Path: "/x"})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("fetch answered %d after the caller cancelled", resp.Status)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("cancelled fetch took %s", took)
	}
	if b.hits.Load() != 0 {
		t.Fatal("a cancelled fetch failed over to b")
	}
	if h := health(f.g, "a"); h.ConsecutiveFailures != 0 {
		t.Fatalf("a was blamed for the caller's cancellation: %+v", h)
	}
}

// TestBreaker walks one member through closed, open, half-open (a failed background probe,
// doubled cool-down), half-open again and closed, counting the requests that reach it. No fetch
// waits for a probe: the fetch that starts one is answered by the next member.
func TestBreaker(t *testing.T) {
	a := newHTTPMember(t, status(http.StatusInternalServerError, "broken"))
	b := newHTTPMember(t, status(http.StatusOK, "b"))
	var lastMethod atomic.Value
	a.set(func(w http.ResponseWriter, r *http.Request) {
		lastMethod.Store(r.Method)
		status(http.StatusInternalServerError, "broken")(w, r)
	})
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}},
		Failures: 3, Cooldown: time.Second, MaxCooldown: 4 * time.Second})
	fetchB := func(n int) {
		t.Helper()
		for range n {
			if code, body := get(t, f.g, "/x"); code != 200 || body != "b" {
				t.Fatalf("got %d %q, want b's answer", code, body)
			}
		}
	}
	// waitProbed waits until a has had n requests in all and its probe's verdict is in.
	waitProbed := func(n int64) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() bool {
			return a.hits.Load() == n && health(f.g, "a").State != failover.StateHalfOpen
		}, "a's probe: %d requests, state %s", a.hits.Load(), health(f.g, "a").State)
	}
	fetchB(10)
	if got := a.hits.Load(); got != 3 {
		t.Fatalf("the broken member got %d of 10 fetches, want 3 (then its breaker opens)", got)
	}
	h := health(f.g, "a")
	if h.State != failover.StateOpen || h.Healthy || h.ConsecutiveFailures != 3 {
		t.Fatalf("after 3 failures: %+v", h)
	}
	if up := metric(t, f.reg, "duet_edge_origin_up", "origin", "a"); up != 0 {
		t.Errorf("origin_up{a} = %v while open", up)
	}
	if st := metric(t, f.reg, "duet_edge_origin_breaker_state", "origin", "a"); st != 2 {
		t.Errorf("breaker_state{a} = %v while open, want 2", st)
	}

	f.clk.advance(time.Second) // cool-down over: the next fetch starts a probe of a, which fails
	fetchB(1)
	waitProbed(4)
	if m := lastMethod.Load(); m != http.MethodHead {
		t.Fatalf("the probe was a %v, want a HEAD", m)
	}
	if h := health(f.g, "a"); h.State != failover.StateOpen {
		t.Fatalf("after a failed probe: %+v", h)
	}
	fetchB(5)
	f.clk.advance(900 * time.Millisecond) // the cool-down doubled to 2s, of which at least 1s is waited
	fetchB(3)
	if got := a.hits.Load(); got != 4 {
		t.Fatalf("a probed again within half of its doubled 2s cool-down (%d requests)", got)
	}

	a.set(status(http.StatusOK, "a is back"))
	f.clk.advance(2 * time.Second)
	fetchB(1) // starts the probe, which succeeds
	waitProbed(5)
	if h := health(f.g, "a"); h.State != failover.StateClosed || !h.Healthy || h.ConsecutiveFailures != 0 {
		t.Fatalf("after a successful probe: %+v", h)
	}
	bHits := b.hits.Load()
	for range 5 {
		if _, body := get(t, f.g, "/x"); body != "a is back" {
			t.Fatalf("traffic did not return to a: %q", body)
		}
	}
	if b.hits.Load() != bHits {
		t.Fatal("the fallback still got traffic after a closed again")
	}
	if up := metric(t, f.reg, "duet_edge_origin_up", "origin", "a"); up != 1 {
		t.Errorf("origin_up{a} = %v after closing", up)
	}
}

// TestBreakerClosesSoonAfterARecovery: however long a member was down (here 10 minutes of failed
// probes, with the default cool-downs), its breaker closes within about 2s of the member
// answering again: the cool-down is capped, and the first fetch after it starts a probe.
func TestBreakerClosesSoonAfterARecovery(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	a := newHTTPMember(t, func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "a")
	})
	b := newHTTPMember(t, status(http.StatusOK, "b"))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}}})
	for range failover.DefaultFailures {
		get(t, f.g, "/x")
	}
	// Ten minutes down: a fetch every 31s, each starting a probe that fails.
	for range 20 {
		f.clk.advance(31 * time.Second)
		n := a.hits.Load()
		get(t, f.g, "/x")
		testenv.Eventually(t, 5*time.Second, func() bool {
			return a.hits.Load() == n+1 && health(f.g, "a").State == failover.StateOpen
		}, "no failed probe after a 31s wait (state %s)", health(f.g, "a").State)
	}
	down.Store(false)
	// 2s after a answers again (with a fetch now and then, as viewers make), it is closed.
	for range 4 {
		f.clk.advance(500 * time.Millisecond)
		get(t, f.g, "/x")
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return health(f.g, "a").State == failover.StateClosed },
		"a's breaker is %s 2s after a answered again", health(f.g, "a").State)
	if _, body := get(t, f.g, "/x"); body != "a" {
		t.Fatalf("after closing, a fetch got %q", body)
	}
}

// TestAllOpenStillTries: when every breaker is open the group still tries each member in order
// (and returns the last 5xx), and a member that recovers is used at once.
func TestAllOpenStillTries(t *testing.T) {
	a := newHTTPMember(t, status(http.StatusBadGateway, "a down"))
	b := newHTTPMember(t, status(http.StatusServiceUnavailable, "b down"))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}},
		Failures: 2, Cooldown: time.Hour})
	for range 4 {
		if code, body := get(t, f.g, "/x"); code != http.StatusServiceUnavailable || body != "b down" {
			t.Fatalf("got %d %q, want the last member's 503", code, body)
		}
	}
	for _, h := range f.g.Health() {
		if h.State != failover.StateOpen {
			t.Fatalf("%s not open after 4 failures: %+v", h.Name, h)
		}
	}
	aHits, bHits := a.hits.Load(), b.hits.Load()
	get(t, f.g, "/x")
	if a.hits.Load() != aHits+1 || b.hits.Load() != bHits+1 {
		t.Fatal("with every breaker open, a fetch did not try every member")
	}
	b.set(status(http.StatusOK, "b is back"))
	if code, body := get(t, f.g, "/x"); code != 200 || body != "b is back" {
		t.Fatalf("got %d %q", code, body)
	}
	if h := health(f.g, "b"); h.State != failover.StateClosed {
		t.Fatalf("b answered but its breaker is %s", h.State)
	}
}

// TestAllUnreachableFailsQuickly: with no member listening, Fetch returns ErrAllFailed at once.
func TestAllUnreachableFailsQuickly(t *testing.T) {
	var members []failover.Member
	for _, name := range []string{"a", "b", "c"} {
		m := newHTTPMember(t, status(200, ""))
		o := m.origin(t)
		m.srv.Close() // the port now refuses connections
		members = append(members, failover.Member{Name: name, Origin: o})
	}
	f := newGroup(t, failover.Config{Members: members})
	for i := range 6 {
		start := time.Now()
		resp, err := f.g.Fetch(t.Context(), &origin.Request{Path: "/x"})
		if err == nil {
			resp.Body.Close()
			t.Fatalf("fetch %d answered %d with every member down", i, resp.Status)
		}
		if !errors.Is(err, failover.ErrAllFailed) {
			t.Fatalf("error %v, want ErrAllFailed", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("fetch %d took %s to fail", i, took)
		}
	}
	if n := metric(t, f.reg, "duet_edge_origin_member_errors_total", "origin", "c", "reason", "error"); n != 6 {
		t.Errorf("c's connection errors = %v, want 6 (every fetch tries every member)", n)
	}
}

// TestForward: an idempotent request with a rewindable body is replayed on the next member after
// a 5xx; a POST is sent once only.
func TestForward(t *testing.T) {
	var got []string
	var mu sync.Mutex
	record := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			got = append(got, r.Method+" "+string(b))
			mu.Unlock()
			w.WriteHeader(code)
		}
	}
	a := newHTTPMember(t, record(http.StatusBadGateway))
	b := newHTTPMember(t, record(http.StatusCreated))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}}})
	if !f.g.Forwarding() {
		t.Fatal("a group of HTTP origins cannot forward")
	}
	resp, err := f.g.Forward(t.Context(), http.MethodPut, "/up", "", http.Header{}, bytes.NewReader([]byte("payload")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Status != http.StatusCreated || strings.Join(got, "|") != "PUT payload|PUT payload" {
		t.Fatalf("PUT: %d, origins saw %q", resp.Status, got)
	}
	got = nil
	resp, err = f.g.Forward(t.Context(), http.MethodPost, "/up", "", http.Header{}, bytes.NewReader([]byte("once")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Status != http.StatusBadGateway || len(got) != 1 {
		t.Fatalf("POST: %d, origins saw %q; want a's 502 and one request", resp.Status, got)
	}
}

type fetchOnly struct{ failover.Fetcher }

func TestForwardNeedsEveryMember(t *testing.T) {
	a := newHTTPMember(t, status(200, ""))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "s3", Origin: fetchOnly{a.origin(t)}}}})
	if f.g.Forwarding() {
		t.Fatal("Forwarding() with a member that cannot forward")
	}
	if _, err := f.g.Forward(t.Context(), http.MethodPut, "/x", "", nil, nil); !errors.Is(err, failover.ErrNotForwarding) {
		t.Fatalf("error %v, want ErrNotForwarding", err)
	}
}

func TestConfigErrors(t *testing.T) {
	o := newHTTPMember(t, status(200, "")).origin(t)
	for _, tc := range []struct {
		name string
		cfg  failover.Config
		want string
	}{
		{"empty", failover.Config{}, "no members"},
		{"dup", failover.Config{Members: []failover.Member{{Name: "a", Origin: o}, {Name: "a", Origin: o}}}, `name "a" is used twice`},
		{"bad name", failover.Config{Members: []failover.Member{{Name: "a b", Origin: o}}}, `name "a b"`},
		{"nil origin", failover.Config{Members: []failover.Member{{Name: "a"}}}, "no origin"},
		{"negative", failover.Config{Members: []failover.Member{{Name: "a", Origin: o}}, Failures: -1}, "Failures -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := failover.New(tc.cfg)
			if !errors.Is(err, failover.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}

// TestOneProbeAtATime: while the half-open probe is in flight, other fetches skip the member
// instead of piling onto an origin that may still be dead, and nobody waits for the probe.
func TestOneProbeAtATime(t *testing.T) {
	a := newHTTPMember(t, status(http.StatusInternalServerError, ""))
	b := newHTTPMember(t, status(http.StatusOK, "b"))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}},
		Failures: 3, Cooldown: time.Second})
	for range 3 {
		get(t, f.g, "/x")
	}
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	a.set(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "a")
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	f.clk.advance(time.Second)
	// The fetch that starts the probe is answered by b at once.
	if _, body := get(t, f.g, "/probe"); body != "b" {
		t.Fatalf("the fetch that started the probe got %q", body)
	}
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe did not reach a")
	}
	if h := health(f.g, "a"); h.State != failover.StateHalfOpen {
		t.Fatalf("during the probe a is %s", h.State)
	}
	if st := metric(t, f.reg, "duet_edge_origin_breaker_state", "origin", "a"); st != 1 {
		t.Errorf("breaker_state{a} = %v during the probe, want 1", st)
	}
	hits := a.hits.Load()
	for range 5 {
		if _, body := get(t, f.g, "/x"); body != "b" {
			t.Fatalf("a fetch during the probe got %q", body)
		}
	}
	if a.hits.Load() != hits {
		t.Fatal("fetches reached a while its probe was in flight")
	}
	close(release)
	testenv.Eventually(t, 5*time.Second, func() bool { return health(f.g, "a").State == failover.StateClosed },
		"after the probe a is %s", health(f.g, "a").State)
}

// TestConcurrentFetchesAlwaysAnswered: with the primary flapping between 500 and 200 under
// concurrent fetches, every fetch gets an answer (bounded: 8 workers x 50 fetches, 20 s).
func TestConcurrentFetchesAlwaysAnswered(t *testing.T) {
	var broken atomic.Bool
	a := newHTTPMember(t, func(w http.ResponseWriter, _ *http.Request) {
		if broken.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	b := newHTTPMember(t, status(http.StatusOK, "ok"))
	f := newGroup(t, failover.Config{Members: []failover.Member{{Name: "a", Origin: a.origin(t)}, {Name: "b", Origin: b.origin(t)}},
		Cooldown: 5 * time.Millisecond, MaxCooldown: 20 * time.Millisecond, Now: time.Now})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if w == 0 && i%10 == 0 {
					broken.Store(!broken.Load())
				}
				resp, err := f.g.Fetch(ctx, &origin.Request{Path: "/x"})
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.Status != 200 || string(body) != "ok" {
					errs <- fmt.Errorf("fetch answered %d %q %v", resp.Status, body, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
