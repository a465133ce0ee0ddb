package sample

import (
	"bufio"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"testing"
)

// streamDuration is the length generate.sh asks ffmpeg for.
const streamDuration = 16.0

func byPath(t *testing.T) map[string]File {
	t.Helper()
	m := map[string]File{}
	for _, f := range Stream() {
		if _, dup := m[f.Path]; dup {
			t.Fatalf("%s listed twice", f.Path)
		}
		m[f.Path] = f
	}
	return m
}

// TestHLSIsAPlayableLadder reads the stream as an HLS player does: the multivariant playlist,
// each media playlist, then every file they name, and checks what a player relies on.
func TestHLSIsAPlayableLadder(t *testing.T) {
	files := byPath(t)
	master, ok := files[Master]
	if !ok {
		t.Fatalf("no %s at the stream root", Master)
	}
	mv := parseMultivariant(t, string(master.Body))
	if !mv.independent {
		t.Error("master lacks #EXT-X-INDEPENDENT-SEGMENTS")
	}
	if len(mv.variants) != 3 {
		t.Fatalf("want a 3-rung ladder, got %d variants", len(mv.variants))
	}
	audioURI := mv.audio[mv.variants[0].attrs["AUDIO"]]
	if audioURI == "" {
		t.Fatalf("variants play with audio group %q, which no EXT-X-MEDIA defines", mv.variants[0].attrs["AUDIO"])
	}
	audio := readMedia(t, files, audioURI)
	checkDuration(t, audioURI, audio, 0.1)

	referenced := map[string]bool{Master: true, DASH: true, audioURI: true, audio.init: true}
	for _, s := range audio.segments {
		referenced[s.uri] = true
	}
	lastBandwidth, lastHeight := 0, 0
	for _, v := range mv.variants {
		for _, a := range []string{"BANDWIDTH", "RESOLUTION", "CODECS", "AUDIO"} {
			if v.attrs[a] == "" {
				t.Errorf("%s: EXT-X-STREAM-INF lacks %s", v.uri, a)
			}
		}
		if c := v.attrs["CODECS"]; !strings.Contains(c, "avc1.") || !strings.Contains(c, "mp4a.40.2") {
			t.Errorf("%s: CODECS=%q, want H.264 and AAC-LC", v.uri, c)
		}
		bw, _ := strconv.Atoi(v.attrs["BANDWIDTH"])
		var w, h int
		if _, err := fmt.Sscanf(v.attrs["RESOLUTION"], "%dx%d", &w, &h); err != nil {
			t.Errorf("%s: RESOLUTION=%q: %v", v.uri, v.attrs["RESOLUTION"], err)
		}
		if bw <= lastBandwidth || h <= lastHeight {
			t.Errorf("%s: ladder not ascending (%d bit/s, %dp after %d bit/s, %dp)", v.uri, bw, h, lastBandwidth, lastHeight)
		}
		lastBandwidth, lastHeight = bw, h

		media := readMedia(t, files, v.uri)
		checkDuration(t, v.uri, media, 0.001)
		referenced[v.uri], referenced[media.init] = true, true
		checkInit(t, media.init, files[media.init].Body)
		if len(media.segments) != len(audio.segments) {
			t.Errorf("%s has %d segments, the audio %d: segments not aligned", v.uri, len(media.segments), len(audio.segments))
		}
		peak := 0.0
		for i, s := range media.segments {
			referenced[s.uri] = true
			body := files[s.uri].Body
			checkSegment(t, s.uri, body, true)
			if s.duration > float64(media.target)+0.5 {
				t.Errorf("%s: %.3f s is longer than EXT-X-TARGETDURATION %d", s.uri, s.duration, media.target)
			}
			if i < len(audio.segments) {
				body = append(body[:len(body):len(body)], files[audio.segments[i].uri].Body...)
			}
			peak = max(peak, float64(len(body)*8)/s.duration)
		}
		// RFC 8216 4.3.4.2: BANDWIDTH is the peak rate; a player that trusts a low one stalls.
		if float64(bw) < peak {
			t.Errorf("%s: BANDWIDTH=%d is below the measured peak %.0f bit/s", v.uri, bw, peak)
		}
	}
	for _, s := range audio.segments {
		checkSegment(t, s.uri, files[s.uri].Body, false)
	}
	checkInit(t, audio.init, files[audio.init].Body)
	total := 0
	for p, f := range files {
		total += len(f.Body)
		if !referenced[p] {
			t.Errorf("%s is in the stream but no playlist names it", p)
		}
	}
	if total > 4<<20 {
		t.Errorf("stream is %d bytes, want < 4 MiB", total)
	}
	t.Logf("%d files, %d bytes", len(files), total)
}

