package main

import (
	"encoding/json"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/internal/testenv"
)

// resumePlayer is the part of window.duetPlayer (steering/player/play.js) this test reads.
type resumePlayer struct {
	Played    float64 `json:"played"`
	Viewer    string  `json:"viewer"`
	Title     string  `json:"title"`
	FirstTime float64 `json:"firstTime"`
	Failed    bool    `json:"failed"`
	Saves     int     `json:"saves"`
	Resume    *struct {
		Position  float64 `json:"position"`
		WrittenIn string  `json:"writtenIn"`
		ServedBy  string  `json:"servedBy"`
		None      bool    `json:"none"`
		Error     string  `json:"error"`
	} `json:"resume"`
	Saved *struct {
		Position float64 `json:"position"`
		ServedBy string  `json:"servedBy"`
	} `json:"saved"`
}

// TestDevPlayerResumesInAnotherRegion is issue 18's viewer: the player plays the sample for 10 s
// from region A's steering (saving its position there), region A is killed, and the viewer
// reloads the player from region B: it resumes within 2 s of the position saved in A, read from
// region B.
func TestDevPlayerResumesInAnotherRegion(t *testing.T) {
	exe := chromiumPath(t)
	d := startDev(t, t.TempDir(), testenv.MinIOBin(t), append(os.Environ(), "DUET_TEST_MAIN=1"))
	_, body := d.getCluster(t)
	var cl devcluster.ClusterJSON
	if err := json.Unmarshal(body, &cl); err != nil {
		t.Fatal(err)
	}
	control := strings.TrimSuffix(d.clusterURL, "/v1/dev/cluster")
	home, other := cl.Regions[0], cl.Regions[1]
	bctx := openBrowser(t, exe, 4*time.Minute)
	noCache(t, bctx)
	read := func() resumePlayer {
		t.Helper()
		p, err := chromedp.Run(bctx, chromedp.Evaluate[*resumePlayer](`window.duetPlayer ? JSON.parse(JSON.stringify(window.duetPlayer)) : null`))
		if err != nil {
			t.Fatalf("read window.duetPlayer: %v", err)
		}
		if p == nil {
			return resumePlayer{FirstTime: -1}
		}
		return *p
	}
	wait := func(what string, within time.Duration, ok func(resumePlayer) bool) resumePlayer {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			st := read()
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
	const viewer = "resume0123456789abcdef0123456789"
	query := "/play?loop=0&viewer=" + viewer

	// 1. Ten seconds in region A, from the start (nothing saved yet).
	if err := chromedp.Do(bctx, chromedp.Navigate(home.Steering+query)); err != nil {
		t.Fatalf("open the player in %s: %v", home.Name, err)
	}
	st := wait("10 s of playback in "+home.Name, 60*time.Second, func(s resumePlayer) bool { return s.Played >= 10 && s.Saved != nil })
	if st.Resume == nil || !st.Resume.None {
		t.Fatalf("the first start resumed from something: %+v", st.Resume)
	}
	saved := st.Saved.Position
	if st.Saved.ServedBy != home.Name || saved < 4 {
		t.Fatalf("after 10 s the last save was %+v, want a position saved in %s", st.Saved, home.Name)
	}
	t.Logf("played %.1f s in %s; last save at %.1f s (%d saves)", st.Played, home.Name, saved, st.Saves)
	// The save has reached region B (what B answers is what the reloaded player will get).
	stateURL := other.Steering + "/v1/viewers/" + viewer + "/titles/" + st.Title
	testenv.Eventually(t, 5*time.Second, func() bool {
		var got struct {
			Position float64 `json:"position"`
		}
		code, b := fetch(stateURL)
		return code == http.StatusOK && json.Unmarshal(b, &got) == nil && got.Position >= saved
	}, "region %s never held the position saved in %s", other.Name, home.Name)
	// The latest save may be newer than the one read above; B now answers the final one.
	code, b := fetch(stateURL)
	var inB struct {
		Position  float64 `json:"position"`
		WrittenIn string  `json:"position_written_in"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &inB) != nil {
		t.Fatalf("GET %s: %d %s", stateURL, code, b)
	}

	// 2. Region A dies.
	post(t, control+"/v1/dev/regions/"+home.Name+"/stop", d.token)
	if c, _ := fetch(home.Steering + "/healthz"); c == http.StatusOK {
		t.Fatalf("%s's steering still answers after the region was stopped", home.Name)
	}
	// Read B's answer again after the kill: a save may have landed between the read and the kill.
	if code, b = fetch(stateURL); code != http.StatusOK || json.Unmarshal(b, &inB) != nil {
		t.Fatalf("GET %s after the kill: %d %s", stateURL, code, b)
	}

	// 3. The viewer reloads the player, now from region B.
	if err := chromedp.Do(bctx, chromedp.Navigate(other.Steering+query)); err != nil {
		t.Fatalf("open the player in %s: %v", other.Name, err)
	}
	st = wait("playback resumed in "+other.Name, 60*time.Second, func(s resumePlayer) bool { return s.Resume != nil && s.FirstTime >= 0 })
	if st.Resume.Error != "" || st.Resume.None {
		t.Fatalf("the player did not resume: %+v", st.Resume)
	}
	if st.Resume.ServedBy != other.Name || st.Resume.WrittenIn != home.Name {
		t.Errorf("resumed from state served by %q written in %q, want served by %s and written in %s", st.Resume.ServedBy, st.Resume.WrittenIn, other.Name, home.Name)
	}
	if math.Abs(st.Resume.Position-inB.Position) > 0.05 {
		t.Errorf("resumed at %.1f s, but the saved position was %.1f s", st.Resume.Position, inB.Position)
	}
	if math.Abs(st.FirstTime-inB.Position) > 2 {
		t.Errorf("playback restarted at %.1f s, want within 2 s of the saved %.1f s", st.FirstTime, inB.Position)
	}
	t.Logf("reloaded in %s: resumed at %.1f s (saved %.1f s in %s), first frame at %.1f s", other.Name, st.Resume.Position, inB.Position, st.Resume.WrittenIn, st.FirstTime)
}
