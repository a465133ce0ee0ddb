package edge

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

// scriptedEdge starts an edge in front of an HTTP origin answering with fn.
func scriptedEdge(t *testing.T, fn http.HandlerFunc, mutate func(*Config)) *harness {
	t.Helper()
	ts := httptest.NewServer(fn)
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return startEdge(t, o, mutate)
}

// poll reports whether cond became true within timeout.
func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) { //nolint:forbidigo // poll interval inside a deadline
		if cond() {
			return true
		}
	}
	return cond()
}

// TestInvalidAgeDoesNotFreshen: an Age list counts by its first member (RFC 9111 §5.1), and an
// Age too large for an int64 saturates instead of being dropped: neither makes an old response
// look new.
func TestInvalidAgeDoesNotFreshen(t *testing.T) {
	t.Parallel()
	ages := map[string][]string{
		"/list":  {"7200, 0"},
		"/lines": {"7200", "0"},
		"/huge":  {"99999999999999999999"},
	}
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header()["Age"] = ages[r.URL.Path]
		_, _ = io.WriteString(w, "old")
	}, nil)
	for p := range ages {
		h.get(p)
		resp, _ := h.get(p)
		if resp.Header.Get("X-Cache") == "HIT" || h.origin.fetches(p) != 2 {
			t.Errorf("%s (Age %q): second request %s, origin fetched %d times; want it stale", p, ages[p], resp.Header.Get("X-Cache"), h.origin.fetches(p))
		}
	}
}

