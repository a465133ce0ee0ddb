package playlist

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestHLSMedia(t *testing.T) {
	body := "\xef\xbb\xbf#EXTM3U\r\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n" +
		`#EXT-X-MAP:URI="init.mp4"` + "\n" +
		"#EXTINF:4.0,\nseg0.m4s\n" +
		"#EXTINF:4.0,\n../other/seg1.m4s?x=1\n" +
		"#EXTINF:4.0,\n/_t/tok/vod/a/seg2.m4s\n" +
		"#EXTINF:4.0,\nhttps://elsewhere.example/seg3.m4s\n" +
		"#EXT-X-BYTERANGE:1000@0\n#EXTINF:4.0,\nall.m4s\n" +
		"#EXTINF:4.0,\n\n  seg5.m4s  \n" +
		"#EXT-X-ENDLIST\n"
	tr, err := Parse("/vod/a/index.m3u8?sess=1", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 1 || tr[0].Live || tr[0].Init != "/vod/a/init.mp4" {
		t.Fatalf("got %+v", tr)
	}
	want := []string{"/vod/a/seg0.m4s", "/vod/other/seg1.m4s?x=1", "/_t/tok/vod/a/seg2.m4s", "/vod/a/seg5.m4s"}
	if !slices.Equal(tr[0].Segments, want) {
		t.Fatalf("segments %q, want %q (the other host's and the byte range skipped)", tr[0].Segments, want)
	}
}

func TestHLSLiveAndMultivariant(t *testing.T) {
	tr, err := Parse("/live/a.m3u8", []byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2,\n7.ts\n#EXTINF:2,\n8.ts\n"))
	if err != nil || !tr[0].Live || len(tr[0].Segments) != 2 {
		t.Fatalf("live: %+v %v", tr, err)
	}
	tr, _ = Parse("/v.m3u8", []byte("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2,\n1.ts\n"))
	if tr[0].Live {
		t.Fatal("PLAYLIST-TYPE:VOD is not live")
	}
	if _, err := Parse("/m.m3u8", []byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n")); !errors.Is(err, ErrNotMedia) {
		t.Fatalf("multivariant: %v", err)
	}
	if _, err := Parse("/m.m3u8", []byte("<html>")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("not a playlist: %v", err)
	}
	if _, err := Parse("/m.txt", []byte("#EXTM3U\n")); !errors.Is(err, ErrUnknown) {
		t.Fatalf("other extension: %v", err)
	}
}

func TestDASHTemplateNumber(t *testing.T) {
	mpd := `<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT9.5S">
 <Period id="p0">
  <AdaptationSet>
   <SegmentTemplate timescale="1000" duration="2000" startNumber="1" media="$RepresentationID$/seg-$Number%05d$.m4s" initialization="$RepresentationID$/init.mp4"/>
   <Representation id="v1" bandwidth="800000"/>
   <Representation id="v2" bandwidth="1600000"><BaseURL>hi/</BaseURL></Representation>
  </AdaptationSet>
 </Period>
</MPD>`
	tr, err := Parse("/vod/b/manifest.mpd", []byte(mpd))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 2 {
		t.Fatalf("tracks %+v", tr)
	}
	v1 := tr[0]
	if v1.ID != "p0/v1" || v1.Init != "/vod/b/v1/init.mp4" || len(v1.Segments) != 5 ||
		v1.Segments[0] != "/vod/b/v1/seg-00001.m4s" || v1.Segments[4] != "/vod/b/v1/seg-00005.m4s" || v1.Live {
		t.Fatalf("v1 %+v", v1)
	}
	if v1.SegmentBytes != 200_000 {
		t.Fatalf("v1 segment bytes %d, want 800 kbit/s × 2 s", v1.SegmentBytes)
	}
	if tr[1].Segments[0] != "/vod/b/hi/v2/seg-00001.m4s" {
		t.Fatalf("v2 %q", tr[1].Segments[0])
	}
}

func TestDASHTimelineAndList(t *testing.T) {
	mpd := `<MPD type="dynamic"><Period start="PT0S"><AdaptationSet>
 <Representation id="a"><SegmentTemplate timescale="10" media="t/$Time$.m4s" initialization="t/i.mp4">
  <SegmentTimeline><S t="100" d="20" r="2"/><S d="30"/><S t="200" d="10" r="-1"/><S t="230" d="10"/></SegmentTimeline>
 </SegmentTemplate></Representation>
 <Representation id="b"><SegmentList duration="4"><Initialization sourceURL="b/init.mp4"/>
  <SegmentURL media="b/1.m4s"/><SegmentURL media="b/all.m4s" mediaRange="0-99"/><SegmentURL media="b/2.m4s"/></SegmentList></Representation>
</AdaptationSet></Period></MPD>`
	tr, err := Parse("/live/c.mpd", []byte(mpd))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(tr[0].Segments, " ")
	want := "/live/t/100.m4s /live/t/120.m4s /live/t/140.m4s /live/t/160.m4s /live/t/200.m4s /live/t/210.m4s /live/t/220.m4s /live/t/230.m4s"
	if got != want || !tr[0].Live {
		t.Fatalf("timeline:\n got %s\nwant %s", got, want)
	}
	if strings.Join(tr[1].Segments, " ") != "/live/b/1.m4s /live/b/2.m4s" || tr[1].Init != "/live/b/init.mp4" {
		t.Fatalf("list %+v", tr[1])
	}
}

func TestDASHBounds(t *testing.T) {
	// A repeat count of a billion lists MaxSegments, no more.
	mpd := `<MPD type="static"><Period><AdaptationSet><Representation id="r"><SegmentTemplate media="$Number$.m4s">
<SegmentTimeline><S t="0" d="1" r="1000000000"/></SegmentTimeline></SegmentTemplate></Representation></AdaptationSet></Period></MPD>`
	tr, err := Parse("/x.mpd", []byte(mpd))
	if err != nil || len(tr[0].Segments) != MaxSegments {
		t.Fatalf("%v, %d segments", err, len(tr[0].Segments))
	}
	if _, err := Parse("/x.mpd", []byte("<MPD><Period>")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated MPD: %v", err)
	}
	if _, err := Parse("/x.mpd", make([]byte, MaxBodyBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}

func TestExpand(t *testing.T) {
	for _, c := range []struct {
		tmpl, want string
		ok         bool
	}{
		{"$RepresentationID$_$Number%03d$_$Time$_$Bandwidth$$$.m4s", "v_007_90_5$.m4s", true},
		{"$Unknown$", "", false},
		{"$Number", "", false},
		{"$Number%x$", "", false},
	} {
		got, ok := expand(c.tmpl, "v", 5, 7, 90)
		if got != c.want || ok != c.ok {
			t.Errorf("expand(%q) = %q, %v; want %q, %v", c.tmpl, got, ok, c.want, c.ok)
		}
	}
}
