package cachecontrol

import (
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// ParseCDN parses CDN-Cache-Control field lines (RFC 9213), which are a Structured Field
// Dictionary (RFC 8941 §3.2), strictly. ok is false when the lines do not parse as a
// Dictionary: RFC 9213 §2.1 then has the cache ignore the whole field, so Cache-Control
// applies instead.
//
// Within a valid Dictionary, each known directive must have the type RFC 9213 §2.1 gives it,
// and a directive of another type is ignored as if absent:
//
//   - max-age, s-maxage, stale-while-revalidate and stale-if-error are non-negative Integers
//     (saturating at MaxDelta);
//   - the other directives are Booleans: a bare name (or ?1) sets them, ?0 leaves them unset;
//   - no-cache and private may instead carry a String listing field names, read as the
//     qualified forms of Cache-Control.
//
// Parameters are ignored (RFC 9213 §2.1). Unknown directives are ignored.
func ParseCDN(values ...string) (d Directives, ok bool) {
	// An empty field is no Dictionary here (httpsfv reads it as an empty one): Cache-Control
	// applies.
	if strings.TrimSpace(strings.Join(values, "")) == "" {
		return Directives{}, false
	}
	dict, err := httpsfv.UnmarshalDictionary(values)
	if err != nil {
		return Directives{}, false
	}
	var p parser
	for _, name := range dict.Names() {
		id := lookup(name)
		m, _ := dict.Get(name)
		item, isItem := m.(httpsfv.Item)
		if id == dirUnknown || !isItem {
			continue
		}
		switch v := item.Value.(type) {
		case int64:
			if v < 0 {
				continue
			}
			dur := MaxDelta
			if v < int64(MaxDelta/time.Second) {
				dur = time.Duration(v) * time.Second
			}
			switch id {
			case dirMaxAge:
				p.d.MaxAge, p.d.HasMaxAge = dur, true
			case dirSMaxAge:
				p.d.SMaxAge, p.d.HasSMaxAge = dur, true
			case dirStaleWhileRevalidate:
				p.d.StaleWhileRevalidate, p.d.HasStaleWhileRevalidate = dur, true
			case dirStaleIfError:
				p.d.StaleIfError, p.d.HasStaleIfError = dur, true
			}
		case bool:
			if v && !takesSeconds(id) {
				p.apply(id, false, "", false)
			}
		case string:
			if id == dirNoCache || id == dirPrivate {
				p.apply(id, true, strings.TrimSpace(v), true)
			}
		}
	}
	if p.noCacheOverflow {
		p.d.NoCacheFields = nil
	}
	if p.privateOverflow {
		p.d.PrivateFields = nil
	}
	return p.d, true
}

// takesSeconds tells the directives whose value is a number of seconds.
func takesSeconds(id directive) bool {
	switch id {
	case dirMaxAge, dirSMaxAge, dirMaxStale, dirMinFresh, dirStaleWhileRevalidate, dirStaleIfError:
		return true
	}
	return false
}
