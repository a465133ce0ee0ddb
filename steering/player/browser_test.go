package player_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetcdn/duet/internal/sample"
	"github.com/duetcdn/duet/steering/player"
)

// browser finds Chromium, or skips the test loudly. Under CI=true a missing browser fails the test
// instead: `make test` installs Debian's chromium there (make browser).
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH (make browser, or apt-get install -y chromium): the player is not played in a browser"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// mediaServer serves the sample stream under /vod/sample/ the way an edge does for the page: on
// another origin, with Access-Control-Allow-Origin. It counts the requests per path.
type mediaServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int // guarded by mu
	// hang, when set before the first request, makes the server hold a request without an
	// answer until the client goes away (or 30 s pass) when it returns true.
	hang func(path string, n int) bool
}

func newMediaServer(t *testing.T) *mediaServer {
	t.Helper()
	m := &mediaServer{hits: map[string]int{}}
	files := map[string]sample.File{}
	for _, f := range sample.Stream() {
		files["/vod/sample/"+f.Path] = f
	}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		f, ok := files[r.URL.Path]
		m.mu.Lock()
		m.hits[r.URL.Path]++
		n := m.hits[r.URL.Path]
		m.mu.Unlock()
		if m.hang != nil && m.hang(r.URL.Path, n) {
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", f.ContentType)
		_, _ = w.Write(f.Body)
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *mediaServer) fetched(suffix string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for p, c := range m.hits {
		if strings.HasSuffix(p, suffix) {
			n += c
		}
	}
	return n
}

// pageServer is steering as far as the page needs it: the player, and /r/ redirecting to the
// media server as steering redirects to an edge.
func pageServer(t *testing.T, edge string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	p := player.New(player.Config{})
	mux.Handle("GET /play", p)
	mux.Handle("GET /play/", p)
	mux.HandleFunc("GET /r/{path...}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, edge+"/"+r.PathValue("path"), http.StatusFound)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// playerState is what the page exposes in window.duetPlayer.
type playerState struct {
	CurrentTime    float64 `json:"currentTime"`
	Playing        bool    `json:"playing"`
	LastSegmentURL string  `json:"lastSegmentURL"`
	Host           string  `json:"host"`
	Pathway        string  `json:"pathway"`
	Level          int     `json:"level"`
	Segments       int     `json:"segments"`
	Played         float64 `json:"played"`
	Reloads        int     `json:"reloads"`
	StuckReloads   int     `json:"stuckReloads"`
	StartupMS      int     `json:"startupMs"`
	MaxStallMS     int     `json:"maxStallMs"`
	Failed         bool    `json:"failed"`
	FramesDecoded  int     `json:"framesDecoded"`
	Buffered       float64 `json:"buffered"`
	HLSVersion     string  `json:"hlsVersion"`
	Errors         []struct {
		Type    string `json:"type"`
		Details string `json:"details"`
		Fatal   bool   `json:"fatal"`
		URL     string `json:"url"`
	} `json:"errors"`
}

const readState = `window.duetPlayer ? JSON.parse(JSON.stringify(window.duetPlayer)) : null`

// waitFor polls the page's state until ok holds, failing with the last state at the deadline.
func waitFor(ctx context.Context, t *testing.T, what string, ok func(playerState) bool) playerState {
	t.Helper()
	var st playerState
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := chromedp.Run(ctx, chromedp.Evaluate[*playerState](readState))
		if err != nil {
			t.Fatalf("waiting for %s: read window.duetPlayer: %v (last state %+v)", what, err, st)
		}
		if p != nil {
			st = *p
			if ok(st) {
				return st
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last state %+v", what, ctx.Err(), st)
		case <-tick.C:
		}
	}
}

// TestPlayerPlaysSample plays the sample stream in headless Chromium through the page, as a
// viewer would through steering: the page on one origin, /r/ redirecting to a media server on
// another that sends CORS headers. It proves the media really decodes (frames counted by the
// browser), the play head advances past 3 s, segments come from the redirect's target, and that
// a stream that does not exist shows up as a fatal error instead of a silent black box.
//
// DUET_PLAYER_SCREENSHOT=/tmp/player.png also saves a screenshot of the page playing.
func TestPlayerPlaysSample(t *testing.T) {
	exe := browser(t)
	media := newMediaServer(t)
	page := pageServer(t, media.URL)

	bctx := openBrowser(t, exe, 50*time.Second)
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL+"/play")); err != nil {
		t.Fatalf("open %s/play: %v", page.URL, err)
	}
	st := waitFor(bctx, t, "3 s of playback", func(s playerState) bool {
		return s.CurrentTime > 3 && s.FramesDecoded > 0 || hasFatal(s)
	})
	if hasFatal(st) {
		t.Fatalf("playback failed: %+v", st.Errors)
	}
	quality, err := chromedp.Run(bctx, chromedp.Evaluate[struct{ Total, Dropped int }](
		`(function(){var q=document.getElementById('video').getVideoPlaybackQuality();return {total:q.totalVideoFrames,dropped:q.droppedVideoFrames}})()`))
	if err != nil {
		t.Fatalf("read the video's playback quality: %v", err)
	}
	t.Logf("played %.1f s, %d frames decoded (%d dropped), %d segments, level %d, last %s, hls.js %s",
		st.CurrentTime, quality.Total, quality.Dropped, st.Segments, st.Level, st.LastSegmentURL, st.HLSVersion)
	mediaURL, _ := url.Parse(media.URL)
	if st.Host != mediaURL.Host || !strings.HasPrefix(st.LastSegmentURL, media.URL+"/vod/sample/") {
		t.Errorf("last segment %s (host %q): want it from the redirect's target %s", st.LastSegmentURL, st.Host, media.URL)
	}
	if st.Pathway != "." {
		t.Errorf("pathway %q, want \".\" (the stream has no content steering)", st.Pathway)
	}
	if !st.Playing || quality.Total == 0 {
		t.Errorf("playing=%v with %d frames decoded", st.Playing, quality.Total)
	}
	// Non-fatal errors are hls.js retrying or noting an overlap when it switches level, which a
	// viewer does not see; list them for whoever reads the log.
	for _, e := range st.Errors {
		t.Logf("player reported (not fatal): %s %s %s", e.Type, e.Details, e.URL)
	}
	if a, v := media.fetched("audio/seg_001.m4s"), media.fetched("seg_002.m4s"); a == 0 || v == 0 {
		t.Errorf("media server saw %d audio and %d video requests for the first segments", a, v)
	}
	if out := os.Getenv("DUET_PLAYER_SCREENSHOT"); out != "" {
		screenshot(bctx, t, out)
	}

	missing := page.URL + "/play?src=" + url.QueryEscape("/r/vod/missing/master.m3u8")
	if err := chromedp.Do(bctx, chromedp.Navigate(missing)); err != nil {
		t.Fatalf("open %s: %v", missing, err)
	}
	st = waitFor(bctx, t, "a fatal error for a missing stream", hasFatal)
	if e := st.Errors[0]; !e.Fatal || !strings.Contains(e.Details, "manifestLoadError") {
		t.Errorf("missing stream reported as %+v, want a fatal manifestLoadError", e)
	}
	if st.CurrentTime != 0 || st.Segments != 0 {
		t.Errorf("missing stream: time %.1f, %d segments", st.CurrentTime, st.Segments)
	}
}

// TestPlayerReloadsWhenNothingPlays: a segment request that never answers leaves hls.js waiting
// (its own timeout is 10 s and more); with ?stall=2 the page reloads the stream after 2 s without
// progress, says so on the page, and plays on past the segment.
func TestPlayerReloadsWhenNothingPlays(t *testing.T) {
	exe := browser(t)
	media := newMediaServer(t)
	media.hang = func(p string, n int) bool { return strings.HasSuffix(p, "seg_003.m4s") && n == 1 }
	page := pageServer(t, media.URL)
	bctx := openBrowser(t, exe, 60*time.Second)
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL+"/play?stall=2")); err != nil {
		t.Fatalf("open the player: %v", err)
	}
	st := waitFor(bctx, t, "playback past the segment that hung", func(s playerState) bool {
		return s.Played > 8 && s.FramesDecoded > 0 || s.Failed
	})
	if st.Failed || st.StuckReloads < 1 {
		t.Fatalf("want a reload for want of progress, and playback: %+v", st)
	}
	notice, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('notice').hidden ? '' : document.getElementById('notice').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(notice, "because nothing played for 2 s") {
		t.Fatalf("the page does not say why it reloaded: notice %q", notice)
	}
	t.Logf("%s; started in %d ms, longest stall %d ms", notice, st.StartupMS, st.MaxStallMS)
}