// TestDASHNamesTheSameSegments expands the MPD's segment templates and checks that every
// initialisation and media segment it names is one of the files HLS plays.
func TestDASHNamesTheSameSegments(t *testing.T) {
	files := byPath(t)
	f, ok := files[DASH]
	if !ok {
		t.Fatalf("no %s", DASH)
	}
	var mpd struct {
		Type     string `xml:"type,attr"`
		Duration string `xml:"mediaPresentationDuration,attr"`
		Sets     []struct {
			ContentType string `xml:"contentType,attr"`
			Reps        []struct {
				ID       string `xml:"id,attr"`
				Codecs   string `xml:"codecs,attr"`
				Template struct {
					Timescale   int    `xml:"timescale,attr"`
					Duration    int    `xml:"duration,attr"`
					StartNumber int    `xml:"startNumber,attr"`
					Init        string `xml:"initialization,attr"`
					Media       string `xml:"media,attr"`
				} `xml:"SegmentTemplate"`
			} `xml:"Representation"`
		} `xml:"Period>AdaptationSet"`
	}
	if err := xml.Unmarshal(f.Body, &mpd); err != nil {
		t.Fatalf("parse %s: %v", DASH, err)
	}
	if mpd.Type != "static" || mpd.Duration != "PT16.0S" {
		t.Errorf("MPD type=%q duration=%q, want a static 16 s presentation", mpd.Type, mpd.Duration)
	}
	reps := 0
	for _, set := range mpd.Sets {
		for _, r := range set.Reps {
			reps++
			tpl := r.Template
			if tpl.Timescale <= 0 || tpl.Duration <= 0 {
				t.Fatalf("%s: SegmentTemplate timescale=%d duration=%d", r.ID, tpl.Timescale, tpl.Duration)
			}
			expand := func(s string, n int) string {
				s = strings.ReplaceAll(s, "$RepresentationID$", r.ID)
				return strings.ReplaceAll(s, "$Number%03d$", fmt.Sprintf("%03d", n))
			}
			init := expand(tpl.Init, 0)
			if _, ok := files[init]; !ok {
				t.Errorf("%s: initialisation %s missing", r.ID, init)
			}
			n := int(math.Ceil(streamDuration * float64(tpl.Timescale) / float64(tpl.Duration)))
			for i := range n {
				seg := expand(tpl.Media, tpl.StartNumber+i)
				if _, ok := files[seg]; !ok {
					t.Errorf("%s: segment %s missing", r.ID, seg)
				}
			}
			if _, extra := files[expand(tpl.Media, tpl.StartNumber+n)]; extra {
				t.Errorf("%s: more segments than the MPD's duration covers", r.ID)
			}
		}
	}
	if reps != 4 {
		t.Errorf("MPD has %d representations, want 3 video + 1 audio", reps)
	}
}

func TestContentTypes(t *testing.T) {
	files := byPath(t)
	for _, tc := range []struct{ path, want string }{
		{Master, "application/vnd.apple.mpegurl"},
		{"360p/index.m3u8", "application/vnd.apple.mpegurl"},
		{DASH, "application/dash+xml"},
		{"360p/init.mp4", "video/mp4"},
		{"audio/init.mp4", "audio/mp4"},
		{"360p/seg_001.m4s", "video/iso.segment"},
		{"audio/seg_001.m4s", "video/iso.segment"},
	} {
		f, ok := files[tc.path]
		if !ok {
			t.Errorf("%s missing", tc.path)
			continue
		}
		if f.ContentType != tc.want {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, f.ContentType, tc.want)
		}
	}
}

type variant struct {
	uri   string
	attrs map[string]string
}

type multivariant struct {
	independent bool
	variants    []variant
	audio       map[string]string // group id -> media playlist URI
}