func TestAgeOf(t *testing.T) {
	cases := []struct {
		in   []string
		want time.Duration
		ok   bool
	}{
		{nil, 0, false},
		{[]string{"60"}, 60 * time.Second, true},
		{[]string{" 60 "}, 60 * time.Second, true},
		{[]string{"7200, 0"}, 7200 * time.Second, true},
		{[]string{"7200", "0"}, 7200 * time.Second, true},
		{[]string{"99999999999999999999"}, 1 << 31 * time.Second, true},
		{[]string{"-5"}, 0, false},
		{[]string{"1.5"}, 0, false},
		{[]string{"+3"}, 0, false},
		{[]string{""}, 0, false},
	}
	for _, c := range cases {
		if got, ok := ageOf(c.in); got != c.want || ok != c.ok {
			t.Errorf("%q: %v %v, want %v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzAge(f *testing.F) {
	for _, s := range []string{"60", "7200, 0", "-5", "1.5", "99999999999999999999", " 1 ,2"} {
		f.Add(s, "0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		got, ok := ageOf([]string{a, b})
		if got < 0 || got > 1<<31*time.Second || (!ok && got != 0) {
			t.Fatalf("%q %q: %v %v", a, b, got, ok)
		}
		// The first member decides, whatever follows it.
		first, _, _ := strings.Cut(a, ",")
		if g2, ok2 := ageOf([]string{first}); g2 != got || ok2 != ok {
			t.Fatalf("%q: %v %v, but its first member %q gives %v %v", a, got, ok, first, g2, ok2)
		}
		h := http.Header{"Age": {a, b}}
		now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
		if ia := initialAge(h, now, now); ia < got {
			t.Fatalf("initial age %v below Age %v", ia, got)
		}
	})
}

// TestInvalidExpiresIsStale: Expires is one HTTP-date; anything Go's lenient parser would
// have read (a one-digit hour, two spaces) or several lines mean "already expired".
func TestInvalidExpiresIsStale(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(time.Hour).UTC()
	expires := map[string][]string{
		"/one-digit-hour": {future.Format("Mon, 02 Jan 2006 3:04:05 GMT")},
		"/two-lines":      {future.Format(http.TimeFormat), future.Format(http.TimeFormat)},
		"/valid":          {future.Format(http.TimeFormat)},
		"/rfc850":         {future.Format("Monday, 02-Jan-06 15:04:05 GMT")},
	}
	if future.Hour()%12 >= 10 || future.Hour()%12 == 0 {
		// A two-digit 12-hour clock hour would be valid: use an hour that has one digit.
		expires["/one-digit-hour"] = []string{"Thu, 01 Jan 2099 1:00:00 GMT"}
	}
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Expires"] = expires[r.URL.Path]
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		_, _ = io.WriteString(w, "x")
	}, nil)
	for p, v := range expires {
		h.get(p)
		h.waitCached(p)
		resp, _ := h.get(p)
		wantHit := p == "/valid" || p == "/rfc850"
		if got := resp.Header.Get("X-Cache") == "HIT"; got != wantHit {
			t.Errorf("%s (Expires %q): %s, want hit %v", p, v, resp.Header.Get("X-Cache"), wantHit)
		}
	}
}

func TestExpiresStrict(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	s := &Server{cfg: DefaultConfig()}
	for _, v := range []string{"Mon, 07 Dec 2026  13:00:00 GMT", "Mon, 07 Dec 2026 1:00:00 GMT", "0", "Mon, 07 Dec 2026 13:00:00 GMT, 0"} {
		h := http.Header{"Date": {now.Format(http.TimeFormat)}, "Expires": {v}}
		d := s.decide("/k", "/x.ts", now, now, &origin.Response{Status: 200, Header: h})
		if !d.storable || d.meta.FreshFor != 0 {
			t.Errorf("Expires %q: storable %v fresh for %v, want stored already stale", v, d.storable, d.meta.FreshFor)
		}
	}
}

// TestStoredHeadersKeepDateAndContentRange: a stored response keeps what the origin sent.
func TestStoredHeadersKeepDateAndContentRange(t *testing.T) {
	h := http.Header{"Date": {"Mon, 07 Dec 2026 12:00:00 GMT"}, "Content-Range": {"bytes 0-9/100"},
		"Content-Length": {"10"}, "Age": {"3"}, "Etag": {`"a"`}}
	got := map[string]string{}
	for _, f := range storedHeaders(h) {
		got[f.Name] = f.Value
	}
	if got["Date"] != h.Get("Date") || got["Content-Range"] != h.Get("Content-Range") || got["Etag"] != `"a"` {
		t.Fatalf("stored %v", got)
	}
	if _, ok := got["Content-Length"]; ok {
		t.Fatal("Content-Length stored: the edge frames the body itself")
	}
	if _, ok := got["Age"]; ok {
		t.Fatal("Age stored: the edge computes it")
	}
}

// TestRevalidation304UpdatesHeaders: a 304 replaces the stored fields it carries (Date,
// Cache-Control, a new field), keeps the others, and never changes Content-Length (RFC 9111
// §3.2 and §4.3.4).
func TestRevalidation304UpdatesHeaders(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	date304 := time.Now().UTC().Add(time.Second).Format(http.TimeFormat)
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("Date", date304)
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("X-Version", "two")
			w.Header().Set("Content-Length", "999")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Date", "Mon, 07 Dec 2026 01:00:00 GMT")
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/x-test")
		w.Header().Set("X-Version", "one")
		w.Header().Set("X-Kept", "yes")
		_, _ = io.WriteString(w, "body")
	}, nil)
	h.get("/r")
	h.waitCached("/r")
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/r"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	resp, _ := h.get("/r")
	expect(t, resp, 200, "REVALIDATED")
	resp, body := h.get("/r")
	expect(t, resp, 200, "HIT")
	if string(body) != "body" || resp.Header.Get("X-Version") != "two" || resp.Header.Get("X-Kept") != "yes" ||
		resp.Header.Get("Content-Type") != "text/x-test" {
		t.Fatalf("after the 304: %q %v", body, resp.Header)
	}
	m, ok := h.srv.store.peek("/r")
	if !ok {
		t.Fatal("entry gone")
	}
	var date string
	for _, f := range m.Header {
		if f.Name == "Date" {
			date = f.Value
		}
	}
	if date != date304 {
		t.Fatalf("stored Date %q, want the 304's %q", date, date304)
	}
}

// authOrigin answers 401 without the right credentials, and cc on success. It counts requests
// by whether they had credentials, and can hold requests until released.
type authOrigin struct {
	cc         string
	anon, auth atomic.Int32
	gate       chan struct{} // when non-nil, every request waits for it to close
}

