package main

import (
	"context"
	"encoding/json"
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
	post(t, strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")+"/v1/dev/edges/"+first+"/stop", d.token)
	played := st.Played
	waitPlayer("playback after its edge was killed", 60*time.Second, func(s devPlayer) bool {
		return s.Played >= played+6 && s.Host != "" && edgeByHost[s.Host] != first
	})
	t.Logf("kept playing from %s (pathway %s) after %s was killed", edgeByHost[st.Host], st.Pathway, first)
}
