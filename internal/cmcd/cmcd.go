// Package cmcd reads Common Media Client Data (CTA-5004): what a player reports about itself
// with each request (buffer length, buffer starvation, measured throughput, session and content
// ids, start-up, object type and bitrate). Players send it as the "CMCD" query parameter or in
// the CMCD-Request, CMCD-Object, CMCD-Status and CMCD-Session headers; either way the value is
// an RFC 8941 Structured Field Dictionary, read with github.com/dunglas/httpsfv.
//
// Only the keys an operator aggregates or logs are kept (Data); others are ignored, as the
// specification asks of receivers. A value of the wrong type, or out of range, is an error: the
// caller ignores the whole report (a request is never refused for its CMCD).
package cmcd

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/dunglas/httpsfv"
)

// Limits on what is read.
const (
	// MaxLen is the longest CMCD value read (query parameter, or the headers together).
	MaxLen = 2048
	// MaxIDLen is the longest session or content id (the specification's limit is 64).
	MaxIDLen = 64
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("cmcd: invalid")

// Object types (key ot) with a meaning of their own; others read as OtherObject.
const (
	Manifest    = "m"
	Audio       = "a"
	Video       = "v"
	Muxed       = "av"
	Init        = "i"
	Caption     = "c"
	Timed       = "tt"
	Key         = "k"
	OtherObject = "o"
)

// Data is one request's report. Numbers are -1 when the key was absent; strings "" and booleans
// false. Units are the specification's: milliseconds and kilobits per second.
type Data struct {
	BufferLength    int64  // bl, ms
	Bitrate         int64  // br, encoded bitrate of the object, kbps
	Duration        int64  // d, playback duration of the object, ms
	Deadline        int64  // dl, ms
	Throughput      int64  // mtp, measured throughput, kbps
	TopBitrate      int64  // tb, kbps
	RequestedTP     int64  // rtp, requested maximum throughput, kbps
	Starved         bool   // bs: the buffer ran dry since the last request
	Startup         bool   // su: the object is needed urgently (start-up, seek)
	ObjectType      string // ot: one of the constants above
	StreamType      string // st: "v" (VOD) or "l" (live)
	StreamFormat    string // sf: "d" (DASH), "h" (HLS), "s", "o"
	SessionID       string // sid
	ContentID       string // cid
	PlaybackRate    float64
	HasPlaybackRate bool  // pr was sent
	Version         int64 // v; 1 when absent
}

// Reset empties d: every number -1, every string "".
func (d *Data) Reset() {
	*d = Data{BufferLength: -1, Bitrate: -1, Duration: -1, Deadline: -1, Throughput: -1, TopBitrate: -1, RequestedTP: -1, Version: 1}
}

// Empty reports whether no key was read.
func (d *Data) Empty() bool {
	var z Data
	z.Reset()
	return *d == z
}

// ParseQuery reads the CMCD query parameter's value (still percent-encoded, as it is in the
// raw query) into d, which it resets first.
func ParseQuery(d *Data, escaped string) error {
	d.Reset()
	if len(escaped) > 3*MaxLen {
		return fmt.Errorf("%w: CMCD parameter longer than %d bytes", ErrInvalid, MaxLen)
	}
	v, err := url.QueryUnescape(escaped)
	if err != nil {
		return fmt.Errorf("%w: CMCD parameter: %w", ErrInvalid, err)
	}
	return parse(d, v)
}

// QueryValue finds the CMCD parameter in a raw query (without "?"): its escaped value, and
// whether it is there. It does not allocate.
func QueryValue(rawQuery string) (string, bool) {
	for rawQuery != "" {
		var param string
		param, rawQuery, _ = strings.Cut(rawQuery, "&")
		if name, value, _ := strings.Cut(param, "="); name == "CMCD" {
			return value, true
		}
	}
	return "", false
}

// Headers are the four CMCD header fields' values ("" when absent).
type Headers struct{ Request, Object, Status, Session string }

// Any reports whether one of the headers was sent.
func (h Headers) Any() bool {
	return h.Request != "" || h.Object != "" || h.Status != "" || h.Session != ""
}

// ParseHeaders reads the CMCD headers into d, which it resets first. The four fields are one
// dictionary split for transport.
func ParseHeaders(d *Data, h Headers) error {
	d.Reset()
	var parts []string
	for _, v := range [...]string{h.Request, h.Object, h.Status, h.Session} {
		if strings.TrimSpace(v) != "" {
			parts = append(parts, v)
		}
	}
	v := strings.Join(parts, ",")
	if len(v) > MaxLen {
		return fmt.Errorf("%w: CMCD headers longer than %d bytes", ErrInvalid, MaxLen)
	}
	return parse(d, v)
}

// parse reads one serialised dictionary.
func parse(d *Data, v string) error {
	if len(v) > MaxLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	}
	if strings.TrimSpace(v) == "" {
		return nil
	}
	dict, err := httpsfv.UnmarshalDictionary([]string{v})
	if err != nil {
		return fmt.Errorf("%w: not a structured field dictionary: %w", ErrInvalid, err)
	}
	// A key sent twice (in two headers, say) keeps its last value, as RFC 8941 reads a
	// dictionary.
	for _, k := range dict.Names() {
		m, _ := dict.Get(k)
		it, ok := m.(httpsfv.Item)
		if !ok {
			if k == "nor" {
				continue // CMCD v2 sends a list of next objects: not read
			}
			return fmt.Errorf("%w: %s: an inner list", ErrInvalid, k)
		}
		if err := d.set(k, it.Value); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalid, k, err)
		}
	}
	return nil
}

