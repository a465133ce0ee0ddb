// Package playlist reads the media segment lists of HLS media playlists and DASH MPDs, for the
// edge's playlist-driven prefetch (docs/scale-out.md). It reads only what prefetch needs: the
// segments' URIs in order, the initialisation segment, whether the presentation is live, and,
// for DASH, the size a segment is expected to have. Everything else (durations, keys,
// discontinuities, ad markers) is left alone.
//
// Its input comes from the origin, so it is bounded: at most MaxBodyBytes are read, at most
// MaxSegments segments are listed per playlist or MPD (a SegmentTimeline's repeat counts and a
// template's segment count cannot expand past it), and a URI that names another host is
// dropped (the edge can prefetch only what it serves itself).
//
// Not listed, on purpose: HLS byte-range segments (#EXT-X-BYTERANGE: ranges of one file, which
// a viewer's range request reads from the edge's slices; prefetching them would mean fetching
// the whole file or inventing slices the viewer never asks for), HLS partial segments and
// preload hints (low-latency parts are asked for while they are being produced), DASH
// SegmentBase (one file, read by range) and DASH live templates without a SegmentTimeline
// (their segment numbers follow the wall clock, not the MPD).
package playlist

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// MaxBodyBytes is the largest playlist or MPD read; a larger one is not parsed.
const MaxBodyBytes = 4 << 20

// MaxSegments bounds the segments one playlist or MPD lists, all its tracks together, and
// MaxURIBytes the bytes of their URIs (resolving short relative URIs against a long path, or
// expanding one long template many times, must not turn a small manifest into a large list).
const (
	MaxSegments = 50_000
	MaxURIBytes = 8 << 20
	// MaxURILen is the longest URI listed (the edge's cache keys are no longer).
	MaxURILen = 8 << 10
)

// limits is what a manifest may still list.
type limits struct{ segs, bytes int }

func newLimits() *limits { return &limits{segs: MaxSegments, bytes: MaxURIBytes} }

// take accounts for one more URI; false when it does not fit.
func (l *limits) take(u string) bool {
	if l.segs <= 0 || len(u) > l.bytes {
		l.segs = 0
		return false
	}
	l.segs--
	l.bytes -= len(u)
	return true
}

func (l *limits) full() bool { return l.segs <= 0 }

// Errors of Parse. ErrNotMedia is not a fault: a multivariant playlist lists no segments.
var (
	ErrNotMedia  = errors.New("not a media playlist (a multivariant playlist lists renditions, not segments)")
	ErrMalformed = errors.New("malformed playlist")
	ErrTooLarge  = fmt.Errorf("playlist larger than %d bytes", MaxBodyBytes)
	ErrUnknown   = errors.New("not an HLS playlist (.m3u8) or a DASH MPD (.mpd)")
)

// Track is one list of segments a player reads in order: an HLS media playlist, or one DASH
// Representation of one Period.
type Track struct {
	// ID tells a manifest's tracks apart: "" for HLS, "<period>/<representation>" for DASH.
	ID string
	// Init is the initialisation segment (EXT-X-MAP, SegmentTemplate@initialization,
	// SegmentList's Initialization), "" when there is none.
	Init string
	// Segments are the media segments in playback order. Each URI, like Init, is resolved
	// against the manifest's own path and is a path with an optional "?query".
	Segments []string
	// Live is set when the list grows (HLS without EXT-X-ENDLIST and not of type VOD; a
	// dynamic MPD).
	Live bool
	// SegmentBytes is the size a segment is expected to have (DASH: @bandwidth × the segment
	// duration), 0 when the manifest does not tell.
	SegmentBytes int64
}

// Parse reads the manifest at manifestPath (an absolute path, "?query" allowed) by its
// extension: .m3u8 or .mpd.
func Parse(manifestPath string, body []byte) ([]Track, error) {
	if len(body) > MaxBodyBytes {
		return nil, ErrTooLarge
	}
	p, _, _ := strings.Cut(manifestPath, "?")
	base, err := url.Parse(manifestPath)
	if err != nil || base.Scheme != "" || base.Host != "" || !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%w: manifest path %q is not an absolute path", ErrMalformed, manifestPath)
	}
	switch strings.ToLower(path.Ext(p)) {
	case ".m3u8":
		t, err := ParseHLS(base, body)
		if err != nil {
			return nil, err
		}
		return []Track{t}, nil
	case ".mpd":
		return ParseDASH(base, body)
	}
	return nil, ErrUnknown
}

// resolve resolves a URI found in a manifest against base. ok is false for a URI that names a
// scheme or a host (another server's, or this edge's under a name it cannot check), or that
// does not parse.
func resolve(base *url.URL, ref string) (string, bool) {
	ref = strings.TrimSpace(ref)
	if ref == "" || len(ref) > MaxURILen || strings.HasPrefix(ref, "//") {
		return "", false // "//x" names a host, even an empty one
	}
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return "", false
	}
	r := base.ResolveReference(u)
	out := r.EscapedPath()
	if out == "" || out[0] != '/' || strings.HasPrefix(out, "//") {
		return "", false
	}
	if r.RawQuery != "" {
		out += "?" + r.RawQuery
	}
	return out, len(out) <= MaxURILen
}

// ParseHLS reads an HLS media playlist (RFC 8216). A multivariant playlist is ErrNotMedia.
func ParseHLS(base *url.URL, body []byte) (Track, error) {
	var t Track
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	first, rest, _ := bytes.Cut(body, []byte("\n"))
	if string(bytes.TrimSpace(first)) != "#EXTM3U" {
		return t, fmt.Errorf("%w: does not start with #EXTM3U", ErrMalformed)
	}
	t.Live = true
	lim := newLimits()
	byteRange := false // the next URI is a byte range of a file: skipped
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if line[0] != '#' {
			if !byteRange {
				if u, ok := resolve(base, string(line)); ok && lim.take(u) {
					t.Segments = append(t.Segments, u)
				}
			}
			byteRange = false
			continue
		}
		tag, attrs, _ := bytes.Cut(line, []byte(":"))
		switch string(tag) {
		case "#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF":
			return Track{}, ErrNotMedia
		case "#EXT-X-ENDLIST":
			t.Live = false
		case "#EXT-X-PLAYLIST-TYPE":
			if string(bytes.TrimSpace(attrs)) == "VOD" {
				t.Live = false
			}
		case "#EXT-X-BYTERANGE":
			byteRange = true
		case "#EXT-X-MAP":
			a := attributes(attrs)
			if _, ranged := a["BYTERANGE"]; !ranged {
				if u, ok := resolve(base, a["URI"]); ok {
					t.Init = u
				}
			}
		}
	}
	return t, nil
}

// attributes reads an HLS attribute list (RFC 8216 §4.2): NAME=value pairs separated by
// commas, a value in double quotes may hold commas. Malformed pairs are skipped.
func attributes(s []byte) map[string]string {
	a := map[string]string{}
	for len(s) > 0 {
		name, after, ok := bytes.Cut(s, []byte("="))
		if !ok {
			break
		}
		var val []byte
		if len(after) > 0 && after[0] == '"' {
			end := bytes.IndexByte(after[1:], '"')
			if end < 0 {
				break
			}
			val = after[1 : 1+end]
			after = after[2+end:]
			_, after, _ = bytes.Cut(after, []byte(","))
		} else {
			val, after, _ = bytes.Cut(after, []byte(","))
		}
		a[string(bytes.TrimSpace(name))] = string(val)
		s = after
	}
	return a
}
