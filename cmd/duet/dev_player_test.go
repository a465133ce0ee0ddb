package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/signedurl"
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
	// LastSegmentURL is the last media segment's URL.
	LastSegmentURL string `json:"lastSegmentURL"`
}

// TestDevPlayerPlaysThroughSteering is the newcomer's first minute: `duet dev`'s player page, in
// Debian's headless chromium, plays the sample through an edge that steering chose; then that edge
// is killed (SIGKILL) and the video keeps playing from another edge. Then the same for the
// protected stream, played with the signed URL `duet dev` printed: it keeps playing on another
// edge with the same token.
func TestDevPlayerPlaysThroughSteering(t *testing.T) {
	exe := chromiumPath(t)
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
	// Without its token the protected stream is refused, at every edge.
	for _, r := range cl.Regions {
		for _, e := range r.Edges {
			resp, err := http.Get(e.URL + strings.TrimPrefix(cl.Protected, "/_t/"+protectedToken(t, cl.Protected)))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("%s served the protected stream without a token: %d", e.Name, resp.StatusCode)
			}
		}
	}
	bctx := openBrowser(t, exe, 240*time.Second)
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
	killed := map[string]bool{}
	for _, stream := range []struct{ name, src, token string }{
		{"sample", "", ""},
		// The protected stream, with its token in the path: every playlist, segment and
		// pathway clone inherits it, so a player moved to another edge keeps playing.
		{"protected", "/r" + cl.Protected, protectedToken(t, cl.Protected)},
	} {
		page := cl.Regions[0].Steering + "/play"
		if stream.src != "" {
			page += "?src=" + url.QueryEscape(stream.src)
		}
		st = devPlayer{}
		if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
			t.Fatalf("%s: open the player: %v", stream.name, err)
		}
		waitPlayer(stream.name+": first 3 s of video", 60*time.Second, func(s devPlayer) bool { return s.Played >= 3 && s.FramesDecoded > 0 && s.Host != "" })
		first := edgeByHost[st.Host]
		if first == "" || killed[first] {
			t.Fatalf("%s: segments came from %s, which is not a running edge of the cluster", stream.name, st.Host)
		}
		signed := func(when string) {
			t.Helper()
			if stream.token != "" && !strings.Contains(st.LastSegmentURL, "/_t/"+stream.token+"/") {
				t.Fatalf("%s: %s: segment %s without the stream's token", stream.name, when, st.LastSegmentURL)
			}
		}
		signed("before the kill")
		t.Logf("%s: playing from %s (pathway %s)", stream.name, first, st.Pathway)
		if stream.token == "" {
			checkStatusPageSession(t, bctx, cl.Regions[0].Steering, st.SessionID)
		}
		post(t, strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")+"/v1/dev/edges/"+first+"/stop", d.token)
		killed[first] = true
		played := st.Played
		waitPlayer(stream.name+": playback after its edge was killed", 60*time.Second, func(s devPlayer) bool {
			return s.Played >= played+6 && s.Host != "" && edgeByHost[s.Host] != first
		})
		signed("after the kill")
		t.Logf("%s: kept playing from %s (pathway %s) after %s was killed", stream.name, edgeByHost[st.Host], st.Pathway, first)
	}
}

// protectedToken is the token in the protected stream's path; and the stream is refused without it.
func protectedToken(t *testing.T, path string) string {
	t.Helper()
	tok, rest, ok := signedurl.SplitPath(path)
	if !ok || tok == "" {
		t.Fatalf("the protected stream %q has no token in its path", path)
	}
	if rest != "/vod/premium/master.m3u8" {
		t.Fatalf("the protected stream is %q", rest)
	}
	return tok
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
