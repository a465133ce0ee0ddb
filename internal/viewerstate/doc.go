package viewerstate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of what a viewer may store.
const (
	// MaxBodyBytes bounds a PUT body.
	MaxBodyBytes = 4 << 10
	// MaxStringBytes bounds a rendition, audio or subtitle choice and a setting's value.
	MaxStringBytes = 128
	// MaxSettingKeyBytes bounds a setting's name.
	MaxSettingKeyBytes = 64
	// MaxSettings bounds how many settings a viewer has.
	MaxSettings = 32
	// MaxPosition bounds a resume position, in seconds (a year).
	MaxPosition = 366 * 24 * 3600
	// MaxTitleBytes bounds a title's name.
	MaxTitleBytes = 256
	// MinViewerIDLen and MaxViewerIDLen bound a viewer id: long enough to be unguessable, since
	// the id is what lets a viewer read and write their state (see package doc).
	MinViewerIDLen, MaxViewerIDLen = 16, 128
	// MaxDocBytes bounds one stored document (a title's or the settings' copy of one region).
	MaxDocBytes = 16 << 10
)

// Reg is a last-writer-wins register: a value and the stamp of the write that set it. Of two
// copies, the one with the newer stamp wins (the region breaks a tie, see Stamp.Compare).
type Reg[T any] struct {
	V T     `json:"v"`
	S Stamp `json:"s"`
}

// Position is a resume position. Progress moves forward within an epoch; a new epoch begins with
// the viewer's explicit seek back (or an erasure). Of two copies, the later epoch wins, then the
// further position, then the newer write: so replication order can never move a position back,
// and a seek back (the newest intent) wins over progress made before it anywhere.
type Position struct {
	Seconds float64 `json:"p"`
	Epoch   Stamp   `json:"e"`
	S       Stamp   `json:"s"`
}

// compare orders two positions by the merge rule.
func (p Position) compare(o Position) int {
	if c := p.Epoch.Compare(o.Epoch); c != 0 {
		return c
	}
	if p.Seconds != o.Seconds {
		if p.Seconds < o.Seconds {
			return -1
		}
		return 1
	}
	return p.S.Compare(o.S)
}

// Doc is one region's copy of a piece of a viewer's state, as stored: a title's state, the
// viewer's settings, or the viewer's erasure. Merge joins copies; every field merges on its own.
type Doc struct {
	// At is the stamp of the write that stored this copy (replication lag is measured from it).
	At        Stamp        `json:"at"`
	Erased    *Stamp       `json:"erased,omitempty"`
	Position  *Position    `json:"position,omitempty"`
	Rendition *Reg[string] `json:"rendition,omitempty"`
	Audio     *Reg[string] `json:"audio,omitempty"`
	Subtitle  *Reg[string] `json:"subtitle,omitempty"`
	Finished  *Reg[bool]   `json:"finished,omitempty"`
	// Settings: a nil value is a removed setting (kept so that the removal wins over older values).
	Settings map[string]Reg[*string] `json:"settings,omitempty"`
}

// Merge joins copies: every field takes the winning copy's value (Reg and Position rules), the
// erasure the newest. The result does not depend on the order of the copies, nor on a copy
// appearing twice, so every region that has the same copies reads the same state. It also
// returns how many fields it had to pick between differing copies (conflicts resolved).
func Merge(docs ...Doc) (Doc, int) {
	var out Doc
	conflicts := 0
	for _, d := range docs {
		if d.At.Compare(out.At) > 0 {
			out.At = d.At
		}
		if d.Erased != nil && (out.Erased == nil || d.Erased.Compare(*out.Erased) > 0) {
			e := *d.Erased
			out.Erased = &e
		}
		if d.Position != nil {
			if out.Position == nil || d.Position.compare(*out.Position) > 0 {
				if out.Position != nil && out.Position.S.Region != d.Position.S.Region {
					conflicts++
				}
				p := *d.Position
				out.Position = &p
			}
		}
		conflicts += mergeReg(&out.Rendition, d.Rendition)
		conflicts += mergeReg(&out.Audio, d.Audio)
		conflicts += mergeReg(&out.Subtitle, d.Subtitle)
		conflicts += mergeReg(&out.Finished, d.Finished)
		for k, r := range d.Settings {
			if out.Settings == nil {
				out.Settings = map[string]Reg[*string]{}
			}
			cur, ok := out.Settings[k]
			if !ok || r.S.Compare(cur.S) > 0 {
				if ok && cur.S.Region != r.S.Region {
					conflicts++
				}
				out.Settings[k] = r
			}
		}
	}
	return out, conflicts
}