func parseMultivariant(t *testing.T, body string) multivariant {
	t.Helper()
	if !strings.HasPrefix(body, "#EXTM3U\n") {
		t.Fatal("multivariant playlist does not start with #EXTM3U")
	}
	mv := multivariant{audio: map[string]string{}}
	var pending map[string]string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "#EXT-X-INDEPENDENT-SEGMENTS":
			mv.independent = true
		case strings.HasPrefix(line, "#EXT-X-MEDIA:"):
			a := attrs(line[len("#EXT-X-MEDIA:"):])
			if a["TYPE"] == "AUDIO" {
				mv.audio[a["GROUP-ID"]] = a["URI"]
			}
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF:"):
			pending = attrs(line[len("#EXT-X-STREAM-INF:"):])
		case line != "" && !strings.HasPrefix(line, "#"):
			if pending == nil {
				t.Fatalf("URI %s without #EXT-X-STREAM-INF", line)
			}
			mv.variants = append(mv.variants, variant{uri: line, attrs: pending})
			pending = nil
		}
	}
	return mv
}

// attrs parses an HLS attribute list (RFC 8216 4.2): quoted values may hold commas.
func attrs(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		k, rest, _ := strings.Cut(s, "=")
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"') + 1
			v, rest = rest[1:end], rest[end+1:]
		} else {
			v, rest, _ = strings.Cut(rest, ",")
			rest = "," + rest
		}
		m[k] = v
		s = strings.TrimPrefix(rest, ",")
	}
	return m
}

type segment struct {
	uri      string // relative to the stream root
	duration float64
}

type mediaPlaylist struct {
	target   int
	init     string
	segments []segment
}

// readMedia parses a VOD media playlist and resolves its URIs against its folder.
func readMedia(t *testing.T, files map[string]File, uri string) mediaPlaylist {
	t.Helper()
	f, ok := files[uri]
	if !ok {
		t.Fatalf("playlist %s missing", uri)
	}
	dir := path.Dir(uri)
	var p mediaPlaylist
	var ended, vod bool
	var dur float64
	sc := bufio.NewScanner(strings.NewReader(string(f.Body)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			p.target, _ = strconv.Atoi(line[len("#EXT-X-TARGETDURATION:"):])
		case line == "#EXT-X-PLAYLIST-TYPE:VOD":
			vod = true
		case line == "#EXT-X-ENDLIST":
			ended = true
		case strings.HasPrefix(line, "#EXT-X-MAP:"):
			p.init = path.Join(dir, attrs(line[len("#EXT-X-MAP:"):])["URI"])
		case strings.HasPrefix(line, "#EXTINF:"):
			d, _, _ := strings.Cut(line[len("#EXTINF:"):], ",")
			var err error
			if dur, err = strconv.ParseFloat(d, 64); err != nil {
				t.Fatalf("%s: %q: %v", uri, line, err)
			}
		case line != "" && !strings.HasPrefix(line, "#"):
			seg := path.Join(dir, line)
			if _, ok := files[seg]; !ok {
				t.Errorf("%s names %s, which the stream lacks", uri, seg)
			}
			p.segments = append(p.segments, segment{uri: seg, duration: dur})
		}
	}
	if !ended || !vod {
		t.Errorf("%s: not a finished VOD playlist (ENDLIST %v, PLAYLIST-TYPE:VOD %v)", uri, ended, vod)
	}
	if p.init == "" {
		t.Fatalf("%s: no #EXT-X-MAP: fMP4 segments need their init segment", uri)
	}
	if _, ok := files[p.init]; !ok {
		t.Fatalf("%s: init segment %s missing", uri, p.init)
	}
	if len(p.segments) == 0 {
		t.Fatalf("%s: no segments", uri)
	}
	return p
}

func checkDuration(t *testing.T, uri string, p mediaPlaylist, tolerance float64) {
	t.Helper()
	sum := 0.0
	for _, s := range p.segments {
		sum += s.duration
	}
	if math.Abs(sum-streamDuration) > tolerance {
		t.Errorf("%s: segments sum to %.3f s, want %.1f s (±%g)", uri, sum, streamDuration, tolerance)
	}
}

// box is one ISO BMFF box: its type and payload.
type box struct {
	typ  string
	body []byte
}

