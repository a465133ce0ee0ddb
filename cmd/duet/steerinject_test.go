package main

import (
	"context"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin/s3conf"
)

const testMultivariant = `#EXTM3U
#EXT-X-VERSION:6
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2400000,RESOLUTION=1280x720
720p/index.m3u8
`

const testMPD = `<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT16S" minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <Period id="0">
    <AdaptationSet mimeType="video/mp4" segmentAlignment="true">
      <SegmentTemplate media="$RepresentationID$/seg$Number$.m4s" initialization="$RepresentationID$/init.mp4" duration="4" startNumber="1"/>
      <Representation id="720p" bandwidth="2400000" width="1280" height="720" codecs="avc1.64001f"/>
    </AdaptationSet>
  </Period>
</MPD>
`

// TestEdgeInjectsContentSteering: with injection on, a multivariant playlist served through the
// edge carries a valid EXT-X-CONTENT-STEERING tag and a PATHWAY-ID on every variant, and an MPD a
// ContentSteering element and a BaseURL with its serviceLocation; media playlists pass unchanged.
func TestEdgeInjectsContentSteering(t *testing.T) {
	media := "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.ts\n#EXT-X-ENDLIST\n"
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		switch r.URL.Path {
		case "/vod/a/master.m3u8":
			_, _ = w.Write([]byte(testMultivariant))
		case "/vod/a/720p/index.m3u8":
			_, _ = w.Write([]byte(media))
		case "/vod/a/manifest.mpd":
			_, _ = w.Write([]byte(testMPD))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	cfg := defaultEdgeRoleConfig()
	cfg.Name, cfg.Region = "e1", "eu"
	cfg.Listen, cfg.AdminListen = freeAddr(t), freeAddr(t)
	cfg.Origin = edge.OriginConfig{Type: "http", Config: s3conf.Config{Endpoint: ts.URL}, Timeout: 5 * time.Second}
	cfg.Disk = edge.DiskConfig{Dir: t.TempDir(), MaxBytes: 16 << 20}
	cfg.Memory = edge.MemoryConfig{MaxBytes: 8 << 20, MaxObjectBytes: 1 << 20}
	// No pathway given: the edge's own name, the pathway steering gives this edge (one per
	// edge, so that players can move between the edges of a region).
	cfg.Steering = steeringInjectConfig{HLSServerURI: "https://steer.example.net/v1/steer/hls", DASHServerURI: "https://steer.example.net/v1/steer/dash"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runEdge(ctx, cfg, silent()) }()
	t.Cleanup(func() { cancel(); <-done })
	e := &testEdge{name: "e1", url: "http://" + cfg.Listen}
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get(e.url + "/vod/a/720p/index.m3u8")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, "edge not up")

	for range 2 { // miss, then the hit serves the same rewritten bytes
		body, _ := e.get(t, "/vod/a/master.m3u8")
		lines := strings.Split(strings.TrimSpace(body), "\n")
		steer := 0
		for i, l := range lines {
			if strings.HasPrefix(l, "#EXT-X-CONTENT-STEERING:") {
				steer++
				if !strings.Contains(l, `SERVER-URI="https://steer.example.net/v1/steer/hls?path=%2Fvod%2Fa%2Fmaster.m3u8&base=e1"`) || !strings.Contains(l, `PATHWAY-ID="e1"`) {
					t.Fatalf("steering tag: %s", l)
				}
			}
			if strings.HasPrefix(l, "#EXT-X-STREAM-INF:") {
				if !strings.Contains(l, `PATHWAY-ID="e1"`) || i+1 >= len(lines) || strings.HasPrefix(lines[i+1], "#") {
					t.Fatalf("variant without its PATHWAY-ID or URI: %s", l)
				}
			}
		}
		if steer != 1 || lines[0] != "#EXTM3U" {
			t.Fatalf("want one EXT-X-CONTENT-STEERING tag:\n%s", body)
		}
	}
	if body, _ := e.get(t, "/vod/a/720p/index.m3u8"); body != media {
		t.Fatalf("media playlist changed:\n%s", body)
	}
	body, x := e.get(t, "/vod/a/manifest.mpd")
	var mpd struct {
		BaseURL []struct {
			ServiceLocation string `xml:"serviceLocation,attr"`
			URL             string `xml:",chardata"`
		} `xml:"BaseURL"`
		ContentSteering struct {
			DefaultServiceLocation string `xml:"defaultServiceLocation,attr"`
			URL                    string `xml:",chardata"`
		} `xml:"ContentSteering"`
		Period []struct{} `xml:"Period"`
	}
	if err := xml.Unmarshal([]byte(body), &mpd); err != nil {
		t.Fatalf("MPD (%s) no longer parses: %v\n%s", x, err, body)
	}
	if strings.TrimSpace(mpd.ContentSteering.URL) != "https://steer.example.net/v1/steer/dash?path=%2Fvod%2Fa%2Fmanifest.mpd&base=e1" || mpd.ContentSteering.DefaultServiceLocation != "e1" ||
		len(mpd.BaseURL) != 1 || mpd.BaseURL[0].ServiceLocation != "e1" || strings.TrimSpace(mpd.BaseURL[0].URL) != e.url+"/vod/a/" || len(mpd.Period) != 1 {
		t.Fatalf("MPD steering: %+v\n%s", mpd, body)
	}
}
