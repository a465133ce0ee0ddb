// Package cachecontrol parses Cache-Control (RFC 9111 §5.2) and CDN-Cache-Control (RFC 9213)
// header values, including the stale-while-revalidate and stale-if-error extensions of
// RFC 5861, into a Directives value.
//
// Parsing is lenient, never fails and never panics: unknown directives and malformed list
// members are skipped. The rules where the RFCs leave a choice are:
//
//   - Directive names are case-insensitive. Values may be tokens or quoted strings, so
//     max-age="60" is accepted; optional whitespace around "," and "=" is ignored. A quoted
//     string may contain commas and does not split the list; an unterminated quoted string
//     runs to the end of its header line.
//   - Several header lines combine as if comma-joined, except that a quoted string never
//     continues from one line into the next.
//   - delta-seconds values are 1*DIGIT. Values above 2^31 seconds saturate at MaxDelta
//     (RFC 9111 §1.2.2) instead of overflowing.
//   - An invalid max-age or s-maxage value (empty, negative, non-numeric) is kept as a value
//     of 0, making the response stale, as RFC 9111 §4.2.1 encourages for invalid freshness
//     information. Two occurrences of max-age (or of s-maxage) with different values also
//     yield 0: RFC 9111 §4.2.1 allows either the first value or "stale", and stale is the
//     safe reading for a shared cache.
//   - An invalid value of any other delta-seconds directive (max-stale, min-fresh,
//     stale-while-revalidate, stale-if-error) makes that occurrence ignored, as if absent.
//     For these, the first valid occurrence wins.
//   - The qualified forms no-cache="field, ..." and private="field, ..." set NoCache or
//     Private as well as the field list, so code that only looks at the booleans errs on the
//     safe side (RFC 9111 §5.2.2.4 and §5.2.2.7 allow a cache to treat them as
//     unqualified). Field lists of repeated directives are merged. Field names are
//     lower-cased; list members that are not valid tokens are dropped, and a list with no
//     valid member, or with more than MaxFields distinct members, leaves only the unqualified
//     directive.
//   - Boolean directives ignore any value they are given.
//
// CDN-Cache-Control is defined by RFC 9213 as a Structured Field Dictionary: ParseCDN reads it
// strictly, as that RFC requires, and Parse is for Cache-Control only.
package cachecontrol

import (
	"strconv"
	"strings"
	"time"
)

// MaxDelta is the largest delta-seconds value Parse produces: 2^31 seconds. Larger values
// saturate at MaxDelta (RFC 9111 §1.2.2). It is also the MaxStale of a "max-stale" directive
// without a value, which accepts any staleness.
const MaxDelta = (1 << 31) * time.Second

// MaxFields is the largest number of distinct field names kept for each of NoCacheFields and
// PrivateFields. A longer list (a sign of abuse, since the merge is quadratic) is dropped,
// leaving the unqualified no-cache or private directive, which is the more restrictive
// reading.
const MaxFields = 32

// Directives is a parsed Cache-Control (or CDN-Cache-Control) header value.
//
// Durations are always whole seconds in [0, MaxDelta]. Each duration has a Has flag telling
// whether the directive was present, since a present max-age=0 differs from an absent one.
type Directives struct {
	// MaxAge and SMaxAge are max-age (request and response) and s-maxage (response).
	MaxAge, SMaxAge       time.Duration
	HasMaxAge, HasSMaxAge bool

	// NoStore is no-store; NoCache and Private are no-cache and private, in their
	// unqualified or qualified forms (see NoCacheFields and PrivateFields).
	NoStore, NoCache, Private bool
	// Public, MustRevalidate, ProxyRevalidate, Immutable (RFC 8246) and NoTransform are the
	// response directives of the same names; OnlyIfCached is the request directive.
	Public, MustRevalidate, ProxyRevalidate, Immutable, NoTransform, OnlyIfCached bool

	// MaxStale is the request directive max-stale. Without a value it accepts any staleness
	// and MaxStale is MaxDelta.
	MaxStale    time.Duration
	HasMaxStale bool
	// MinFresh is the request directive min-fresh.
	MinFresh    time.Duration
	HasMinFresh bool

	// StaleWhileRevalidate and StaleIfError are the RFC 5861 response directives.
	StaleWhileRevalidate, StaleIfError       time.Duration
	HasStaleWhileRevalidate, HasStaleIfError bool

	// NoCacheFields and PrivateFields are the lower-cased field names listed by the qualified
	// forms no-cache="Set-Cookie, X-Foo" and private="...", without duplicates, in the order
	// first seen. They are nil for the unqualified forms.
	NoCacheFields, PrivateFields []string
}

