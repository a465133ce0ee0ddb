package edge

import (
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/duetcdn/duet/internal/signedurl"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

// mediaOrigin is an HTTP origin of video: an HLS VOD stream (/vod/h/), a DASH VOD stream
// (/vod/d/, two representations), and a live HLS stream (/live/l/) whose window the test moves.
// It counts every request by path, and the bytes prefetch requests have in flight: the bytes
// it has been asked for (Content-Length) and not yet written, for requests marked as prefetches.
type mediaOrigin struct {
	url      string
	segBytes int
	// chunkDelay is the pause after each 32 KiB written: it makes requests overlap.
	chunkDelay time.Duration

	mu          sync.Mutex
	count       map[string]int
	inflight    int64 // prefetch bytes asked for and not yet written
	maxInflight int64
	prefetches  int
	liveLast    int // the live stream's newest segment
}

const vodSegments = 20

func newMediaOrigin(t testing.TB, segBytes int, chunkDelay time.Duration) *mediaOrigin {
	mo := &mediaOrigin{segBytes: segBytes, chunkDelay: chunkDelay, count: map[string]int{}, liveLast: 5}
	ts := httptest.NewServer(http.HandlerFunc(mo.serve))
	t.Cleanup(ts.Close)
	mo.url = ts.URL
	return mo
}

func (mo *mediaOrigin) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	mo.mu.Lock()
	mo.count[p]++
	live := mo.liveLast
	mo.mu.Unlock()
	switch p {
	case "/vod/h/index.m3u8", "/vod/g/index.m3u8":
		var b strings.Builder
		b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n")
		for i := range vodSegments {
			fmt.Fprintf(&b, "#EXTINF:4.000,\nseg-%d.ts\n", i)
		}
		b.WriteString("#EXT-X-ENDLIST\n")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		if p == "/vod/g/index.m3u8" {
			// The gzipped playlist, to a viewer who takes it (as many origins send playlists).
			w.Header().Set("Vary", "Accept-Encoding")
			if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				_, _ = zw.Write([]byte(b.String()))
				_ = zw.Close()
				return
			}
		}
		_, _ = w.Write([]byte(b.String()))
		return
	case "/vod/d/manifest.mpd":
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "application/dash+xml")
		_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT%dS" minBufferTime="PT4S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
 <Period id="0">
  <AdaptationSet mimeType="video/mp4" segmentAlignment="true">
   <SegmentTemplate timescale="90000" duration="360000" startNumber="1" media="$RepresentationID$/seg-$Number%%03d$.m4s" initialization="$RepresentationID$/init.mp4"/>
   <Representation id="v1" bandwidth="%d" codecs="avc1.64001f" width="1280" height="720"/>
   <Representation id="v2" bandwidth="%d" codecs="avc1.640028" width="1920" height="1080"/>
  </AdaptationSet>
 </Period>
</MPD>`, vodSegments*4, mo.segBytes*8/4, mo.segBytes*16/4)
		return
	case "/live/l/index.m3u8":
		var b strings.Builder
		first := max(0, live-5)
		fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:%d\n", first)
		for i := first; i <= live; i++ {
			fmt.Fprintf(&b, "#EXTINF:2.000,\n%d.ts\n", i)
		}
		w.Header().Set("Cache-Control", "no-cache") // stored, and asked for again on each poll
		_, _ = w.Write([]byte(b.String()))
		return
	case "/live/d/manifest.mpd":
		// The same window as a dynamic MPD: a SegmentTimeline of 2 s segments, $Number$ URIs.
		first := max(0, live-5)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" minimumUpdatePeriod="PT2S" minBufferTime="PT2S">
 <Period id="live" start="PT0S">
  <AdaptationSet mimeType="video/mp4">
   <SegmentTemplate timescale="1000" startNumber="%d" media="$RepresentationID$/$Number$.m4s" initialization="$RepresentationID$/init.mp4">
    <SegmentTimeline><S t="%d" d="2000" r="%d"/></SegmentTimeline>
   </SegmentTemplate>
   <Representation id="lo" bandwidth="%d"/>
   <Representation id="hi" bandwidth="%d"/>
  </AdaptationSet>
 </Period>
</MPD>`, first, first*2000, live-first, mo.segBytes*4, mo.segBytes*8)
		return
	}
	if kindOf(p) != kindSegment {
		http.NotFound(w, r)
		return
	}
	body := segmentBody(p, mo.segBytes)
	pre := r.Header.Get(prefetchHeader) != ""
	if pre {
		mo.mu.Lock()
		mo.prefetches++
		mo.inflight += int64(len(body))
		mo.maxInflight = max(mo.maxInflight, mo.inflight)
		mo.mu.Unlock()
	}
	w.Header().Set("Cache-Control", "max-age=86400")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	for off := 0; off < len(body); off += 32 << 10 {
		end := min(off+32<<10, len(body))
		_, err := w.Write(body[off:end])
		if pre {
			mo.mu.Lock()
			mo.inflight -= int64(end - off)
			mo.mu.Unlock()
		}
		if err != nil {
			if pre {
				mo.mu.Lock()
				mo.inflight -= int64(len(body) - end)
				mo.mu.Unlock()
			}
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if mo.chunkDelay > 0 {
			time.Sleep(mo.chunkDelay) //nolint:forbidigo // a slow origin: the pause makes prefetches overlap, nothing waits on it
		}
	}
}