// boxes splits b into its top-level boxes, failing on a length that does not fit.
func boxes(t *testing.T, name string, b []byte) []box {
	t.Helper()
	var out []box
	for len(b) > 0 {
		if len(b) < 8 {
			t.Fatalf("%s: %d trailing bytes, not a box", name, len(b))
		}
		size, hdr := uint64(binary.BigEndian.Uint32(b)), uint64(8)
		if size == 1 {
			size, hdr = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < hdr || size > uint64(len(b)) {
			t.Fatalf("%s: box %q claims %d bytes of %d", name, b[4:8], size, len(b))
		}
		out = append(out, box{typ: string(b[4:8]), body: b[hdr:size]})
		b = b[size:]
	}
	return out
}

func find(bs []box, typ string) (box, bool) {
	for _, b := range bs {
		if b.typ == typ {
			return b, true
		}
	}
	return box{}, false
}

func checkInit(t *testing.T, name string, b []byte) {
	t.Helper()
	bs := boxes(t, name, b)
	if bs[0].typ != "ftyp" {
		t.Errorf("%s starts with %q, want ftyp", name, bs[0].typ)
	}
	if _, ok := find(bs, "moov"); !ok {
		t.Errorf("%s has no moov", name)
	}
}

// checkSegment checks a CMAF media segment: styp, then moof and mdat; for video, that its first
// sample is a sync sample, so each segment starts a closed GOP and decodes on its own.
func checkSegment(t *testing.T, name string, b []byte, video bool) {
	t.Helper()
	bs := boxes(t, name, b)
	if bs[0].typ != "styp" {
		t.Errorf("%s starts with %q, want styp", name, bs[0].typ)
	}
	moof, ok := find(bs, "moof")
	if _, mdat := find(bs, "mdat"); !ok || !mdat {
		t.Fatalf("%s: no moof/mdat", name)
	}
	if !video {
		return
	}
	traf, ok := find(boxes(t, name+" moof", moof.body), "traf")
	if !ok {
		t.Fatalf("%s: moof without traf", name)
	}
	tb := boxes(t, name+" traf", traf.body)
	tfhd, ok1 := find(tb, "tfhd")
	trun, ok2 := find(tb, "trun")
	if !ok1 || !ok2 {
		t.Fatalf("%s: traf without tfhd/trun", name)
	}
	if flags, err := firstSampleFlags(tfhd.body, trun.body); err != nil {
		t.Errorf("%s: %v", name, err)
	} else if flags&0x10000 != 0 { // sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1)
		t.Errorf("%s does not start with a key frame (sample flags %#x)", name, flags)
	}
}

// firstSampleFlags returns the flags of a track fragment's first sample: from the trun's
// first_sample_flags or per-sample flags, else the tfhd default.
func firstSampleFlags(tfhd, trun []byte) (uint32, error) {
	if len(tfhd) < 8 || len(trun) < 8 {
		return 0, fmt.Errorf("short tfhd/trun")
	}
	var flags uint32
	hf := binary.BigEndian.Uint32(tfhd) & 0xffffff
	off := 8 // version+flags, track_ID
	for _, f := range []struct {
		bit  uint32
		size int
	}{{0x1, 8}, {0x2, 4}, {0x8, 4}, {0x10, 4}} { // base offset, description index, duration, size
		if hf&f.bit != 0 {
			off += f.size
		}
	}
	if hf&0x20 != 0 && len(tfhd) >= off+4 {
		flags = binary.BigEndian.Uint32(tfhd[off:])
	}
	rf := binary.BigEndian.Uint32(trun) & 0xffffff
	off = 8 // version+flags, sample_count
	if rf&0x1 != 0 {
		off += 4 // data_offset
	}
	if rf&0x4 != 0 {
		if len(trun) < off+4 {
			return 0, fmt.Errorf("short trun")
		}
		return binary.BigEndian.Uint32(trun[off:]), nil
	}
	if rf&0x400 != 0 {
		if rf&0x100 != 0 {
			off += 4 // sample_duration
		}
		if rf&0x200 != 0 {
			off += 4 // sample_size
		}
		if len(trun) < off+4 {
			return 0, fmt.Errorf("short trun")
		}
		return binary.BigEndian.Uint32(trun[off:]), nil
	}
	return flags, nil
}
