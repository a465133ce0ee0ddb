package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotMultivariant: the input is not an HLS multivariant playlist (no
	// #EXTM3U header, a media playlist, or no variant streams). Serve the
	// original.
	ErrNotMultivariant = errors.New("manifest: not a multivariant playlist")
	// ErrAlreadySteered: the playlist or MPD already has content steering;
	// the origin's choice stands. Serve the original.
	ErrAlreadySteered = errors.New("manifest: already has content steering")
	// ErrMalformed: the input could not be read safely (a broken attribute
	// list, a variant without a URI, XML that is not well-formed).
	ErrMalformed = errors.New("manifest: malformed input")
	// ErrTooLarge: the input is larger than MaxInputSize.
	ErrTooLarge = errors.New("manifest: input too large")
	// ErrUnknownPathway: the initial or default pathway is none of the
	// pathways the document ends up with.
	ErrUnknownPathway = errors.New("manifest: initial pathway not in the document")
)

// MaxInputSize bounds the playlists and MPDs the injectors read.
const MaxInputSize = 16 << 20

// DefaultPathway is HLS's pathway of variant streams without a PATHWAY-ID.
const DefaultPathway = "."

// InjectHLS adds content steering to a multivariant playlist:
//
//   - #EXT-X-CONTENT-STEERING:SERVER-URI="serverURI",PATHWAY-ID="initialPathway"
//     before the first variant or rendition tag (initialPathway "" leaves
//     PATHWAY-ID out);
//   - PATHWAY-ID="..." on every EXT-X-STREAM-INF and EXT-X-I-FRAME-STREAM-INF,
//     from pathwayForURI(the variant's URI), replacing any PATHWAY-ID there.
//     pathwayForURI may be nil (every variant gets initialPathway) and may
//     return "" (the variant stays in the default pathway ".").
//
// Everything else is kept byte for byte, line endings included. The initial
// pathway must be one the variants end up in (the spec's MUST). The result
// is a new slice.
func InjectHLS(multivariant []byte, serverURI, initialPathway string, pathwayForURI func(uri string) string) ([]byte, error) {
	if len(multivariant) > MaxInputSize {
		return nil, ErrTooLarge
	}
	if serverURI == "" || !validQuoted(serverURI) {
		return nil, fmt.Errorf("%w: SERVER-URI %q cannot be a quoted-string", ErrInvalidInput, serverURI)
	}
	if initialPathway != "" && initialPathway != DefaultPathway && !ValidPathwayID(initialPathway) {
		return nil, fmt.Errorf("%w: %w: %q", ErrInvalidInput, ErrInvalidPathway, initialPathway)
	}
	if pathwayForURI == nil {
		pathwayForURI = func(string) string { return initialPathway }
	}
	lines := splitLines(multivariant)
	if len(lines) == 0 || !bytes.Equal(trimEOL(lines[0]), []byte("#EXTM3U")) {
		return nil, fmt.Errorf("%w: no #EXTM3U header", ErrNotMultivariant)
	}
	eol := lineEnding(lines[0])

	out := make([]byte, 0, len(multivariant)+len(serverURI)+64+32*len(lines))
	insertAt := -1 // index in lines before which the steering tag goes
	variants := 0
	inPathway := map[string]bool{}
	for i := 0; i < len(lines); i++ {
		tag, _, isTag := cutTag(trimEOL(lines[i]))
		switch {
		case !isTag:
		case tag == "EXT-X-CONTENT-STEERING":
			return nil, ErrAlreadySteered
		case tag == "EXTINF" || tag == "EXT-X-TARGETDURATION" || tag == "EXT-X-MEDIA-SEQUENCE" || tag == "EXT-X-PART-INF":
			return nil, fmt.Errorf("%w: %s is a media playlist tag", ErrNotMultivariant, tag)
		case tag == "EXT-X-STREAM-INF" || tag == "EXT-X-I-FRAME-STREAM-INF" || tag == "EXT-X-MEDIA":
			if insertAt < 0 {
				insertAt = i
			}
		}
	}
	if insertAt < 0 {
		return nil, fmt.Errorf("%w: no variant streams", ErrNotMultivariant)
	}

	for i := 0; i < len(lines); i++ {
		raw := lines[i]
		if i == insertAt {
			out = append(out, "#EXT-X-CONTENT-STEERING:SERVER-URI=\""...)
			out = append(out, serverURI...)
			out = append(out, '"')
			if initialPathway != "" {
				out = append(out, ",PATHWAY-ID=\""...)
				out = append(out, initialPathway...)
				out = append(out, '"')
			}
			out = append(out, eol...)
		}
		line := trimEOL(raw)
		tag, attrs, isTag := cutTag(line)
		if !isTag || (tag != "EXT-X-STREAM-INF" && tag != "EXT-X-I-FRAME-STREAM-INF") {
			out = append(out, raw...)
			continue
		}
		if len(attrs) == 0 {
			return nil, fmt.Errorf("%w: line %d: %s without attributes", ErrMalformed, i+1, tag)
		}
		list, err := parseAttrs(attrs)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrMalformed, i+1, err)
		}
		var uri string
		if tag == "EXT-X-STREAM-INF" {
			j := nextURI(lines, i+1)
			if j < 0 {
				return nil, fmt.Errorf("%w: line %d: EXT-X-STREAM-INF without a URI", ErrMalformed, i+1)
			}
			uri = strings.TrimSpace(string(trimEOL(lines[j])))
		} else {
			v, ok := list.get("URI")
			if !ok || len(v) < 2 || v[0] != '"' {
				return nil, fmt.Errorf("%w: line %d: EXT-X-I-FRAME-STREAM-INF without a URI", ErrMalformed, i+1)
			}
			uri = v[1 : len(v)-1]
		}
		id := pathwayForURI(uri)
		if id != "" && !ValidPathwayID(id) {
			return nil, fmt.Errorf("%w: %w: %q for %q", ErrInvalidInput, ErrInvalidPathway, id, uri)
		}
		if id == DefaultPathway {
			id = ""
		}
		variants++
		if id == "" {
			inPathway[DefaultPathway] = true
		} else {
			inPathway[id] = true
		}
		out = append(out, '#')
		out = append(out, tag...)
		out = append(out, ':')
		out = list.appendWithout(out, "PATHWAY-ID")
		if id != "" {
			if len(list) > 0 && !list.only("PATHWAY-ID") {
				out = append(out, ',')
			}
			out = append(out, "PATHWAY-ID=\""...)
			out = append(out, id...)
			out = append(out, '"')
		}
		out = append(out, raw[len(line):]...) // the line's own ending
	}
	if variants == 0 {
		return nil, fmt.Errorf("%w: no variant streams", ErrNotMultivariant)
	}
	if initialPathway != "" && !inPathway[initialPathway] {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPathway, initialPathway)
	}
	return out, nil
}

