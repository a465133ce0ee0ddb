package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdpfetch "github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/route"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/steering"
)

// failoverPlayer is the part of window.duetPlayer (steering/player/play.js) this test reads.
type failoverPlayer struct {
	Played        float64 `json:"played"`
	FramesDecoded int     `json:"framesDecoded"`
	Host          string  `json:"host"`
	Pathway       string  `json:"pathway"`
	Segments      int     `json:"segments"`
	StartupMS     int     `json:"startupMs"`
	MaxStallMS    int     `json:"maxStallMs"`
	SteeringLoads int     `json:"steeringLoads"`
	SteeringURL   string  `json:"steeringURL"`
	Reloads       int     `json:"reloads"`
	Failed        bool    `json:"failed"`
}

// delayer holds every steering request and media segment the page makes for a random 0-300 ms
// (Chrome DevTools' Fetch domain: real hls.js in real Chromium, the answers just late), and
// records the steering requests.
type delayer struct {
	mu    sync.Mutex
	rnd   *rand.Rand
	steer []steerRequest // guarded by mu
}

type steerRequest struct {
	at  time.Time
	url string
}

func (d *delayer) listen(ctx context.Context) error {
	return chromedp.Listen(ctx, func(ev any) {
		e, ok := ev.(*cdpfetch.EventRequestPaused)
		if !ok {
			return
		}
		d.mu.Lock()
		delay := time.Duration(d.rnd.IntN(301)) * time.Millisecond
		if strings.Contains(e.Request.URL, "/v1/steer/") {
			d.steer = append(d.steer, steerRequest{at: time.Now(), url: e.Request.URL})
		}
		d.mu.Unlock()
		go func() {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			_, _ = chromedp.Call(ctx, cdpfetch.ContinueRequest, cdpfetch.ContinueRequestParams{RequestID: e.RequestID})
		}()
	})
}

func (r steerRequest) String() string { return r.at.Format("15:04:05.000") + " " + r.url }

// steeringSince lists the steering requests made after t.
func (d *delayer) steeringSince(t time.Time) []steerRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []steerRequest
	for _, r := range d.steer {
		if r.at.After(t) {
			out = append(out, r)
		}
	}
	return out
}

