package manifest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrNotMPD: the input's root element is not MPD.
var ErrNotMPD = errors.New("manifest: not an MPD")

// ServiceLocation is a BaseURL to add to an MPD for one pathway.
type ServiceLocation struct {
	// ID is the BaseURL@serviceLocation, the pathway's ID in
	// PATHWAY-PRIORITY. See ValidPathwayID.
	ID string
	// BaseURL is the location's base URL (usually absolute, e.g.
	// "https://edge-eu.example.net/vod/abc/"); the MPD's relative segment
	// URLs resolve against it.
	BaseURL string
}

// InjectDASH adds content steering to an MPD:
//
//   - one MPD-level <BaseURL serviceLocation="ID">BaseURL</BaseURL> per
//     location, in the given order, before the MPD's own MPD-level BaseURLs
//     if it has any (a player without steering takes the first BaseURL, so
//     list the default location first);
//   - <ContentSteering defaultServiceLocation="...">serverURI</ContentSteering>
//     after the MPD-level BaseURLs, before the Period (the position the
//     specs' examples use).
//
// The MPD is not re-serialised: the elements are inserted as text at offsets
// found by encoding/xml, indented like their neighbours, so the rest of the
// document (comments, namespaces, attribute order, whitespace) is kept byte
// for byte. An MPD whose root element has a namespace prefix gets the same
// prefix on the new elements. BaseURL elements already in the MPD are left
// as they are. defaultServiceLocation must be the ID of a location given or
// a serviceLocation already in the MPD. The result is a new slice.
func InjectDASH(mpd []byte, serverURI, defaultServiceLocation string, locations []ServiceLocation) ([]byte, error) {
	out, _, err := injectDASH(mpd, serverURI, defaultServiceLocation, locations)
	return out, err
}

// insertion is text put into the MPD at an offset of the input.
type insertion struct {
	at   int
	text []byte
}

func injectDASH(mpd []byte, serverURI, defaultServiceLocation string, locations []ServiceLocation) ([]byte, []insertion, error) {
	if len(mpd) > MaxInputSize {
		return nil, nil, ErrTooLarge
	}
	if !validURIText(serverURI) {
		return nil, nil, fmt.Errorf("%w: steering server URL %q", ErrInvalidInput, serverURI)
	}
	if !ValidPathwayID(defaultServiceLocation) {
		return nil, nil, fmt.Errorf("%w: %w: defaultServiceLocation %q", ErrInvalidInput, ErrInvalidPathway, defaultServiceLocation)
	}
	known := map[string]bool{}
	for _, l := range locations {
		if !ValidPathwayID(l.ID) {
			return nil, nil, fmt.Errorf("%w: %w: serviceLocation %q", ErrInvalidInput, ErrInvalidPathway, l.ID)
		}
		if known[l.ID] {
			return nil, nil, fmt.Errorf("%w: serviceLocation %q given twice", ErrInvalidInput, l.ID)
		}
		if !validURIText(l.BaseURL) {
			return nil, nil, fmt.Errorf("%w: BaseURL %q", ErrInvalidInput, l.BaseURL)
		}
		known[l.ID] = true
	}

	s, err := scanMPD(mpd)
	if err != nil {
		return nil, nil, err
	}
	for id := range s.serviceLocations {
		known[id] = true
	}
	if !known[defaultServiceLocation] {
		return nil, nil, fmt.Errorf("%w: defaultServiceLocation %q", ErrUnknownPathway, defaultServiceLocation)
	}

	var ins []insertion
	if len(locations) > 0 {
		at, sep := s.steeringAt, s.steeringSep
		if s.baseURLAt >= 0 {
			at, sep = s.baseURLAt, s.baseURLSep
		}
		var b []byte
		for _, l := range locations {
			b = append(b, '<')
			b = append(b, s.prefix...)
			b = append(b, `BaseURL serviceLocation="`...)
			b = appendEscaped(b, l.ID)
			b = append(b, `">`...)
			b = appendEscaped(b, l.BaseURL)
			b = append(b, "</"...)
			b = append(b, s.prefix...)
			b = append(b, "BaseURL>"...)
			b = append(b, sep...)
		}
		ins = append(ins, insertion{at: at, text: b})
	}
	var b []byte
	b = append(b, '<')
	b = append(b, s.prefix...)
	b = append(b, `ContentSteering defaultServiceLocation="`...)
	b = appendEscaped(b, defaultServiceLocation)
	b = append(b, `">`...)
	b = appendEscaped(b, serverURI)
	b = append(b, "</"...)
	b = append(b, s.prefix...)
	b = append(b, "ContentSteering>"...)
	b = append(b, s.steeringSep...)
	ins = append(ins, insertion{at: s.steeringAt, text: b})

	size := len(mpd)
	for _, in := range ins {
		size += len(in.text)
	}
	out := make([]byte, 0, size)
	last := 0
	for _, in := range ins { // offsets ascend: BaseURLs never go after ContentSteering
		out = append(out, mpd[last:in.at]...)
		out = append(out, in.text...)
		last = in.at
	}
	out = append(out, mpd[last:]...)
	return out, ins, nil
}

