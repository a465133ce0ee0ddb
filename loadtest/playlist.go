package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"path"
	"strconv"
	"strings"
	"time"
)

// segment is one media segment of a playlist.
type segment struct {
	path     string // absolute request path
	duration time.Duration
	init     bool // an EXT-X-MAP initialisation segment (no play time of its own)
}

// attr returns a quoted or plain attribute of an HLS tag line.
func attr(line, name string) (string, bool) {
	_, list, ok := strings.Cut(line, ":")
	if !ok {
		return "", false
	}
	for list != "" {
		var kv string
		if i := strings.IndexByte(list, '='); i >= 0 && i+1 < len(list) && list[i+1] == '"' {
			j := strings.IndexByte(list[i+2:], '"')
			if j < 0 {
				return "", false
			}
			kv, list = list[:i+2+j+1], strings.TrimPrefix(list[i+2+j+1:], ",")
		} else {
			kv, list, _ = strings.Cut(list, ",")
		}
		k, v, _ := strings.Cut(kv, "=")
		if strings.TrimSpace(k) == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// resolve turns a playlist URI into an absolute request path, relative to the playlist's path.
// Absolute URLs keep only their path: the viewer fetches everything from its current pathway.
func resolve(base, uri string) string {
	if i := strings.Index(uri, "://"); i >= 0 {
		rest := uri[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j:]
		}
		return "/"
	}
	if q := strings.IndexAny(uri, "?#"); q >= 0 {
		uri = uri[:q]
	}
	if strings.HasPrefix(uri, "/") {
		return path.Clean(uri)
	}
	return path.Join(path.Dir(base), uri)
}

// parseMaster returns the variant playlists of a multivariant playlist, in order.
func parseMaster(base string, body []byte) ([]string, error) {
	if !bytes.HasPrefix(body, []byte("#EXTM3U")) {
		return nil, errors.New("not an HLS playlist (no #EXTM3U)")
	}
	var out []string
	next := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF"):
			next = true
		case line == "" || strings.HasPrefix(line, "#"):
		case next:
			out = append(out, resolve(base, line))
			next = false
		}
	}
	if len(out) == 0 {
		return nil, errors.New("multivariant playlist lists no variant")
	}
	return out, sc.Err()
}

// maxSegments bounds what one media playlist may make a viewer fetch.
const maxSegments = 100_000

// parseMedia returns the segments of a media playlist.
func parseMedia(base string, body []byte) ([]segment, error) {
	if !bytes.HasPrefix(body, []byte("#EXTM3U")) {
		return nil, errors.New("not an HLS playlist (no #EXTM3U)")
	}
	var out []segment
	var dur time.Duration
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-MAP:"):
			// The initialisation segment (fMP4/CMAF): fetched once, before the first segment.
			if uri, ok := attr(line, "URI"); ok && len(out) < maxSegments {
				out = append(out, segment{path: resolve(base, uri), init: true})
			}
		case strings.HasPrefix(line, "#EXTINF:"):
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "#EXTINF:"), ",")
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || f > 3600 {
				return nil, errors.New("bad #EXTINF duration " + strconv.Quote(v))
			}
			dur = time.Duration(f * float64(time.Second))
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			if len(out) >= maxSegments {
				return nil, errors.New("media playlist lists too many segments")
			}
			out = append(out, segment{path: resolve(base, line), duration: dur})
			dur = 0
		}
	}
	if len(out) == 0 {
		return nil, errors.New("media playlist lists no segment")
	}
	return out, sc.Err()
}