// mergeReg takes r into *dst when r is newer, and returns 1 when that replaced another region's.
func mergeReg[T any](dst **Reg[T], r *Reg[T]) int {
	if r == nil || (*dst != nil && r.S.Compare((*dst).S) <= 0) {
		return 0
	}
	n := 0
	if *dst != nil && (*dst).S.Region != r.S.Region {
		n = 1
	}
	c := *r
	*dst = &c
	return n
}

// Visible drops every field written at or before the erasure: what a reader may see. The
// erasure itself is kept.
func (d Doc) Visible() Doc {
	if d.Erased == nil {
		return d
	}
	e := *d.Erased
	gone := func(s Stamp) bool { return s.Compare(e) <= 0 }
	if d.Position != nil && gone(d.Position.S) {
		d.Position = nil
	}
	d.Rendition = dropReg(d.Rendition, gone)
	d.Audio = dropReg(d.Audio, gone)
	d.Subtitle = dropReg(d.Subtitle, gone)
	d.Finished = dropReg(d.Finished, gone)
	if d.Settings != nil {
		s := maps.Clone(d.Settings)
		maps.DeleteFunc(s, func(_ string, r Reg[*string]) bool { return gone(r.S) })
		if len(s) == 0 {
			s = nil
		}
		d.Settings = s
	}
	return d
}

func dropReg[T any](r *Reg[T], gone func(Stamp) bool) *Reg[T] {
	if r != nil && gone(r.S) {
		return nil
	}
	return r
}

// empty reports whether d holds no field (an erasure alone is empty).
func (d Doc) empty() bool {
	return d.Position == nil && d.Rendition == nil && d.Audio == nil && d.Subtitle == nil && d.Finished == nil && len(d.Settings) == 0
}

// newest is the newest stamp among d's fields (zero when none).
func (d Doc) newest() Stamp {
	var n Stamp
	take := func(s Stamp) {
		if s.Compare(n) > 0 {
			n = s
		}
	}
	if d.Position != nil {
		take(d.Position.S)
	}
	for _, r := range []*Reg[string]{d.Rendition, d.Audio, d.Subtitle} {
		if r != nil {
			take(r.S)
		}
	}
	if d.Finished != nil {
		take(d.Finished.S)
	}
	for _, r := range d.Settings {
		take(r.S)
	}
	return n
}

// stamps lists every stamp in d (for the clock to observe).
func (d Doc) stamps() []Stamp {
	s := []Stamp{d.At}
	if d.Erased != nil {
		s = append(s, *d.Erased)
	}
	if d.Position != nil {
		s = append(s, d.Position.S, d.Position.Epoch)
	}
	s = append(s, d.newest())
	return s
}