// directive identifies a known directive name.
type directive uint8

const (
	dirUnknown directive = iota
	dirMaxAge
	dirSMaxAge
	dirNoStore
	dirNoCache
	dirPrivate
	dirPublic
	dirMustRevalidate
	dirProxyRevalidate
	dirImmutable
	dirNoTransform
	dirOnlyIfCached
	dirMaxStale
	dirMinFresh
	dirStaleWhileRevalidate
	dirStaleIfError
)

// longestName is the length of the longest known directive name, "stale-while-revalidate".
const longestName = len("stale-while-revalidate")

// lookup maps a directive name, in any case, to its identifier without allocating.
func lookup(name string) directive {
	if len(name) > longestName {
		return dirUnknown
	}
	var buf [longestName]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(name)]) {
	case "max-age":
		return dirMaxAge
	case "s-maxage":
		return dirSMaxAge
	case "no-store":
		return dirNoStore
	case "no-cache":
		return dirNoCache
	case "private":
		return dirPrivate
	case "public":
		return dirPublic
	case "must-revalidate":
		return dirMustRevalidate
	case "proxy-revalidate":
		return dirProxyRevalidate
	case "immutable":
		return dirImmutable
	case "no-transform":
		return dirNoTransform
	case "only-if-cached":
		return dirOnlyIfCached
	case "max-stale":
		return dirMaxStale
	case "min-fresh":
		return dirMinFresh
	case "stale-while-revalidate":
		return dirStaleWhileRevalidate
	case "stale-if-error":
		return dirStaleIfError
	}
	return dirUnknown
}

// Parse parses one or more Cache-Control (or CDN-Cache-Control) header values. Several
// values combine as if they were one comma-separated list. Parse never fails: see the
// package documentation for how malformed input is read.
func Parse(values ...string) Directives {
	var p parser
	for _, v := range values {
		p.parseLine(v)
	}
	if p.noCacheOverflow {
		p.d.NoCacheFields = nil
	}
	if p.privateOverflow {
		p.d.PrivateFields = nil
	}
	return p.d
}

// parser holds the state of one Parse call.
type parser struct {
	d Directives
	// noCacheOverflow and privateOverflow record a field list longer than MaxFields.
	noCacheOverflow, privateOverflow bool
}

// parseLine adds the directives of one header line.
func (p *parser) parseLine(s string) {
	i := 0
	for i < len(s) {
		// Name: up to "=" or ",".
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ',' {
			i++
		}
		name := strings.Trim(s[start:i], ows)
		if i >= len(s) || s[i] == ',' {
			p.apply(lookup(name), false, "", false)
			i++
			continue
		}
		i++ // "="
		for i < len(s) && isOWS(s[i]) {
			i++
		}
		var value string
		quoted, valid := false, true
		if i < len(s) && s[i] == '"' {
			quoted = true
			value, i, valid = readQuoted(s, i)
			// Anything but whitespace between the closing quote and the next comma
			// makes the value invalid.
			for i < len(s) && s[i] != ',' {
				if !isOWS(s[i]) {
					valid = false
				}
				i++
			}
		} else {
			start = i
			for i < len(s) && s[i] != ',' {
				i++
			}
			value = strings.Trim(s[start:i], ows)
		}
		i++ // ","
		if id := lookup(name); id != dirUnknown {
			p.apply(id, true, value, valid && (quoted || value != ""))
		}
	}
}