var (
	errType  = errors.New("wrong type")
	errRange = errors.New("out of range")
)

// set reads one key; unknown keys are ignored.
func (d *Data) set(k string, v any) error {
	num := func(dst *int64) error {
		n, ok := v.(int64)
		switch {
		case !ok:
			return errType
		case n < 0:
			return errRange
		}
		*dst = n
		return nil
	}
	flag := func(dst *bool) error {
		b, ok := v.(bool)
		if !ok {
			return errType
		}
		*dst = b
		return nil
	}
	token := func(dst *string, allowed ...string) error {
		t, ok := v.(httpsfv.Token)
		if !ok {
			return errType
		}
		for _, a := range allowed {
			if string(t) == a {
				*dst = a // a constant: the value does not keep the parsed input alive
				return nil
			}
		}
		if dst != &d.ObjectType {
			return errRange
		}
		*dst = OtherObject // a type from a later version
		return nil
	}
	id := func(dst *string) error {
		s, ok := v.(string)
		switch {
		case !ok:
			return errType
		case len(s) > MaxIDLen:
			return errRange
		}
		*dst = s
		return nil
	}
	switch k {
	case "bl":
		return num(&d.BufferLength)
	case "br":
		return num(&d.Bitrate)
	case "d":
		return num(&d.Duration)
	case "dl":
		return num(&d.Deadline)
	case "mtp":
		return num(&d.Throughput)
	case "tb":
		return num(&d.TopBitrate)
	case "rtp":
		return num(&d.RequestedTP)
	case "v":
		return num(&d.Version)
	case "bs":
		return flag(&d.Starved)
	case "su":
		return flag(&d.Startup)
	case "ot":
		return token(&d.ObjectType, Manifest, Audio, Video, Muxed, Init, Caption, Timed, Key, OtherObject)
	case "st":
		return token(&d.StreamType, "v", "l")
	case "sf":
		return token(&d.StreamFormat, "d", "h", "s", "o")
	case "sid":
		return id(&d.SessionID)
	case "cid":
		return id(&d.ContentID)
	case "pr":
		switch x := v.(type) {
		case float64:
			d.PlaybackRate = x
		case int64:
			d.PlaybackRate = float64(x)
		default:
			return errType
		}
		if d.PlaybackRate < 0 {
			return errRange
		}
		d.HasPlaybackRate = true
	}
	return nil
}