// segmentBody is a segment's bytes, different for every path.
func segmentBody(p string, n int) []byte {
	var seed byte
	for i := range len(p) {
		seed = seed*31 + p[i]
	}
	b := randomBytes(n, seed)
	copy(b, p)
	return b
}

func (mo *mediaOrigin) fetches(p string) int {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	return mo.count[p]
}

func (mo *mediaOrigin) httpOrigin(t testing.TB) *origin.HTTP {
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: mo.url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// playerPace is the time a test player takes to play a segment before it asks for the next one
// (a player with a full buffer asks for a segment as one plays out; here 4 s of video play in
// 150 ms).
const playerPace = 150 * time.Millisecond

// play is one player on edge h: it asks for the manifest, then for each of segs in order, one
// per playerPace, checking every body. It returns the Cache-Status of each segment.
func play(t *testing.T, h *harness, manifest string, segs []string) []string {
	t.Helper()
	if resp, _ := h.get(manifest); resp.StatusCode != 200 {
		t.Errorf("%s %s: %d", h.cfg.Name, manifest, resp.StatusCode)
		return nil
	}
	return playSegments(t, h, segs)
}

// playSegments is play without the manifest.
func playSegments(t *testing.T, h *harness, segs []string) []string {
	t.Helper()
	statuses := make([]string, 0, len(segs))
	tick := time.NewTicker(playerPace)
	defer tick.Stop()
	for _, s := range segs {
		<-tick.C
		resp, body := h.get(s)
		if _, path, _ := signedurl.SplitPath(s); resp.StatusCode != 200 || string(body) != string(segmentBody(path, len(body))) || len(body) == 0 {
			t.Errorf("%s %s: %d, %d bytes", h.cfg.Name, s, resp.StatusCode, len(body))
		}
		statuses = append(statuses, resp.Header.Get("Cache-Status"))
	}
	return statuses
}

// hitShare is the share of statuses that are hits.
func hitShare(statuses []string) (hits int, share float64) {
	for _, s := range statuses {
		if strings.HasPrefix(s, "duet; hit") {
			hits++
		}
	}
	return hits, float64(hits) / float64(max(1, len(statuses)))
}

func hlsSegments(n int) []string {
	s := make([]string, n)
	for i := range n {
		s[i] = "/vod/h/seg-" + strconv.Itoa(i) + ".ts"
	}
	return s
}

func withPrefetch(c *Config) {
	c.Prefetch.Enabled = true
}

// TestPrefetchColdVOD is issue 15's acceptance 3: a single viewer of a cold VOD stream, playing
// it in order, gets at least 90 % hits after its first two segments, with HLS and with a DASH
// SegmentTemplate; the origin is asked for each segment once, and for no segment of the DASH
// representation nobody plays.
func TestPrefetchColdVOD(t *testing.T) {
	mo := newMediaOrigin(t, 64<<10, 0)
	h := startEdge(t, mo.httpOrigin(t), withPrefetch)

	hls := play(t, h, "/vod/h/index.m3u8", hlsSegments(vodSegments))
	hits, share := hitShare(hls[2:])
	t.Logf("HLS: %d of %d segments after the first two were hits (%.0f %%); first two: %q", hits, len(hls)-2, 100*share, hls[:2])
	if share < 0.9 {
		t.Errorf("HLS: %.0f %% hits after the first two segments, want at least 90 %%: %q", 100*share, hls)
	}

	dash := []string{"/vod/d/v1/init.mp4"}
	for i := 1; i <= vodSegments; i++ {
		dash = append(dash, fmt.Sprintf("/vod/d/v1/seg-%03d.m4s", i))
	}
	st := play(t, h, "/vod/d/manifest.mpd", dash)
	hits, share = hitShare(st[3:]) // the init segment, then the first two media segments
	t.Logf("DASH: %d of %d segments after the first two were hits (%.0f %%)", hits, len(st)-3, 100*share)
	if share < 0.9 {
		t.Errorf("DASH: %.0f %% hits after the first two segments, want at least 90 %%: %q", 100*share, st)
	}

	for _, s := range append(hlsSegments(vodSegments), dash...) {
		if n := mo.fetches(s); n != 1 {
			t.Errorf("%s fetched %d times from the origin, want once", s, n)
		}
	}
	for p := range mo.count {
		if strings.HasPrefix(p, "/vod/d/v2/") {
			t.Errorf("%s of the representation nobody plays was prefetched", p)
		}
	}
	used := testutil.ToFloat64(h.srv.pf.used)
	started := testutil.ToFloat64(h.srv.pf.started)
	t.Logf("prefetches started %v, used %v, bytes %v", started, used, testutil.ToFloat64(h.srv.pf.fetched))
	if used < 0.9*started {
		t.Errorf("%v of %v prefetched segments were used: prefetch fetched what nobody asked for", used, started)
	}
}

// TestPrefetchSignedURL: with the signed-URL token in the path, the segments' relative URIs
// carry it, and the prefetched entries are the ones the viewer's requests (token taken off)
// find.
func TestPrefetchSignedURL(t *testing.T) {
	mo := newMediaOrigin(t, 16<<10, 0)
	h := startEdge(t, mo.httpOrigin(t), func(c *Config) {
		withPrefetch(c)
		protect([]signedurl.Key{testKeyOld}, "/vod/")(c)
	})
	tok := mint(t, testKeyOld, "/vod/h/", time.Now().Add(time.Hour), netip.Addr{})
	segs := hlsSegments(8)
	for i := range segs {
		segs[i] = "/_t/" + tok + segs[i]
	}
	st := play(t, h, "/_t/"+tok+"/vod/h/index.m3u8", segs)
	if hits, share := hitShare(st[2:]); share < 0.9 {
		t.Errorf("signed: %d hits after the first two segments: %q", hits, st)
	}
	for _, s := range hlsSegments(8) {
		if n := mo.fetches(s); n != 1 {
			t.Errorf("%s fetched %d times from the origin, want once", s, n)
		}
	}
}

// TestPrefetchGzipPlaylist: a playlist the origin sent gzipped (Vary: Accept-Encoding) is read.
func TestPrefetchGzipPlaylist(t *testing.T) {
	mo := newMediaOrigin(t, 16<<10, 0)
	h := startEdge(t, mo.httpOrigin(t), withPrefetch)
	if resp, _ := h.get("/vod/g/index.m3u8", "Accept-Encoding", "gzip"); resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzipped playlist: %d %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	segs := make([]string, 8)
	for i := range segs {
		segs[i] = "/vod/g/seg-" + strconv.Itoa(i) + ".ts"
	}
	st := playSegments(t, h, segs)
	if hits, share := hitShare(st[2:]); share < 0.9 {
		t.Errorf("gzipped playlist: %d hits after the first two segments: %q", hits, st)
	}
}

// TestPrefetchByteBound: with segments of 256 KiB that the origin sends slowly and a bound of
// 600 KiB, the prefetch bytes the origin has been asked for and not yet sent never exceed the
// bound, while prefetch still does its work.
func TestPrefetchByteBound(t *testing.T) {
	const seg, bound = 256 << 10, 600 << 10
	run := func(limit int64) (maxInflight int64, prefetches int, h *harness) {
		mo := newMediaOrigin(t, seg, 3*time.Millisecond)
		h = startEdge(t, mo.httpOrigin(t), func(c *Config) {
			c.Prefetch = PrefetchConfig{Enabled: true, Segments: 4, MaxBytesInFlight: ByteSize(limit), MaxConcurrent: 16}
		})
		play(t, h, "/vod/h/index.m3u8", hlsSegments(vodSegments))
		mo.mu.Lock()
		defer mo.mu.Unlock()
		return mo.maxInflight, mo.prefetches, h
	}
	maxIn, n, h := run(bound)
	if maxIn > bound {
		t.Errorf("prefetch had %d bytes in flight at the origin, over its bound of %d", maxIn, bound)
	}
	if n < vodSegments/2 {
		t.Fatalf("only %d prefetches reached the origin: the bound stopped prefetch altogether", n)
	}
	dropped := testutil.ToFloat64(h.srv.pf.dropped.WithLabelValues(dropBytes))
	t.Logf("bound %d KiB: %d prefetches, at most %d KiB in flight at the origin, %v dropped for the bound",
		bound>>10, n, maxIn>>10, dropped)
	if dropped == 0 {
		t.Error("no prefetch was dropped for the bound: the test did not exercise it")
	}
	if got := h.srv.pf.bytes.Load(); got != 0 {
		t.Errorf("%d bytes still reserved after every prefetch ended", got)
	}
	maxIn, n, _ = run(64 << 20)
	t.Logf("bound 64 MiB: %d prefetches, at most %d KiB in flight at the origin", n, maxIn>>10)
}

// TestPrefetchLive: a live HLS playlist whose window slides gets its new segments prefetched
// as they appear, so that a player a few segments behind the live edge gets hits.
func TestPrefetchLive(t *testing.T) {
	mo := newMediaOrigin(t, 32<<10, 0)
	h := startEdge(t, mo.httpOrigin(t), withPrefetch)
	const cycles = 16
	var statuses []string
	pos := 3 // the player starts three segments behind the newest (5)
	tick := time.NewTicker(playerPace)
	defer tick.Stop()
	for range cycles {
		if resp, body := h.get("/live/l/index.m3u8"); resp.StatusCode != 200 ||
			!strings.Contains(string(body), strconv.Itoa(mo.liveNewest())+".ts") {
			t.Fatalf("live playlist: %d %q", resp.StatusCode, body)
		}
		<-tick.C
		p := "/live/l/" + strconv.Itoa(pos) + ".ts"
		resp, body := h.get(p)
		if resp.StatusCode != 200 || string(body) != string(segmentBody(p, len(body))) {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		statuses = append(statuses, resp.Header.Get("Cache-Status"))
		pos++
		mo.publish() // one segment more, one fewer at the window's start
	}
	hits, share := hitShare(statuses[2:])
	t.Logf("live: %d of %d segments after the first two were hits (%.0f %%)", hits, len(statuses)-2, 100*share)
	if share < 0.9 {
		t.Errorf("live: %.0f %% hits after the first two segments, want at least 90 %%: %q", 100*share, statuses)
	}
	for i := 3; i < pos; i++ {
		if n := mo.fetches("/live/l/" + strconv.Itoa(i) + ".ts"); n != 1 {
			t.Errorf("live segment %d fetched %d times from the origin, want once", i, n)
		}
	}
}

// TestPrefetchLiveDASH: the same with a dynamic MPD (SegmentTimeline): once a viewer plays a
// representation, each new MPD prefetches its newest segments; the representation nobody
// plays is not prefetched.
func TestPrefetchLiveDASH(t *testing.T) {
	mo := newMediaOrigin(t, 32<<10, 0)
	h := startEdge(t, mo.httpOrigin(t), withPrefetch)
	const cycles = 16
	var statuses []string
	pos := 3
	tick := time.NewTicker(playerPace)
	defer tick.Stop()
	for c := range cycles {
		if resp, _ := h.get("/live/d/manifest.mpd"); resp.StatusCode != 200 {
			t.Fatalf("live MPD: %d", resp.StatusCode)
		}
		if c == 0 {
			if resp, _ := h.get("/live/d/lo/init.mp4"); resp.StatusCode != 200 {
				t.Fatalf("init: %d", resp.StatusCode)
			}
		}
		<-tick.C
		p := "/live/d/lo/" + strconv.Itoa(pos) + ".m4s"
		resp, body := h.get(p)
		if resp.StatusCode != 200 || string(body) != string(segmentBody(p, len(body))) {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		statuses = append(statuses, resp.Header.Get("Cache-Status"))
		pos++
		mo.publish()
	}
	hits, share := hitShare(statuses[2:])
	t.Logf("live DASH: %d of %d segments after the first two were hits (%.0f %%)", hits, len(statuses)-2, 100*share)
	if share < 0.9 {
		t.Errorf("live DASH: %.0f %% hits after the first two segments, want at least 90 %%: %q", 100*share, statuses)
	}
	mo.mu.Lock()
	defer mo.mu.Unlock()
	for p, n := range mo.count {
		if strings.HasPrefix(p, "/live/d/hi/") {
			t.Errorf("%s of the representation nobody plays was fetched", p)
		}
		if strings.HasPrefix(p, "/live/d/lo/") && n != 1 {
			t.Errorf("%s fetched %d times from the origin, want once", p, n)
		}
	}
}

func (mo *mediaOrigin) publish() {
	mo.mu.Lock()
	mo.liveLast++
	mo.mu.Unlock()
}

func (mo *mediaOrigin) liveNewest() int {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	return mo.liveLast
}

// TestPrefetchPeerFillRegion: four edges of a region with peer fill, a viewer on each playing
// the same VOD stream at once: every viewer gets hits after its first two segments, and the
// origin is asked for each segment once for the whole region.
func TestPrefetchPeerFillRegion(t *testing.T) {
	mo := newMediaOrigin(t, 64<<10, 0)
	reg := startRegion(t, 4, mo.httpOrigin(t), withPrefetch)
	var wg sync.WaitGroup
	results := make([][]string, len(reg.edges))
	for i, h := range reg.edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = play(t, h, "/vod/h/index.m3u8", hlsSegments(vodSegments))
		}()
	}
	wg.Wait()
	for i, st := range results {
		if len(st) < 3 {
			t.Fatalf("%s: no segments played", reg.names[i])
		}
		hits, share := hitShare(st[2:])
		t.Logf("%s: %d of %d segments after the first two were hits (%.0f %%)", reg.names[i], hits, len(st)-2, 100*share)
		if share < 0.9 {
			t.Errorf("%s: %.0f %% hits after the first two segments, want at least 90 %%: %q", reg.names[i], 100*share, st)
		}
	}
	total := 0
	for _, s := range hlsSegments(vodSegments) {
		n := mo.fetches(s)
		total += n
		if n != 1 {
			t.Errorf("%s fetched %d times from the origin by the region, want once", s, n)
		}
	}
	t.Logf("origin: %d segment fetches for %d segments, 4 edges", total, vodSegments)
}

// TestPrefetchOriginBudget: with the origin budget spent by the viewer's own requests, prefetches
// are dropped rather than queued behind (or ahead of) viewers, and the viewer is served.
func TestPrefetchOriginBudget(t *testing.T) {
	mo := newMediaOrigin(t, 16<<10, 0)
	h := startEdge(t, mo.httpOrigin(t), func(c *Config) {
		withPrefetch(c)
		c.Origin.MaxRequestsPerSec, c.Origin.MaxQueue, c.Origin.MaxWait = 1, 10, 20*time.Second // viewers wait their turn, however loaded the machine; prefetches never do
	})
	for _, p := range append([]string{"/vod/h/index.m3u8"}, hlsSegments(3)...) {
		if resp, _ := h.get(p); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, resp.Header.Get("Cache-Status"))
		}
	}
	dropped := testutil.ToFloat64(h.srv.pf.dropped.WithLabelValues(dropBudget))
	t.Logf("budget 1 request/s: %v prefetches dropped for the budget, %d reached the origin", dropped, mo.prefetchCount())
	if dropped == 0 {
		t.Fatal("no prefetch was dropped for the origin budget")
	}
}

func (mo *mediaOrigin) prefetchCount() int {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	return mo.prefetches
}

// TestPrefetchPlaylistReadOnce: a playlist version that lists nothing to prefetch (a cached
// 404, a multivariant playlist) is read once, not on every request for it.
func TestPrefetchPlaylistReadOnce(t *testing.T) {
	mo := newMediaOrigin(t, 16<<10, 0)
	h := startEdge(t, mo.httpOrigin(t), withPrefetch)
	if resp, _ := h.get("/vod/none/index.m3u8"); resp.StatusCode != 404 {
		t.Fatalf("missing playlist: %d", resp.StatusCode)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		h.srv.pf.mu.Lock()
		defer h.srv.pf.mu.Unlock()
		_, ok := h.srv.pf.parsed["/vod/none/index.m3u8"]
		return ok
	}, "the cached 404's version was never recorded: it would be read again on every request")
}