// apply records one directive. hasValue tells whether "=" was present; valid tells whether
// the value was well-formed (a terminated quoted string or a non-empty token).
func (p *parser) apply(id directive, hasValue bool, value string, valid bool) {
	d := &p.d
	switch id {
	case dirMaxAge:
		d.MaxAge, d.HasMaxAge = freshness(d.MaxAge, d.HasMaxAge, value, valid)
	case dirSMaxAge:
		d.SMaxAge, d.HasSMaxAge = freshness(d.SMaxAge, d.HasSMaxAge, value, valid)
	case dirNoStore:
		d.NoStore = true
	case dirNoCache:
		d.NoCache = true
		if hasValue && valid {
			d.NoCacheFields = appendFields(d.NoCacheFields, value, &p.noCacheOverflow)
		}
	case dirPrivate:
		d.Private = true
		if hasValue && valid {
			d.PrivateFields = appendFields(d.PrivateFields, value, &p.privateOverflow)
		}
	case dirPublic:
		d.Public = true
	case dirMustRevalidate:
		d.MustRevalidate = true
	case dirProxyRevalidate:
		d.ProxyRevalidate = true
	case dirImmutable:
		d.Immutable = true
	case dirNoTransform:
		d.NoTransform = true
	case dirOnlyIfCached:
		d.OnlyIfCached = true
	case dirMaxStale:
		if d.HasMaxStale {
			return
		}
		if !hasValue {
			d.MaxStale, d.HasMaxStale = MaxDelta, true
			return
		}
		d.MaxStale, d.HasMaxStale = deltaSeconds(value, valid)
	case dirMinFresh:
		if !d.HasMinFresh {
			d.MinFresh, d.HasMinFresh = deltaSeconds(value, valid && hasValue)
		}
	case dirStaleWhileRevalidate:
		if !d.HasStaleWhileRevalidate {
			d.StaleWhileRevalidate, d.HasStaleWhileRevalidate = deltaSeconds(value, valid && hasValue)
		}
	case dirStaleIfError:
		if !d.HasStaleIfError {
			d.StaleIfError, d.HasStaleIfError = deltaSeconds(value, valid && hasValue)
		}
	}
}

// freshness merges one occurrence of max-age or s-maxage into the current state: an invalid
// value, or a value that differs from an earlier one, yields 0 (stale).
func freshness(cur time.Duration, has bool, value string, valid bool) (time.Duration, bool) {
	v, ok := deltaSeconds(value, valid)
	if !ok || (has && v != cur) {
		return 0, true
	}
	return v, true
}

// deltaSeconds parses a delta-seconds value (1*DIGIT), saturating at MaxDelta. ok is false
// when valid is false or the value is not 1*DIGIT.
func deltaSeconds(s string, valid bool) (d time.Duration, ok bool) {
	if !valid || s == "" {
		return 0, false
	}
	const limit = int64(MaxDelta / time.Second)
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < limit {
			n = n*10 + int64(c-'0')
		}
	}
	n = min(n, limit)
	return time.Duration(n) * time.Second, true
}

// appendFields adds the valid, lower-cased field names of a comma-separated list to dst,
// skipping names already present. It sets *overflow instead of growing dst past MaxFields.
func appendFields(dst []string, list string, overflow *bool) []string {
	for len(list) > 0 && !*overflow {
		var f string
		if i := indexByte(list, ','); i >= 0 {
			f, list = list[:i], list[i+1:]
		} else {
			f, list = list, ""
		}
		f = strings.Trim(f, ows)
		if f == "" || !isToken(f) {
			continue
		}
		f = lowerASCII(f)
		if contains(dst, f) {
			continue
		}
		if len(dst) == MaxFields {
			*overflow = true
			break
		}
		dst = append(dst, f)
	}
	return dst
}

