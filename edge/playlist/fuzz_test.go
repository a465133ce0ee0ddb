package playlist

import (
	"strings"
	"testing"
)

// FuzzParse feeds origin bytes to both parsers: nothing panics, the bounds hold, and every URI
// listed is an absolute path on this server.
func FuzzParse(f *testing.F) {
	f.Add(".m3u8", []byte("#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\"\n#EXTINF:4,\na.ts\n#EXT-X-BYTERANGE:10@0\n#EXTINF:4,\nb.ts\n../c.ts?x=1\n#EXT-X-ENDLIST\n"))
	f.Add(".m3u8", []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n"))
	f.Add(".mpd", []byte(`<MPD type="static" mediaPresentationDuration="PT1M"><BaseURL>x/</BaseURL><Period><AdaptationSet>
<SegmentTemplate timescale="1000" duration="2000" media="$RepresentationID$/$Number%05d$.m4s" initialization="$RepresentationID$/i.mp4"/>
<Representation id="v" bandwidth="1000"/></AdaptationSet></Period></MPD>`))
	f.Add(".mpd", []byte(`<MPD type="dynamic"><Period><AdaptationSet><Representation id="a"><SegmentTemplate media="$Time$.m4s">
<SegmentTimeline><S t="5" d="2" r="-1"/><S t="11" d="3" r="2"/></SegmentTimeline></SegmentTemplate></Representation>
<Representation id="b"><SegmentList><SegmentURL media="1.m4s"/></SegmentList></Representation></AdaptationSet></Period></MPD>`))
	f.Fuzz(func(t *testing.T, ext string, body []byte) {
		if ext != ".m3u8" && ext != ".mpd" {
			ext = ".m3u8"
		}
		tracks, err := Parse("/a/b/c"+ext, body)
		if err != nil {
			return
		}
		n := 0
		for _, tr := range tracks {
			n += len(tr.Segments)
			for _, u := range append([]string{tr.Init}, tr.Segments...) {
				if tr.Init == "" && u == "" {
					continue
				}
				if !strings.HasPrefix(u, "/") || strings.HasPrefix(u, "//") {
					t.Fatalf("URI %q is not an absolute path on this server", u)
				}
			}
			if tr.SegmentBytes < 0 {
				t.Fatalf("segment bytes %d", tr.SegmentBytes)
			}
		}
		if n > MaxSegments {
			t.Fatalf("%d segments listed, more than %d", n, MaxSegments)
		}
	})
}
