package edge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/origin"
)

func TestDecideFreshness(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	s := &Server{cfg: DefaultConfig()}
	s.cfg.Cache.DefaultTTL = 7 * time.Second
	cases := []struct {
		name      string
		path      string
		status    int
		hdr       map[string]string
		storable  bool
		fresh     time.Duration
		mustReval bool
	}{
		{"s-maxage wins", "/a", 200, map[string]string{"Cache-Control": "max-age=10, s-maxage=20"}, true, 20 * time.Second, true},
		{"max-age", "/a", 200, map[string]string{"Cache-Control": "max-age=10"}, true, 10 * time.Second, false},
		{"max-age over Expires", "/a", 200, map[string]string{"Cache-Control": "max-age=10", "Expires": now.Add(time.Hour).Format(http.TimeFormat), "Date": date}, true, 10 * time.Second, false},
		{"Expires minus Date", "/a", 200, map[string]string{"Expires": now.Add(time.Hour).Format(http.TimeFormat), "Date": date}, true, time.Hour, false},
		{"invalid Expires is stale", "/a", 200, map[string]string{"Expires": "0", "Date": date}, true, 0, false},
		{"CDN-Cache-Control wins", "/a", 200, map[string]string{"Cache-Control": "no-store", "Cdn-Cache-Control": "max-age=30"}, true, 30 * time.Second, false},
		{"no-cache stores but revalidates", "/a", 200, map[string]string{"Cache-Control": "no-cache, max-age=60"}, true, 0, true},
		{"no-store", "/a", 200, map[string]string{"Cache-Control": "no-store"}, false, 0, false},
		{"private", "/a", 200, map[string]string{"Cache-Control": "private, max-age=60"}, false, 0, false},
		{"set-cookie", "/a", 200, map[string]string{"Cache-Control": "max-age=60", "Set-Cookie": "a=b"}, false, 0, false},
		{"vary star", "/a", 200, map[string]string{"Cache-Control": "max-age=60", "Vary": "*"}, false, 0, false},
		// RFC 9111 §3: any status with explicit freshness may be stored (was: a 5xx never was).
		{"5xx with max-age", "/a", 503, map[string]string{"Cache-Control": "max-age=60"}, true, 60 * time.Second, false},
		{"5xx without freshness", "/a", 503, nil, false, 0, false},
		{"501 heuristic is negative", "/v/a.ts", 501, nil, true, 10 * time.Second, false},
		{"heuristic 10% of Last-Modified age", "/doc.html", 200, map[string]string{"Date": date, "Last-Modified": now.Add(-10 * time.Hour).Format(http.TimeFormat)}, true, time.Hour, false},
		{"heuristic capped", "/doc.html", 200, map[string]string{"Date": date, "Last-Modified": now.Add(-10000 * time.Hour).Format(http.TimeFormat)}, true, 24 * time.Hour, false},
		{"playlist default", "/live/index.m3u8", 200, map[string]string{"Last-Modified": date}, true, 2 * time.Second, false},
		{"DASH manifest default", "/v/manifest.mpd", 200, nil, true, 2 * time.Second, false},
		{"segment default", "/v/720p/seg1.m4s", 200, nil, true, 24 * time.Hour, false},
		{"negative 404", "/v/gone.ts", 404, nil, true, 10 * time.Second, false},
		{"explicit 404 freshness", "/v/gone.ts", 404, map[string]string{"Cache-Control": "max-age=3"}, true, 3 * time.Second, false},
		{"other without anything", "/x.bin", 200, nil, true, 7 * time.Second, false},
		{"302 without freshness", "/r", 302, nil, false, 0, false},
		{"302 with max-age", "/r", 302, map[string]string{"Cache-Control": "max-age=5"}, true, 5 * time.Second, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range c.hdr {
				h.Set(k, v)
			}
			d := s.decide("/k", c.path, now, now, &origin.Response{Status: c.status, Header: h, Body: io.NopCloser(strings.NewReader(""))})
			if d.storable != c.storable {
				t.Fatalf("storable %v (%s), want %v", d.storable, d.reason, c.storable)
			}
			if !c.storable {
				return
			}
			if d.meta.FreshFor != c.fresh || d.meta.MustRevalidate != c.mustReval {
				t.Fatalf("fresh for %v must-revalidate %v, want %v %v", d.meta.FreshFor, d.meta.MustRevalidate, c.fresh, c.mustReval)
			}
		})
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("Date", now.Add(-30*time.Second).Format(http.TimeFormat))
	h.Set("Age", "100")
	// corrected_initial_age = max(apparent 30s, 100s + 2s delay) = 102s
	got := initialAge(h, now.Add(-2*time.Second), now)
	if got != 102*time.Second {
		t.Fatalf("initial age %v, want 102s", got)
	}
	h.Set("Age", "garbage")
	if got := initialAge(h, now, now); got != 30*time.Second {
		t.Fatalf("initial age with a bad Age %v, want the apparent 30s", got)
	}
}

// TestCDNCacheControlEndToEnd: the edge obeys CDN-Cache-Control, consumes it, and passes the
// origin's Cache-Control on to browsers unchanged.
func TestCDNCacheControlEndToEnd(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("CDN-Cache-Control", "max-age=600")
		_, _ = w.Write([]byte("edge-cached, browser-uncached"))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	resp, _ := h.get("/cdncc")
	expect(t, resp, 200, "MISS")
	resp, _ = h.get("/cdncc")
	expect(t, resp, 200, "HIT")
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Cdn-Cache-Control") != "" {
		t.Fatalf("headers to the browser: %v", resp.Header)
	}
}

// TestMerge304WithoutDate: a 304 without Date refreshes the entry as of its arrival: the old
// stored Date must not make the refreshed entry as old as before.
func TestMerge304WithoutDate(t *testing.T) {
	s := &Server{cfg: DefaultConfig()}
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	h := http.Header{"Cache-Control": {"max-age=60"}, "Etag": {`"1"`}}
	d := s.decide("/k", "/x.bin", t0, t0, &origin.Response{Status: 200, Header: h})
	later := t0.Add(time.Hour)
	m, ok := s.merge304(d.meta, "/x.bin", later, later, &origin.Response{Status: 304, Header: http.Header{"Etag": {`"1"`}}})
	if !ok || freshnessOf(&m, later.Add(time.Second)) != fresh {
		t.Fatalf("after the 304: storable %v, age %v of %v", ok, age(&m, later.Add(time.Second)), m.FreshFor)
	}
}