// readQuoted reads the quoted-string starting at s[i] == '"'. It returns the unescaped
// content, the index just past the closing quote, and whether the string was terminated.
// It allocates only when the string contains a quoted-pair.
func readQuoted(s string, i int) (value string, next int, ok bool) {
	start := i + 1
	for j := start; j < len(s); j++ {
		switch s[j] {
		case '"':
			return s[start:j], j + 1, true
		case '\\':
			v, n, ok := unescape(s[start:])
			return v, start + n, ok
		}
	}
	return s[start:], len(s), false
}

// unescape reads a quoted-string body containing quoted-pairs, up to its closing quote. s
// starts just after the opening quote; the returned index is just past the closing quote.
func unescape(s string) (string, int, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return string(b), i + 1, true
		case '\\':
			if i+1 < len(s) {
				i++
				b = append(b, s[i])
			}
		default:
			b = append(b, c)
		}
	}
	return string(b), len(s), false
}

// String returns the directives as a canonical header value: known directives in a fixed
// order, durations in whole seconds (negative ones as 0, longer ones as MaxDelta), field
// lists quoted. A max-stale of MaxDelta or more is written without a value.
func (d Directives) String() string {
	b := make([]byte, 0, 64)
	b = appendList(b, "public", d.Public)
	if d.Private {
		b = appendQualified(b, "private", d.PrivateFields)
	}
	if d.NoCache {
		b = appendQualified(b, "no-cache", d.NoCacheFields)
	}
	b = appendList(b, "no-store", d.NoStore)
	b = appendList(b, "no-transform", d.NoTransform)
	b = appendList(b, "must-revalidate", d.MustRevalidate)
	b = appendList(b, "proxy-revalidate", d.ProxyRevalidate)
	b = appendList(b, "immutable", d.Immutable)
	b = appendDelta(b, "max-age", d.MaxAge, d.HasMaxAge)
	b = appendDelta(b, "s-maxage", d.SMaxAge, d.HasSMaxAge)
	if d.HasMaxStale && d.MaxStale >= MaxDelta {
		b = appendList(b, "max-stale", true)
	} else {
		b = appendDelta(b, "max-stale", d.MaxStale, d.HasMaxStale)
	}
	b = appendDelta(b, "min-fresh", d.MinFresh, d.HasMinFresh)
	b = appendList(b, "only-if-cached", d.OnlyIfCached)
	b = appendDelta(b, "stale-while-revalidate", d.StaleWhileRevalidate, d.HasStaleWhileRevalidate)
	b = appendDelta(b, "stale-if-error", d.StaleIfError, d.HasStaleIfError)
	return string(b)
}

// appendList appends ", name" (or just name at the start) when present.
func appendList(b []byte, name string, present bool) []byte {
	if !present {
		return b
	}
	if len(b) > 0 {
		b = append(b, ", "...)
	}
	return append(b, name...)
}

// appendDelta appends name=seconds when present.
func appendDelta(b []byte, name string, d time.Duration, present bool) []byte {
	if !present {
		return b
	}
	b = appendList(b, name, true)
	b = append(b, '=')
	d = min(max(d, 0), MaxDelta)
	return strconv.AppendInt(b, int64(d/time.Second), 10)
}

// appendQualified appends name or name="f1, f2". Field names that are not tokens are
// skipped so the output always parses back.
func appendQualified(b []byte, name string, fields []string) []byte {
	b = appendList(b, name, true)
	n := 0
	for _, f := range fields {
		if !isToken(f) {
			continue
		}
		if n == 0 {
			b = append(b, `="`...)
		} else {
			b = append(b, ", "...)
		}
		b = append(b, f...)
		n++
	}
	if n > 0 {
		b = append(b, '"')
	}
	return b
}

// ows is optional whitespace (RFC 9110 section 5.6.3): spaces and tabs, for strings.Trim.
const ows = " \t"

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTChar(s[i]) {
			return false
		}
	}
	return true
}

func isTChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// lowerASCII lower-cases s, returning s itself when it has no upper-case letter.
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