func (a *authOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" {
		a.anon.Add(1)
	} else {
		a.auth.Add(1)
	}
	if a.gate != nil {
		<-a.gate
	}
	if r.Header.Get("Authorization") != "Bearer good" {
		w.Header().Set("Cache-Control", "max-age=600")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "who are you")
		return
	}
	w.Header().Set("Cache-Control", a.cc)
	_, _ = io.WriteString(w, "secret")
}

// TestAuthorizationForwardedNotShared: credentials reach the origin; the answer is not reused
// for anyone else unless its Cache-Control allows it (RFC 9111 §3.5).
func TestAuthorizationForwardedNotShared(t *testing.T) {
	t.Parallel()
	ao := &authOrigin{cc: "max-age=600"}
	h := scriptedEdge(t, ao.ServeHTTP, nil)
	resp, body := h.get("/p", "Authorization", "Bearer good")
	if resp.StatusCode != 200 || string(body) != "secret" {
		t.Fatalf("with credentials: %d %q", resp.StatusCode, body)
	}
	resp, body = h.get("/p")
	if resp.StatusCode != 401 || string(body) == "secret" {
		t.Fatalf("anonymous after a credentialed fetch: %d %q", resp.StatusCode, body)
	}
	// The anonymous 401 (explicitly fresh) is now cached: credentials must not get it.
	resp, body = h.get("/p", "Authorization", "Bearer good")
	if resp.StatusCode != 200 || string(body) != "secret" {
		t.Fatalf("with credentials after an anonymous 401: %d %q", resp.StatusCode, body)
	}
	resp, body = h.get("/p", "Authorization", "Bearer bad")
	if resp.StatusCode != 401 {
		t.Fatalf("other credentials: %d %q", resp.StatusCode, body)
	}
	if ao.auth.Load() != 3 {
		t.Fatalf("origin saw %d credentialed requests, want 3 (none answered from cache)", ao.auth.Load())
	}
}

func TestAuthorizationSharedWhenPublic(t *testing.T) {
	t.Parallel()
	for _, cc := range []string{"public, max-age=600", "s-maxage=600", "max-age=600, must-revalidate"} {
		ao := &authOrigin{cc: cc}
		h := scriptedEdge(t, ao.ServeHTTP, nil)
		resp, body := h.get("/p", "Authorization", "Bearer good")
		if resp.StatusCode != 200 || string(body) != "secret" {
			t.Fatalf("%s: with credentials: %d %q", cc, resp.StatusCode, body)
		}
		h.waitCached("/p")
		resp, body = h.get("/p")
		expect(t, resp, 200, "HIT")
		if string(body) != "secret" {
			t.Fatalf("%s: anonymous: %q", cc, body)
		}
		resp, _ = h.get("/p", "Authorization", "Bearer good")
		expect(t, resp, 200, "HIT")
		if n := ao.anon.Load() + ao.auth.Load(); n != 1 {
			t.Fatalf("%s: origin asked %d times, want 1", cc, n)
		}
	}
}

// TestAuthorizationNotCollapsedWithAnonymous: a request with credentials never waits for an
// anonymous flight's answer, nor an anonymous request for a credentialed one.
func TestAuthorizationNotCollapsedWithAnonymous(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"anonymous", "credentials"} {
		t.Run("first "+first, func(t *testing.T) {
			ao := &authOrigin{cc: "max-age=600", gate: make(chan struct{})}
			h := scriptedEdge(t, ao.ServeHTTP, nil)
			type result struct {
				status int
				body   string
			}
			var wg sync.WaitGroup
			results := make([]result, 2)
			send := func(i int, hdr ...string) {
				defer wg.Done()
				resp, body := h.get("/c", hdr...)
				results[i] = result{resp.StatusCode, string(body)}
			}
			anonHdr, authHdr := []string{}, []string{"Authorization", "Bearer good"}
			hdrs := [][]string{anonHdr, authHdr}
			if first == "credentials" {
				hdrs[0], hdrs[1] = authHdr, anonHdr
			}
			wg.Add(1)
			go send(0, hdrs[0]...)
			testenv.Eventually(t, 5*time.Second, func() bool { return ao.anon.Load()+ao.auth.Load() == 1 }, "first request never reached the origin")
			wg.Add(1)
			go send(1, hdrs[1]...)
			ok := poll(5*time.Second, func() bool { return ao.anon.Load()+ao.auth.Load() == 2 })
			close(ao.gate)
			wg.Wait()
			if !ok {
				t.Fatalf("the second request joined the first one's flight: %+v", results)
			}
			want := []result{{401, "who are you"}, {200, "secret"}}
			if first == "credentials" {
				want[0], want[1] = want[1], want[0]
			}
			if results[0] != want[0] || results[1] != want[1] {
				t.Fatalf("got %+v, want %+v", results, want)
			}
		})
	}
}