// DecodeDoc reads a stored copy (from NATS, so from another region: checked like input).
func DecodeDoc(b []byte) (Doc, error) {
	if len(b) > MaxDocBytes {
		return Doc{}, fmt.Errorf("%w: stored document of %d bytes, over %d", ErrBadInput, len(b), MaxDocBytes)
	}
	var d Doc
	if err := decodeStrict(b, &d); err != nil {
		return Doc{}, fmt.Errorf("%w: stored document: %w", ErrBadInput, err)
	}
	if d.Position != nil {
		if err := checkPosition(d.Position.Seconds); err != nil {
			return Doc{}, err
		}
	}
	for _, r := range []*Reg[string]{d.Rendition, d.Audio, d.Subtitle} {
		if r != nil {
			if err := checkString("choice", r.V); err != nil {
				return Doc{}, err
			}
		}
	}
	if len(d.Settings) > MaxSettings*4 { // removals are kept too
		return Doc{}, fmt.Errorf("%w: stored document has %d settings", ErrBadInput, len(d.Settings))
	}
	for k, r := range d.Settings {
		if err := checkSetting(k, r.V); err != nil {
			return Doc{}, err
		}
	}
	return d, nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// TitleUpdate is a PUT of a title's state: every field is optional, and only the given ones
// change.
type TitleUpdate struct {
	// Position is where the viewer is, in seconds.
	Position *float64 `json:"position"`
	// Seek marks Position as the viewer's explicit move (backwards, or a restart): it wins over
	// progress written before it, even further on. Without it a position only moves forward.
	Seek      bool    `json:"seek"`
	Rendition *string `json:"rendition"`
	Audio     *string `json:"audio"`
	Subtitle  *string `json:"subtitle"`
	Finished  *bool   `json:"finished"`
}

// SettingsUpdate is a PUT of settings: name → value, null removes the setting; settings not
// named stay as they are.
type SettingsUpdate map[string]*string

// DecodeTitleUpdate reads a PUT body of a title's state. The errors wrap ErrBadInput and say what
// to fix.
func DecodeTitleUpdate(b []byte) (TitleUpdate, error) {
	var u TitleUpdate
	if len(b) > MaxBodyBytes {
		return u, fmt.Errorf("%w: body over %d bytes", ErrBadInput, MaxBodyBytes)
	}
	if err := decodeStrict(b, &u); err != nil {
		return TitleUpdate{}, fmt.Errorf("%w: want a JSON object with position, seek, rendition, audio, subtitle, finished: %w", ErrBadInput, err)
	}
	if u.Position != nil {
		if err := checkPosition(*u.Position); err != nil {
			return TitleUpdate{}, err
		}
	} else if u.Seek {
		return TitleUpdate{}, fmt.Errorf("%w: seek without a position", ErrBadInput)
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"rendition", u.Rendition}, {"audio", u.Audio}, {"subtitle", u.Subtitle}} {
		if f.v != nil {
			if err := checkString(f.name, *f.v); err != nil {
				return TitleUpdate{}, err
			}
		}
	}
	if u.Position == nil && u.Rendition == nil && u.Audio == nil && u.Subtitle == nil && u.Finished == nil {
		return TitleUpdate{}, fmt.Errorf("%w: nothing to store: give at least one of position, rendition, audio, subtitle, finished", ErrBadInput)
	}
	return u, nil
}

// DecodeSettingsUpdate reads a PUT body of settings.
func DecodeSettingsUpdate(b []byte) (SettingsUpdate, error) {
	if len(b) > MaxBodyBytes {
		return nil, fmt.Errorf("%w: body over %d bytes", ErrBadInput, MaxBodyBytes)
	}
	var u SettingsUpdate
	if err := decodeStrict(b, &u); err != nil {
		return nil, fmt.Errorf("%w: want a JSON object of setting names to strings (null removes one): %w", ErrBadInput, err)
	}
	if len(u) == 0 {
		return nil, fmt.Errorf("%w: no settings given", ErrBadInput)
	}
	if len(u) > MaxSettings {
		return nil, fmt.Errorf("%w: %d settings, at most %d", ErrBadInput, len(u), MaxSettings)
	}
	for _, k := range slices.Sorted(maps.Keys(u)) {
		if err := checkSetting(k, u[k]); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func checkPosition(p float64) error {
	if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 || p > MaxPosition {
		return fmt.Errorf("%w: position %v: want seconds from 0 to %d", ErrBadInput, p, MaxPosition)
	}
	return nil
}

func checkSetting(k string, v *string) error {
	if k == "" || len(k) > MaxSettingKeyBytes || strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
	}) {
		return fmt.Errorf("%w: setting name %q: use 1-%d of [a-z0-9_.-]", ErrBadInput, k, MaxSettingKeyBytes)
	}
	if v != nil {
		return checkString("setting "+k, *v)
	}
	return nil
}

// checkString accepts printable UTF-8 of at most MaxStringBytes.
func checkString(what, s string) error {
	if len(s) > MaxStringBytes {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrBadInput, what, MaxStringBytes)
	}
	if !printable(s) {
		return fmt.Errorf("%w: %s: want printable UTF-8", ErrBadInput, what)
	}
	return nil
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// CheckViewer reports what is wrong with a viewer id: MinViewerIDLen to MaxViewerIDLen of
// [A-Za-z0-9_-].
func CheckViewer(id string) error {
	if len(id) < MinViewerIDLen || len(id) > MaxViewerIDLen || strings.ContainsFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		return fmt.Errorf("%w: viewer id: use %d-%d of [A-Za-z0-9_-] (a random id, such as 32 hex digits)", ErrBadInput, MinViewerIDLen, MaxViewerIDLen)
	}
	return nil
}

// CheckTitle reports what is wrong with a title: 1 to MaxTitleBytes of printable UTF-8.
func CheckTitle(t string) error {
	if t == "" || len(t) > MaxTitleBytes || !printable(t) {
		return fmt.Errorf("%w: title: use 1-%d bytes of printable UTF-8", ErrBadInput, MaxTitleBytes)
	}
	return nil
}