// mpdScan is what injectDASH needs to know about an MPD.
type mpdScan struct {
	prefix           string // the root's namespace prefix with its colon, or ""
	baseURLAt        int    // offset of the first MPD-level BaseURL, or -1
	baseURLSep       string
	steeringAt       int // offset of the first MPD child that is not ProgramInformation or BaseURL
	steeringSep      string
	serviceLocations map[string]bool
}

// scanMPD reads the whole document with encoding/xml (strict), so only
// well-formed XML gets through.
func scanMPD(mpd []byte) (mpdScan, error) {
	s := mpdScan{baseURLAt: -1, steeringAt: -1, serviceLocations: map[string]bool{}}
	if !utf8.Valid(mpd) {
		return s, fmt.Errorf("%w: not UTF-8", ErrMalformed)
	}
	dec := xml.NewDecoder(bytes.NewReader(mpd))
	dec.Strict = true
	depth, roots := 0, 0
	for {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			local := t.Name.Local
			if depth == 0 {
				roots++
				if roots > 1 {
					return s, fmt.Errorf("%w: more than one root element", ErrMalformed)
				}
				if local != "MPD" {
					return s, fmt.Errorf("%w: root element %q", ErrNotMPD, local)
				}
				s.prefix = rawPrefix(mpd[off:])
			}
			if local == "ContentSteering" {
				return s, ErrAlreadySteered
			}
			if depth == 1 {
				switch local {
				case "BaseURL":
					if s.baseURLAt < 0 && s.steeringAt < 0 {
						s.baseURLAt, s.baseURLSep = off, separator(mpd, off)
					}
				case "ProgramInformation":
				default:
					if s.steeringAt < 0 {
						s.steeringAt, s.steeringSep = off, separator(mpd, off)
					}
				}
			}
			if local == "BaseURL" {
				for _, a := range t.Attr {
					if a.Name.Local == "serviceLocation" && a.Value != "" {
						s.serviceLocations[a.Value] = true
					}
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return s, fmt.Errorf("%w: text outside the root element", ErrMalformed)
			}
		}
	}
	if roots == 0 {
		return s, fmt.Errorf("%w: no root element", ErrNotMPD)
	}
	if s.steeringAt < 0 {
		return s, fmt.Errorf("%w: MPD has no Period", ErrMalformed)
	}
	return s, nil
}

// rawPrefix returns "p:" when the start tag at b is "<p:Name ...", else "".
func rawPrefix(b []byte) string {
	if len(b) == 0 || b[0] != '<' {
		return ""
	}
	end := bytes.IndexAny(b, " \t\r\n/>")
	if end < 0 {
		return ""
	}
	if i := bytes.IndexByte(b[1:end], ':'); i >= 0 {
		return string(b[1 : i+2])
	}
	return ""
}

// separator is what goes after an element inserted at off, so that the
// element at off keeps its place: a newline and off's indentation when off
// starts a line, else nothing.
func separator(b []byte, off int) string {
	i := off
	for i > 0 && (b[i-1] == ' ' || b[i-1] == '\t') {
		i--
	}
	if i > 0 && b[i-1] == '\n' {
		if i > 1 && b[i-2] == '\r' {
			return "\r\n" + string(b[i:off])
		}
		return "\n" + string(b[i:off])
	}
	return ""
}

func appendEscaped(b []byte, s string) []byte {
	var buf bytes.Buffer
	_ = xml.EscapeText(&buf, []byte(s)) // writes to a bytes.Buffer never fail
	return append(b, buf.Bytes()...)
}

// validURIText reports whether s is a usable URL text: non-empty UTF-8
// without control characters or spaces.
func validURIText(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return false
		}
	}
	return true
}