// TestCDNCacheControlStructured: CDN-Cache-Control is a Structured Field Dictionary.
func TestCDNCacheControlStructured(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	s := &Server{cfg: DefaultConfig()}
	s.cfg.Cache.DefaultTTL = 7 * time.Second
	cases := []struct {
		cdn, cc  string
		storable bool
		fresh    time.Duration
	}{
		{`max-age=60, no-store=`, "max-age=10", true, 10 * time.Second}, // not a dictionary: Cache-Control applies
		{`MAX-AGE=60`, "max-age=10", true, 10 * time.Second},            // keys are lower-case
		{`max-age=60, private=?0`, "private", true, 60 * time.Second},   // ?0 is false
		{`max-age=60;foo=bar, no-cache=?0`, "", true, 60 * time.Second}, // parameters ignored
		{`max-age="60"`, "max-age=10", true, 7 * time.Second},           // a String max-age is ignored; CDN-Cache-Control still governs
		{`max-age=1.5`, "max-age=10", true, 7 * time.Second},            // so is a Decimal
		{`max-age=-1`, "", true, 7 * time.Second},                       // and a negative Integer
		{`no-store`, "max-age=10", false, 0},
		{`private="set-cookie"`, "", false, 0},
		{`s-maxage=20, max-age=5`, "", true, 20 * time.Second},
		{`max-age=99999999999999`, "", true, 1 << 31 * time.Second},
	}
	for _, c := range cases {
		h := http.Header{"Cdn-Cache-Control": {c.cdn}}
		if c.cc != "" {
			h.Set("Cache-Control", c.cc)
		}
		d := s.decide("/k", "/x.bin", now, now, &origin.Response{Status: 200, Header: h})
		if d.storable != c.storable || (c.storable && d.meta.FreshFor != c.fresh) {
			t.Errorf("CDN-Cache-Control %q, Cache-Control %q: storable %v (%s) fresh %v, want %v %v",
				c.cdn, c.cc, d.storable, d.reason, d.meta.FreshFor, c.storable, c.fresh)
		}
	}
}

// TestOrigin5xxPassedThrough: the viewer gets the origin's own 5xx (status, headers, body), a
// 5xx with explicit freshness is cached, and an uncacheable one is fetched once for a crowd.
func TestOrigin5xxPassedThrough(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	gate := make(chan struct{})
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		switch r.URL.Path {
		case "/crowd":
			<-gate
		case "/cached":
			w.Header().Set("Cache-Control", "max-age=600")
		}
		w.Header().Set("Retry-After", "120")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "down for maintenance")
	}, nil)
	check := func(p string, resp *http.Response, body []byte) {
		t.Helper()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "120" || string(body) != "down for maintenance" {
			t.Fatalf("%s: %d %v %q, want the origin's 503", p, resp.StatusCode, resp.Header, body)
		}
	}
	resp, body := h.get("/plain")
	check("/plain", resp, body)
	resp, body = h.get("/plain", "Range", "bytes=0-3") // a cold range goes by slices
	check("/plain range", resp, body)

	resp, body = h.get("/cached")
	check("/cached", resp, body)
	h.waitCached("/cached")
	resp, body = h.get("/cached")
	check("/cached", resp, body)
	expect(t, resp, 503, "HIT")

	const crowd = 20
	var wg sync.WaitGroup
	errs := make(chan string, crowd)
	for range crowd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := h.get("/crowd")
			if resp.StatusCode != 503 || string(body) != "down for maintenance" || resp.Header.Get("Retry-After") != "120" {
				errs <- fmt.Sprintf("%d %q", resp.StatusCode, body)
			}
		}()
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return h.origin.fetches("/crowd") >= 1 }, "crowd never reached the origin")
	// Wait until the crowd has joined the flight: then exactly one origin request serves all.
	testenv.Eventually(t, 5*time.Second, func() bool {
		return testutilCounter(t, h, "duet_edge_collapsed_requests_total") >= crowd-1
	}, "the crowd never collapsed")
	close(gate)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("crowd member got %s", e)
	}
	if f := h.origin.fetches("/crowd"); f != 1 {
		t.Errorf("origin asked %d times for a crowd of %d: the 5xx was not shared", f, crowd)
	}
}