// splitLines splits b after each '\n', keeping the endings; a last line
// without one is kept too.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, b)
			break
		}
		lines = append(lines, b[:i+1])
		b = b[i+1:]
	}
	return lines
}

func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

func lineEnding(line []byte) string {
	if bytes.HasSuffix(line, []byte("\r\n")) {
		return "\r\n"
	}
	return "\n"
}

// cutTag splits "#EXT-X-FOO:attrs" into "EXT-X-FOO" and "attrs". Comments
// ("#..." not starting with "#EXT") and URI lines are not tags.
func cutTag(line []byte) (tag string, attrs []byte, ok bool) {
	if !bytes.HasPrefix(line, []byte("#EXT")) {
		return "", nil, false
	}
	name, attrs, _ := bytes.Cut(line[1:], []byte(":"))
	return string(name), attrs, true
}

// nextURI finds the URI line after a tag: the next line that is neither
// blank nor starts with '#'. -1 when there is none, or another
// EXT-X-STREAM-INF comes first.
func nextURI(lines [][]byte, from int) int {
	for j := from; j < len(lines); j++ {
		l := bytes.TrimSpace(lines[j])
		if len(l) == 0 {
			continue
		}
		if l[0] != '#' {
			return j
		}
		if tag, _, ok := cutTag(l); ok && (tag == "EXT-X-STREAM-INF" || tag == "EXT-X-I-FRAME-STREAM-INF" || tag == "EXT-X-MEDIA") {
			return -1
		}
	}
	return -1
}

// attr is one NAME=VALUE of an attribute list; value is raw (quotes kept).
type attr struct {
	name, value string
}

type attrList []attr

// parseAttrs reads an HLS attribute list (RFC 8216 §4.2): comma-separated
// NAME=VALUE, names of [A-Z0-9-], values quoted-strings (no '"', CR or LF
// inside) or unquoted runs without commas or quotes. Whitespace is not
// allowed; the raw text of each pair is kept.
func parseAttrs(s []byte) (attrList, error) {
	var list attrList
	for len(s) > 0 {
		eq := bytes.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("attribute without a value in %q", clip(string(s)))
		}
		name := s[:eq]
		for _, c := range name {
			if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return nil, fmt.Errorf("bad attribute name %q", clip(string(name)))
			}
		}
		rest := s[eq+1:]
		var value []byte
		if len(rest) > 0 && rest[0] == '"' {
			end := bytes.IndexByte(rest[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quoted-string in %s", name)
			}
			value, rest = rest[:end+2], rest[end+2:]
		} else {
			end := bytes.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			value, rest = rest[:end], rest[end:]
			if len(value) == 0 || bytes.ContainsAny(value, "\" \t") {
				return nil, fmt.Errorf("bad value of %s", name)
			}
		}
		list = append(list, attr{name: string(name), value: string(value)})
		if len(rest) == 0 {
			break
		}
		if rest[0] != ',' || len(rest) == 1 {
			return nil, fmt.Errorf("bad separator after %s", name)
		}
		s = rest[1:]
	}
	return list, nil
}

func (l attrList) get(name string) (string, bool) {
	for _, a := range l {
		if a.name == name {
			return a.value, true
		}
	}
	return "", false
}

// only reports whether every attribute is called name.
func (l attrList) only(name string) bool {
	for _, a := range l {
		if a.name != name {
			return false
		}
	}
	return true
}

// appendWithout writes the list back, leaving out attributes called name.
func (l attrList) appendWithout(b []byte, name string) []byte {
	first := true
	for _, a := range l {
		if a.name == name {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, a.name...)
		b = append(b, '=')
		b = append(b, a.value...)
	}
	return b
}

// validQuoted reports whether s can go inside an HLS quoted-string: no '"',
// CR, LF or other control characters.
func validQuoted(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
