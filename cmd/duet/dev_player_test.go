package main

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/testenv"
)

// devPlayer is what the player page exposes as window.duetPlayer (steering/player/play.js).
type devPlayer struct {
	Played        float64 `json:"played"`
	FramesDecoded int     `json:"framesDecoded"`
	Host          string  `json:"host"`
	Pathway       string  `json:"pathway"`
	Failed        bool    `json:"failed"`
	Buffered      float64 `json:"buffered"`  // seconds buffered ahead of the play head
	SessionID     string  `json:"sessionId"` // the CMCD session id hls.js sends
}

// TestDevPlayerPlaysThroughSteering is the newcomer's first minute: `duet dev`'s player page, in
// Debian's headless chromium, plays the sample through an edge that steering chose; then that edge
// is killed (SIGKILL) and the video keeps playing from another edge.
func TestDevPlayerPlaysThroughSteering(t *testing.T) {
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing: make browser installs it")
		}
		t.Skip("no chromium on PATH (make browser): the player is not played in a browser")
	}
	d := startDev(t, t.TempDir(), testenv.MinIOBin(t), append(os.Environ(), "DUET_TEST_MAIN=1"))
	_, body := d.getCluster(t)
	var cl devcluster.ClusterJSON
	if err := json.Unmarshal(body, &cl); err != nil {
		t.Fatal(err)
	}
	edgeByHost := map[string]string{}
	for _, r := range cl.Regions {
		for _, e := range r.Edges {
			u, _ := url.Parse(e.URL)
			edgeByHost[u.Host] = e.Name
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate(cl.Regions[0].Steering+"/play")); err != nil {
		t.Fatalf("open the player: %v", err)
	}
	var st devPlayer
	waitPlayer := func(what string, within time.Duration, ok func(devPlayer) bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			p, err := chromedp.Run(bctx, chromedp.Evaluate[*devPlayer](`window.duetPlayer ? JSON.parse(JSON.stringify(window.duetPlayer)) : null`))
			if err != nil {
				t.Fatalf("%s: read window.duetPlayer: %v", what, err)
			}
			if p != nil {
				st = *p
			}
			if st.Failed {
				t.Fatalf("%s: the player gave up: %+v", what, st)
			}
			if ok(st) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s: %+v", what, within, st)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitPlayer("first 3 s of video", 60*time.Second, func(s devPlayer) bool { return s.Played >= 3 && s.FramesDecoded > 0 && s.Host != "" })
	first := edgeByHost[st.Host]
	if first == "" {
		t.Fatalf("segments came from %s, which is not an edge of the cluster", st.Host)
	}
	t.Logf("playing from %s (pathway %s)", first, st.Pathway)
	checkStatusPageSession(t, bctx, cl.Regions[0].Steering, st.SessionID)
	post(t, strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")+"/v1/dev/edges/"+first+"/stop", d.token)
	played := st.Played
	waitPlayer("playback after its edge was killed", 60*time.Second, func(s devPlayer) bool {
		return s.Played >= played+6 && s.Host != "" && edgeByHost[s.Host] != first
	})
	t.Logf("kept playing from %s (pathway %s) after %s was killed", edgeByHost[st.Host], st.Pathway, first)
}

// checkStatusPageSession: the player's CMCD session shows on steering's status page with a
// buffer length within 1 s of the one window.duetPlayer reports. The page shows what the edge
// heard at the player's last request, up to a heartbeat and a refresh later, while the player's
// buffer moves on; so the two are read together until they agree, within a deadline.
func checkStatusPageSession(t *testing.T, player context.Context, steeringURL, sid string) {
	t.Helper()
	if sid == "" {
		t.Fatal("window.duetPlayer has no CMCD session id")
	}
	page, cancel := chromedp.NewContext(player)
	defer cancel()
	if err := chromedp.Do(page, chromedp.Navigate(steeringURL+"/")); err != nil {
		t.Fatalf("open the status page: %v", err)
	}
	readRow := `(() => { const r = document.querySelector('tr.session[data-sid="` + sid + `"]'); return r ? Number(r.dataset.bufferMs) : -1; })()`
	deadline := time.Now().Add(60 * time.Second)
	var shown, buffered float64
	for time.Now().Before(deadline) {
		ms, err := chromedp.Run(page, chromedp.Evaluate[float64](readRow))
		if err != nil {
			t.Fatalf("read the status page: %v", err)
		}
		p, err := chromedp.Run(player, chromedp.Evaluate[*devPlayer](`JSON.parse(JSON.stringify(window.duetPlayer))`))
		if err != nil {
			t.Fatalf("read window.duetPlayer: %v", err)
		}
		shown, buffered = ms/1000, p.Buffered
		if ms >= 0 && math.Abs(shown-buffered) <= 1 {
			t.Logf("the status page shows session %s with %.1f s of buffer; the player has %.1f s", sid, shown, buffered)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("session %s: the status page shows %.1f s of buffer (-0.001: not listed), the player has %.1f s", sid, shown, buffered)
}