// TestStaleIfErrorOn5xx: a stale entry stands in for an origin 5xx under stale-if-error.
func TestStaleIfErrorOn5xx(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "boom")
			return
		}
		w.Header().Set("Cache-Control", "max-age=600, stale-if-error=3600")
		w.Header().Set("Etag", `"1"`)
		_, _ = io.WriteString(w, "good")
	}, nil)
	h.get("/s")
	h.waitCached("/s")
	broken.Store(true)
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/s"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	resp, body := h.get("/s")
	expect(t, resp, 200, "STALE")
	if string(body) != "good" {
		t.Fatalf("got %q", body)
	}
}

// TestOriginDownHidesAddress: an edge-made 502 says why without naming the origin.
func TestOriginDownHidesAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: "http://" + addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	for _, p := range []string{"/x", "/x?pass"} {
		resp, body := h.get(p)
		if resp.StatusCode != 502 || strings.Contains(string(body), addr) || strings.Contains(string(body), "127.0.0.1") ||
			!strings.Contains(string(body), "origin unavailable") {
			t.Fatalf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
	resp, body := h.get("/x", "Range", "bytes=0-9")
	if resp.StatusCode != 502 || strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("range: %d %q", resp.StatusCode, body)
	}
	resp, body = h.do(http.MethodPost, "/x")
	if strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
}