// TestPlayCheck is playcheck.sh's engine: it opens DUET_PLAYCHECK_URL (a player page anywhere,
// such as a running `duet dev`'s steering), waits until the video has played
// DUET_PLAYCHECK_SECONDS in all (default 4; loops count, so more than the stream's length is
// fine) and decoded frames, and saves a screenshot to DUET_PLAYCHECK_OUT. It fails when the page
// gives up (a fatal error it could not recover from by reloading) or playback does not get there;
// errors the page recovered from are logged.
func TestPlayCheck(t *testing.T) {
	target := os.Getenv("DUET_PLAYCHECK_URL")
	if target == "" {
		t.Skip("set DUET_PLAYCHECK_URL (see playcheck.sh)")
	}
	secs, err := strconv.ParseFloat(cmp.Or(os.Getenv("DUET_PLAYCHECK_SECONDS"), "4"), 64)
	if err != nil || secs < 0 || secs > 600 {
		t.Fatalf("DUET_PLAYCHECK_SECONDS=%q: want seconds between 0 and 600", os.Getenv("DUET_PLAYCHECK_SECONDS"))
	}
	bctx := openBrowser(t, browser(t), time.Duration(secs*float64(time.Second))+40*time.Second)
	if err := chromedp.Do(bctx, chromedp.Navigate(target)); err != nil {
		t.Fatalf("open %s: %v", target, err)
	}
	st := waitFor(bctx, t, fmt.Sprintf("%g s of playback", secs), func(s playerState) bool {
		return s.Played >= secs && s.FramesDecoded > 0 || s.Failed
	})
	if out := os.Getenv("DUET_PLAYCHECK_OUT"); out != "" {
		screenshot(bctx, t, out)
	}
	t.Logf("played %.1f s (now at %.1f s): %d frames, %d segments, level %d, pathway %q, edge %s, last %s, %d errors",
		st.Played, st.CurrentTime, st.FramesDecoded, st.Segments, st.Level, st.Pathway, st.Host, st.LastSegmentURL, len(st.Errors))
	for _, e := range st.Errors {
		t.Logf("player error: fatal=%v %s %s %s", e.Fatal, e.Type, e.Details, e.URL)
	}
	if st.Failed {
		t.Fatal("the page gave up: playback failed")
	}
	if st.Reloads > 0 {
		t.Logf("the page reloaded the stream %d times after fatal errors", st.Reloads)
	}
}

// openBrowser starts headless Chromium with the flags a test needs (no sandbox: root in
// containers and CI; autoplay without a gesture) and returns a tab's context, closed after the
// test or after timeout.
func openBrowser(t *testing.T, exe string, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	return bctx
}

func screenshot(ctx context.Context, t *testing.T, out string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	t.Logf("wrote %s", out)
}

func hasFatal(s playerState) bool {
	for _, e := range s.Errors {
		if e.Fatal {
			return true
		}
	}
	return false
}