// TestDevPlayerStartsAndFailsOverLikeAViewer is issue 14's viewer, played in headless Chromium
// with the real hls.js through `duet dev`, with 0-300 ms of delay on every steering answer and
// segment:
//
//  1. 50 starts, one after another in one tab: each plays within 3 s (a pathway switch while the
//     first segments load used to stall hls.js for good);
//  2. the serving edge is killed: the next segments come from the other edge of the same region
//     within 3 s, with no stall over 1 s; restarted, the edge gets new viewers again;
//  3. the serving region is killed (its steering too): playback goes on from the other region
//     with no stall over 1 s, and the player's next steering reload succeeds.
func TestDevPlayerStartsAndFailsOverLikeAViewer(t *testing.T) {
	exe := chromiumPath(t)
	began := time.Now()
	d := startDev(t, t.TempDir(), testenv.MinIOBin(t), append(os.Environ(), "DUET_TEST_MAIN=1"))
	_, body := d.getCluster(t)
	var cl devcluster.ClusterJSON
	if err := json.Unmarshal(body, &cl); err != nil {
		t.Fatal(err)
	}
	control := strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")
	edgeByHost, regionOf := map[string]string{}, map[string]string{}
	for _, r := range cl.Regions {
		for _, e := range r.Edges {
			u, _ := url.Parse(e.URL)
			edgeByHost[u.Host] = e.Name
			regionOf[e.Name] = r.Name
		}
	}
	home, other := cl.Regions[0], cl.Regions[1] // the page comes from home's steering, which routes to home
	bctx := openBrowser(t, exe, 8*time.Minute)
	seed := uint64(time.Now().UnixNano())
	t.Logf("delay seed %d", seed)
	dl := &delayer{rnd: rand.New(rand.NewPCG(seed, 14))}
	if err := dl.listen(bctx); err != nil {
		t.Fatalf("listen to the tab: %v", err)
	}
	// No browser cache (a cached segment would hide the edge), and the delays on.
	noCache(t, bctx)
	if _, err := chromedp.Call(bctx, cdpfetch.Enable, cdpfetch.EnableParams{Patterns: []*cdpfetch.RequestPattern{
		{URLPattern: "*/v1/steer/*", RequestStage: cdpfetch.RequestStageRequest},
		{URLPattern: "*.m4s*", RequestStage: cdpfetch.RequestStageRequest},
	}}); err != nil {
		t.Fatalf("intercept the tab's requests: %v", err)
	}
	read := func(c context.Context) failoverPlayer {
		t.Helper()
		p, err := chromedp.Run(c, chromedp.Evaluate[*failoverPlayer](`window.duetPlayer ? JSON.parse(JSON.stringify(window.duetPlayer)) : null`))
		if err != nil {
			t.Fatalf("read window.duetPlayer: %v", err)
		}
		if p == nil {
			return failoverPlayer{StartupMS: -1}
		}
		return *p
	}
	// wait polls the tab every 100 ms until ok, failing after within.
	wait := func(c context.Context, what string, within time.Duration, ok func(failoverPlayer) bool) failoverPlayer {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			st := read(c)
			if st.Failed {
				t.Fatalf("%s: the player gave up: %+v", what, st)
			}
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s: %+v", what, within, st)
			}
			time.Sleep(100 * time.Millisecond) //nolint:forbidigo // the poll interval of a deadline loop
		}
	}
	page := home.Steering + "/play"

	// 1. 50 starts.
	const starts = 50
	startsBegan := time.Now()
	var slowest int
	for i := range starts {
		if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
			t.Fatalf("start %d: open the player: %v", i+1, err)
		}
		st := wait(bctx, fmt.Sprintf("start %d", i+1), 15*time.Second, func(s failoverPlayer) bool { return s.StartupMS >= 0 && s.FramesDecoded > 0 })
		if st.StartupMS > 3000 {
			t.Errorf("start %d: played after %d ms, want within 3 s: %+v", i+1, st.StartupMS, st)
		}
		slowest = max(slowest, st.StartupMS)
	}
	t.Logf("%d starts played, the slowest after %d ms; %s for the starts", starts, slowest, time.Since(startsBegan).Round(time.Second))

	// 2. Kill the serving edge.
	st := wait(bctx, "3 s of playback", 20*time.Second, func(s failoverPlayer) bool { return s.Played >= 3 && s.Host != "" })
	victim := edgeByHost[st.Host]
	if regionOf[victim] != home.Name {
		t.Fatalf("playing from %q (%s), want an edge of %s", victim, st.Host, home.Name)
	}
	stallBefore := st.MaxStallMS
	killed := time.Now()
	post(t, control+"/v1/dev/edges/"+victim+"/stop", d.token)
	st = wait(bctx, "segments from another edge of "+home.Name, 3*time.Second, func(s failoverPlayer) bool {
		return s.Host != "" && edgeByHost[s.Host] != victim
	})
	moved := time.Since(killed)
	if got := edgeByHost[st.Host]; regionOf[got] != home.Name {
		t.Fatalf("after %s died the player moved to %s (%s), want the other edge of %s", victim, got, regionOf[got], home.Name)
	}
	st = wait(bctx, "playback after the edge kill", 20*time.Second, func(s failoverPlayer) bool { return s.Played >= st.Played+6 })
	if st.MaxStallMS > max(stallBefore, 1000) {
		t.Errorf("after the edge kill: a stall of %d ms, want none over 1 s", st.MaxStallMS)
	}
	t.Logf("%s killed: segments from %s after %s (pathway %s); longest stall so far %d ms", victim, edgeByHost[st.Host],
		moved.Round(10*time.Millisecond), st.Pathway, st.MaxStallMS)
	statusShot(t, bctx, home.Steering+"/", "status-edge-kill.png")
	serving := edgeByHost[st.Host]

	// Restart it: new viewers (a new tab) are sent to it again once steering sees it up.
	post(t, control+"/v1/dev/edges/"+victim+"/start", d.token)
	testenv.Eventually(t, 30*time.Second, func() bool {
		var a route.Answer
		_, b := get(t, home.Steering+"/v1/route?path=/vod/sample/master.m3u8")
		return json.Unmarshal(b, &a) == nil && len(a.Edges) > 0 && a.Edges[0].Name == victim
	}, "steering does not route to the restarted edge")
	nctx, ncancel := chromedp.NewContext(bctx)
	noCache(t, nctx)
	if err := chromedp.Do(nctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open a new viewer: %v", err)
	}
	nst := wait(nctx, "a new viewer", 15*time.Second, func(s failoverPlayer) bool { return s.Played >= 1 && s.Host != "" })
	if edgeByHost[nst.Host] != victim {
		t.Errorf("a new viewer plays from %s, want the restarted %s", edgeByHost[nst.Host], victim)
	}
	ncancel()

	// 3. Kill the serving region, its steering with it.
	st = read(bctx)
	stallBefore, loadsBefore := st.MaxStallMS, st.SteeringLoads
	killed = time.Now()
	post(t, control+"/v1/dev/regions/"+home.Name+"/stop", d.token)
	st = wait(bctx, "segments from "+other.Name, 10*time.Second, func(s failoverPlayer) bool {
		return s.Host != "" && regionOf[edgeByHost[s.Host]] == other.Name
	})
	t.Logf("%s killed (the player was on %s): segments from %s after %s", home.Name, serving, edgeByHost[st.Host], time.Since(killed).Round(10*time.Millisecond))
	// The player's next steering reload succeeds: the RELOAD-URI it was given before the kill
	// names the other region's steering. hls.js reloads a TTL after its last load (and after a
	// failure retries the same URI, a TTL later, for good); the bound on top covers the injected
	// delays and the poll.
	ttl := steering.DefaultConfig().ManifestTTL
	st = wait(bctx, "a steering reload from "+other.Name+" after the region kill", time.Until(killed.Add(ttl+5*time.Second)), func(s failoverPlayer) bool {
		return s.SteeringLoads > loadsBefore && strings.HasPrefix(s.SteeringURL, other.Steering+"/")
	})
	reqs := dl.steeringSince(killed)
	if len(reqs) == 0 || !strings.HasPrefix(reqs[0].url, other.Steering+"/") {
		t.Errorf("after the region kill: steering requests %v, want the first at %s's steering %s", reqs, other.Name, other.Steering)
	}
	for _, r := range reqs {
		if strings.HasPrefix(r.url, home.Steering+"/") {
			t.Errorf("after the region kill: a steering request at the dead %s's steering %s, %s after the kill", home.Name, r.url, r.at.Sub(killed).Round(10*time.Millisecond))
		}
	}
	t.Logf("after the region kill: steering reloaded from %s after %s (%d loads, %d before)", other.Name, time.Since(killed).Round(10*time.Millisecond), st.SteeringLoads, loadsBefore)
	st = wait(bctx, "playback going on after the region kill", 30*time.Second, func(s failoverPlayer) bool {
		return s.Played >= st.Played+4
	})
	statusShot(t, bctx, other.Steering+"/", "status-region-kill.png")
	if st.MaxStallMS > max(stallBefore, 1000) {
		errs, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify(window.duetPlayer.errors)`))
		t.Errorf("after the region kill: a stall of %d ms, want none over 1 s; the player's errors (at: position in the video) %s", st.MaxStallMS, errs)
	}
	t.Logf("steering reloaded from %s; longest stall %d ms; %d reloads of the stream; test took %s", st.SteeringURL, st.MaxStallMS, st.Reloads,
		time.Since(began).Round(time.Second))
}

// noCache turns the browser cache off in the tab.
func noCache(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("enable the network domain: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		t.Fatalf("disable the cache: %v", err)
	}
}

// statusShot saves a screenshot of the status page at u as dir/name when
// DUET_STATUS_SCREENSHOTS names a directory (the README's pictures of a failover).
func statusShot(t *testing.T, bctx context.Context, u, name string) {
	t.Helper()
	dir := os.Getenv("DUET_STATUS_SCREENSHOTS")
	if dir == "" {
		return
	}
	ctx, cancel := chromedp.NewContext(bctx)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1280, Height: 720, DeviceScaleFactor: 1}); err != nil {
		t.Fatalf("size the status tab: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	time.Sleep(2500 * time.Millisecond) //nolint:forbidigo // the page refreshes every second and asks every steering: let it
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", u, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", filepath.Join(dir, name))
}