// TestUncacheable304AnswersViewer: a 304 that withdraws cacheability (no-store) leads to a
// fresh fetch for the viewer, never a 502, and the entry is gone.
func TestUncacheable304AnswersViewer(t *testing.T) {
	t.Parallel()
	var withdrawn atomic.Bool
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"1"`)
		if !withdrawn.Load() {
			w.Header().Set("Cache-Control", "max-age=600")
		} else {
			w.Header().Set("Cache-Control", "no-store")
			if r.Header.Get("If-None-Match") == `"1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		_, _ = io.WriteString(w, "body")
	}, nil)
	h.get("/w")
	h.waitCached("/w")
	withdrawn.Store(true)
	if _, err := h.srv.Purge(t.Context(), purgereq.Target{URLs: []string{"/w"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	resp, body := h.get("/w")
	if resp.StatusCode != 200 || string(body) != "body" {
		t.Fatalf("after a no-store 304: %d %q", resp.StatusCode, body)
	}
	if _, ok := h.srv.store.peek("/w"); ok {
		t.Fatal("entry still stored after the origin withdrew it")
	}
	resp, _ = h.get("/w")
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") == "HIT" {
		t.Fatalf("next request: %d %s", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
}

// TestPreconditionsOnCachedResponses: If-Match and If-Unmodified-Since are evaluated against
// the stored response (RFC 9110 §13.2.2) and a failing one gives 412.
func TestPreconditionsOnCachedResponses(t *testing.T) {
	t.Parallel()
	lm := "Mon, 07 Dec 2026 10:00:00 GMT"
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Etag", `"abc"`)
		w.Header().Set("Last-Modified", lm)
		_, _ = io.WriteString(w, "body")
	}, nil)
	h.get("/p")
	h.waitCached("/p")
	cases := []struct {
		hdr  []string
		want int
	}{
		{[]string{"If-Match", `"abc"`}, 200},
		{[]string{"If-Match", `"x", "abc"`}, 200},
		{[]string{"If-Match", `*`}, 200},
		{[]string{"If-Match", `"xyz"`}, 412},
		{[]string{"If-Match", `W/"abc"`}, 412}, // strong comparison
		{[]string{"If-Unmodified-Since", "Mon, 07 Dec 2026 09:00:00 GMT"}, 412},
		{[]string{"If-Unmodified-Since", lm}, 200},
		{[]string{"If-Unmodified-Since", "garbage"}, 200},
		{[]string{"If-Match", `"abc"`, "If-Unmodified-Since", "Mon, 07 Dec 2026 09:00:00 GMT"}, 200}, // IUS ignored
		{[]string{"If-Match", `"xyz"`, "If-None-Match", `"abc"`}, 412},                               // If-Match first
		{[]string{"If-Unmodified-Since", "Mon, 07 Dec 2026 09:00:00 GMT", "Range", "bytes=0-1"}, 412},
	}
	for _, c := range cases {
		resp, body := h.get("/p", c.hdr...)
		if resp.StatusCode != c.want {
			t.Errorf("%q: %d %q, want %d", c.hdr, resp.StatusCode, body, c.want)
		}
		if c.want == 412 && (strings.Contains(string(body), "body") || resp.Header.Get("Cache-Control") != "no-store") {
			t.Errorf("%q: 412 with %q, %v", c.hdr, body, resp.Header)
		}
	}
	if n := h.origin.fetches("/p"); n != 1 {
		t.Fatalf("preconditions reached the origin: %d fetches", n)
	}
}

// TestViewerNoCache: a viewer's no-cache is ignored by default, and with
// cache.revalidate_on_viewer_no_cache revalidates the entry with the origin.
func TestViewerNoCache(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		var conditional atomic.Int32
		h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("Etag", `"1"`)
			if r.Header.Get("If-None-Match") == `"1"` {
				conditional.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
			_, _ = io.WriteString(w, "body")
		}, func(c *Config) { c.Cache.RevalidateOnViewerNoCache = on })
		h.get("/n")
		h.waitCached("/n")
		for _, hdr := range [][]string{{"Cache-Control", "no-cache"}, {"Cache-Control", "max-age=0"}, {"Pragma", "no-cache"}} {
			resp, body := h.get("/n", hdr...)
			want := "HIT"
			if on {
				want = "REVALIDATED"
			}
			expect(t, resp, 200, want)
			if string(body) != "body" {
				t.Fatalf("%v: %q", hdr, body)
			}
		}
		resp, _ := h.get("/n", "Cache-Control", "no-cache", "Pragma", "no-cache")
		if on && resp.Header.Get("X-Cache") != "REVALIDATED" {
			t.Fatalf("both: %s", resp.Header.Get("X-Cache"))
		}
		if want := map[bool]int32{false: 0, true: 4}[on]; conditional.Load() != want {
			t.Fatalf("switch %v: %d revalidations, want %d", on, conditional.Load(), want)
		}
	}
}

// TestSliceAnswersCarryTheirOwnContentRange: slices keep the origin's Content-Range in storage,
// but an answer built from them carries only the Content-Range of what it sends (none on a 200
// or a multipart/byteranges).
func TestSliceAnswersCarryTheirOwnContentRange(t *testing.T) {
	t.Parallel()
	const slice = 64 << 10
	body := randomBytes(3*slice, 9)
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Etag", `"s"`)
		http.ServeContent(w, r, "obj.bin", time.Time{}, strings.NewReader(string(body)))
	}, func(c *Config) { c.Cache.SliceBytes = slice })
	resp, got := h.get("/obj.bin", "Range", "bytes=10-19")
	if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(body)) || string(got) != string(body[10:20]) {
		t.Fatalf("single range: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = h.get("/obj.bin", "Range", fmt.Sprintf("bytes=0-9,%d-%d", slice+1, slice+5))
	if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") {
		t.Fatalf("multiple ranges: %d %v", resp.StatusCode, resp.Header)
	}
	resp, got = h.get("/obj.bin", "Range", fmt.Sprintf("bytes=0-%d", len(body)-1))
	if resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)) && resp.Header.Get("Content-Range") != "" {
		t.Fatalf("whole range: %d %v", resp.StatusCode, resp.Header)
	}
	if resp.StatusCode == 200 && resp.Header.Get("Content-Range") != "" {
		t.Fatalf("a 200 with Content-Range: %v", resp.Header)
	}
	if string(got) != string(body) {
		t.Fatal("whole range: other bytes")
	}
}

// TestDateOnTheWire: a hit sends the stored Date with its Age, a miss and a pass the origin's
// Date, and an edge-made answer the edge's own clock.
func TestDateOnTheWire(t *testing.T) {
	t.Parallel()
	const originDate = "Mon, 07 Dec 2026 01:00:00 GMT"
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", originDate)
		if r.URL.Path == "/pass" {
			w.Header().Set("Cache-Control", "no-store")
		} else {
			w.Header().Set("Cache-Control", "max-age=999999999")
		}
		_, _ = io.WriteString(w, "x")
	}, nil)
	for _, p := range []string{"/a", "/a", "/pass"} {
		resp, _ := h.get(p)
		if resp.Header.Get("Date") != originDate || len(resp.Header.Values("Date")) != 1 {
			t.Fatalf("%s (%s): Date %q, want the origin's %q", p, resp.Header.Get("X-Cache"), resp.Header.Values("Date"), originDate)
		}
	}
	h.waitCached("/a")
	resp, _ := h.get("/a")
	expect(t, resp, 200, "HIT")
	if resp.Header.Get("Date") != originDate || resp.Header.Get("Age") == "0" {
		t.Fatalf("hit: Date %q Age %q", resp.Header.Get("Date"), resp.Header.Get("Age"))
	}
	resp, _ = h.get("/a", "If-None-Match", "*")
	if resp.StatusCode != 304 || resp.Header.Get("Date") != originDate {
		t.Fatalf("304: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = h.get("/../x")
	if d, err := http.ParseTime(resp.Header.Get("Date")); err != nil || time.Since(d) > time.Minute {
		t.Fatalf("edge answer: Date %q", resp.Header.Get("Date"))
	}
	resp, _ = h.get("/.well-known/duet/ready")
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		t.Fatalf("ready: Date %q", resp.Header.Get("Date"))
	}
}

// TestDateAddedWhenMissing: a response without Date is stored with the time it arrived (RFC
// 9110 §6.6.1), and every hit sends that one.
func TestDateAddedWhenMissing(t *testing.T) {
	t.Parallel()
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // net/http then sends none
		w.Header().Set("Cache-Control", "max-age=600")
		_, _ = io.WriteString(w, "x")
	}, nil)
	h.get("/nd")
	h.waitCached("/nd")
	m, _ := h.srv.store.peek("/nd")
	stored := storedDate(m.Header)
	if _, err := http.ParseTime(stored); err != nil {
		t.Fatalf("stored Date %q", stored)
	}
	resp, _ := h.get("/nd")
	expect(t, resp, 200, "HIT")
	if resp.Header.Get("Date") != stored {
		t.Fatalf("hit Date %q, stored %q", resp.Header.Get("Date"), stored)
	}
}

// TestDatesOfManyObjects: hits of objects with different stored Dates each send their own, also
// when two Dates share a slot of the edge's table of parsed Date headers (date.go): the table
// must never hand one object's Date to another.
func TestDatesOfManyObjects(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	dateOf := func(i int) string { return base.Add(time.Duration(i) * time.Second).Format(http.TimeFormat) }
	// Two Dates in one slot, found among the first objects' Dates.
	var dt dateTemplates
	slotOf := func(d string) uint64 { return xxhash.Sum64String(d) % uint64(len(dt.slots)) }
	seen := map[uint64]int{}
	var a, b int
	for i := 0; ; i++ {
		if j, ok := seen[slotOf(dateOf(i))]; ok {
			a, b = j, i
			break
		}
		seen[slotOf(dateOf(i))] = i
	}
	h := scriptedEdge(t, func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/o/"))
		w.Header().Set("Date", dateOf(i))
		w.Header().Set("Cache-Control", "max-age=999999999")
		_, _ = io.WriteString(w, "x")
	}, nil)
	paths := []int{a, b, a + 1, b + 1}
	for _, i := range paths {
		h.get("/o/" + strconv.Itoa(i))
		h.waitCached("/o/" + strconv.Itoa(i))
	}
	for round := 0; round < 3; round++ {
		for _, i := range paths {
			resp, _ := h.get("/o/" + strconv.Itoa(i))
			if got := resp.Header.Values("Date"); len(got) != 1 || got[0] != dateOf(i) {
				t.Fatalf("object %d (%s): Date %q, want %q", i, resp.Header.Get("X-Cache"), got, dateOf(i))
			}
		}
	}
}
