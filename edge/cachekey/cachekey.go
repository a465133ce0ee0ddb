// Package cachekey maps a request's path and query to the normalised path and query that
// the edge uses as its cache key and fetches from the origin. Two spellings of one object
// get one key, and no spelling can name anything outside the origin's root.
//
// Path normalisation (RFC 3986 §6.2.2, in its order):
//
//   - Percent-encodings of unreserved characters (ALPHA DIGIT "-" "." "_" "~") are decoded;
//     every other percent-encoding keeps its encoding with upper-case hex digits. "%2F" stays
//     encoded: it is part of a segment name, never a separator.
//   - Bytes that may not appear raw in a path (space, '"', '#', '<', '>', '?', '[', '\', ']',
//     '^', '`', '{', '|', '}', and bytes from 0x80 on) are percent-encoded, so "/a b" and
//     "/a%20b" share a key and a path never holds a raw "?" that would blur Key.
//   - Empty segments are removed ("//" becomes "/"), then "." and ".." segments, including
//     ones spelled with "%2E", are resolved. A ".." that would climb above the root is
//     ErrDotDot. A trailing slash is kept, and a path ending in "." or ".." gets one
//     (RFC 3986 §5.2.4): "/a/b/.." is "/a/".
//
// Backslashes and encoded separators: a backslash is an ordinary character of a segment,
// encoded as "%5C", and never a separator, so "/a\b" is the segment "a%5Cb". Some origins do
// treat "\" or a decoded "%2F" as a separator, or drop what follows ";" in a segment (Tomcat
// path parameters); for them a segment such as "..%5C", "a%2F..%2Fb" or "..;x" could still
// climb. Normalize therefore rejects, with ErrDotDot, any segment that holds a ".." piece
// once split at "%2F", "%5C" (raw or encoded backslash), ";" and "%3B", wherever the segment
// is, even where a plain reading would stay inside the root. A double-encoded "%252E%252E"
// is left alone: an origin decodes once at most.
//
// Query normalisation: parameters (separated by "&", empty ones dropped) are split at their
// first "=" into name and value, and both are encoded like path segments, except that "/"
// and "?" stay raw. Ignored parameters are removed and the rest sorted by name, then value
// (a parameter without "=" before one with an empty value). "+" and "%20" stay distinct, as
// do "a" and "a=", and repeated parameters are all kept: some origins tell them apart.
//
// Raw or percent-encoded control characters (0x00-0x1F, 0x7F) anywhere are ErrControl; a
// "%" not followed by two hex digits is ErrBadEscape.
package cachekey

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxLen is the largest len(path)+len(query) Normalize accepts, both for its input and its
// output (encoding raw bytes can lengthen a path).
const MaxLen = 8 << 10

// Errors returned by Normalize, each a reason fit for the body of a 400 response. Normalize
// wraps them with context; test them with errors.Is.
var (
	// ErrDotDot reports a ".." segment (also spelled "%2E%2E") that would climb above the
	// root, or a ".." hidden behind an encoded slash, a backslash or a ";".
	ErrDotDot = errors.New(`".." segment could climb above the root`)
	// ErrBadEscape reports a "%" not followed by two hexadecimal digits.
	ErrBadEscape = errors.New("malformed percent-escape")
	// ErrControl reports a control character, raw or percent-encoded ("%00").
	ErrControl = errors.New("control character")
	// ErrNotAbsolute reports a path that does not start with "/".
	ErrNotAbsolute = errors.New(`path does not start with "/"`)
	// ErrTooLong reports a path and query longer than MaxLen bytes.
	ErrTooLong = errors.New("path and query too long")
	// ErrConfig reports an invalid Config given to New.
	ErrConfig = errors.New("invalid cache key config")
)

// Wrapped errors, made once so that rejecting a request does not allocate.
var (
	errPathDotDot    = fmt.Errorf("path: %w", ErrDotDot)
	errHiddenDotDot  = fmt.Errorf(`path: behind an encoded "/", a "\" or a ";": %w`, ErrDotDot)
	errPathEscape    = fmt.Errorf("path: %w", ErrBadEscape)
	errPathControl   = fmt.Errorf("path: %w", ErrControl)
	errQueryEscape   = fmt.Errorf("query: %w", ErrBadEscape)
	errQueryControl  = fmt.Errorf("query: %w", ErrControl)
	errNotAbsolute   = fmt.Errorf("path: %w", ErrNotAbsolute)
	errInputTooLong  = fmt.Errorf("path and query: longer than %d bytes: %w", MaxLen, ErrTooLong)
	errOutputTooLong = fmt.Errorf("normalised path and query: longer than %d bytes: %w", MaxLen, ErrTooLong)
)

// Config configures a Normalizer.
type Config struct {
	// IgnoreParams are query parameter names dropped from the key and from the origin
	// request (signed-URL tokens, player session ids). Names are exact and case-sensitive,
	// and are compared after normalisation (so "utm%5Fsource" matches "utm_source"). A
	// trailing "*" makes a prefix wildcard: "utm_*" drops utm_source and utm_medium. A "*"
	// elsewhere, an empty name, a lone "*" (use DropQuery), or a name holding "&", "=", a
	// control character or a malformed escape is an error.
	IgnoreParams []string
	// DropQuery drops the whole query from the key and the origin request (objects in S3
	// have no query). The zero value keeps the query.
	DropQuery bool
}

// Normalizer normalises request paths and queries. It is built once by New, never changes,
// and is safe for concurrent use. The zero Normalizer keeps every query parameter.
type Normalizer struct {
	exact     map[string]struct{}
	prefixes  []string
	dropQuery bool
	// maxLen overrides MaxLen when not 0; tests lower it so that fuzzing reaches the length
	// checks with short inputs.
	maxLen int
}

// New validates cfg and builds a Normalizer from it. Errors wrap ErrConfig.
func New(cfg Config) (*Normalizer, error) {
	n := &Normalizer{dropQuery: cfg.DropQuery}
	for _, p := range cfg.IgnoreParams {
		name, wildcard := strings.CutSuffix(p, "*")
		if name == "" || strings.Contains(name, "*") {
			return nil, fmt.Errorf("ignore param %q: want a name or a name followed by \"*\": %w", p, ErrConfig)
		}
		if strings.ContainsAny(name, "&=") {
			return nil, fmt.Errorf("ignore param %q: \"&\" and \"=\" cannot be in a name: %w", p, ErrConfig)
		}
		norm, err := appendEncoded(nil, name, queryLo, queryHi)
		if err != nil {
			return nil, fmt.Errorf("ignore param %q: %w: %w", p, err, ErrConfig)
		}
		if wildcard {
			n.prefixes = append(n.prefixes, string(norm))
			continue
		}
		if n.exact == nil {
			n.exact = make(map[string]struct{})
		}
		n.exact[string(norm)] = struct{}{}
	}
	return n, nil
}

// Normalize returns the normalised path and query of a request. rawPath is the path as sent
// (still percent-encoded, such as url.URL.EscapedPath returns); rawQuery the query without
// "?". The normalised path starts with "/" and never holds "//", "/./", "/../" or a control
// character; the query is "" when no parameter remains. When both are already normal they
// are returned as given, without allocating. See the package documentation for the rules.
func (n *Normalizer) Normalize(rawPath, rawQuery string) (path, query string, err error) {
	limit := MaxLen
	if n.maxLen != 0 {
		limit = n.maxLen
	}
	if len(rawPath)+len(rawQuery) > limit {
		return "", "", errInputTooLong
	}
	if path, err = normalizePath(rawPath); err != nil {
		return "", "", err
	}
	if !n.dropQuery {
		if query, err = n.normalizeQuery(rawQuery); err != nil {
			return "", "", err
		}
	}
	if len(path)+len(query) > limit {
		return "", "", errOutputTooLong
	}
	return path, query, nil
}

// Key joins a normalised path and query into a cache key: path, or path + "?" + query.
func Key(path, query string) string {
	if query == "" {
		return path
	}
	return path + "?" + query
}

// Character classes as bit sets: bit c of lo for bytes 0-63, bit c-64 of hi for 64-127.
// Bytes from 128 on are in no class.
const (
	unreservedLo = (1<<10-1)<<'0' | 1<<'-' | 1<<'.'
	unreservedHi = (1<<26-1)<<('A'-64) | (1<<26-1)<<('a'-64) | 1<<('_'-64) | 1<<('~'-64)
	subDelimsLo  = 1<<'!' | 1<<'$' | 1<<'&' | 1<<'\'' | 1<<'(' | 1<<')' | 1<<'*' | 1<<'+' | 1<<',' | 1<<';' | 1<<'='

	// segmentLo/Hi are the bytes a path segment holds raw: pchar without pct-encoded.
	segmentLo = unreservedLo | subDelimsLo | 1<<':'
	segmentHi = unreservedHi | 1<<('@'-64)
	// queryLo/Hi are the bytes a query parameter's name or value holds raw: pchar, "/" and
	// "?", without the "&" that separates parameters. A name never holds "=", since the
	// first "=" ends it.
	queryLo = (segmentLo | 1<<'/' | 1<<'?') &^ (1 << '&')
	queryHi = segmentHi
)

// in reports whether c is in the class lo/hi.
func in(c byte, lo, hi uint64) bool {
	if c < 64 {
		return lo&(1<<c) != 0
	}
	if c < 128 {
		return hi&(1<<(c-64)) != 0
	}
	return false
}

func isControl(c byte) bool { return c < 0x20 || c == 0x7f }

// unhex returns the value of a hexadecimal digit, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

const upperHex = "0123456789ABCDEF"

// appendEncoded appends s to dst in normal encoding for the raw class lo/hi. Its errors are
// the bare ErrBadEscape and ErrControl.
func appendEncoded(dst []byte, s string, lo, hi uint64) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return dst, ErrBadEscape
			}
			h, l := unhex(s[i+1]), unhex(s[i+2])
			if h < 0 || l < 0 {
				return dst, ErrBadEscape
			}
			i += 2
			c = byte(h<<4 | l)
			if isControl(c) {
				return dst, ErrControl
			}
			if in(c, unreservedLo, unreservedHi) {
				dst = append(dst, c)
			} else {
				dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
			}
		case isControl(c):
			return dst, ErrControl
		case in(c, lo, hi):
			dst = append(dst, c)
		default:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst, nil
}

// isNormalEncoded reports whether appendEncoded(nil, s, lo, hi) would return s unchanged.
func isNormalEncoded(s string, lo, hi uint64) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if !in(c, lo, hi) {
				return false
			}
			continue
		}
		if i+2 >= len(s) {
			return false
		}
		h, l := s[i+1], s[i+2]
		if !isUpperHex(h) || !isUpperHex(l) {
			return false
		}
		c = byte(unhex(h)<<4 | unhex(l))
		if isControl(c) || in(c, unreservedLo, unreservedHi) {
			return false
		}
		i += 2
	}
	return true
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// hiddenDotDot reports whether a normalised segment holds a ".." piece once split at "%2F",
// "%5C", ";" and "%3B".
func hiddenDotDot(seg string) bool {
	for seg != "" {
		piece, rest := seg, ""
		for i := 0; i < len(seg); i++ {
			if seg[i] == ';' {
				piece, rest = seg[:i], seg[i+1:]
				break
			}
			if seg[i] == '%' && i+2 < len(seg) && (seg[i+1:i+3] == "2F" || seg[i+1:i+3] == "5C" || seg[i+1:i+3] == "3B") {
				piece, rest = seg[:i], seg[i+3:]
				break
			}
		}
		if piece == ".." {
			return true
		}
		seg = rest
	}
	return false
}

// isNormalPath reports whether normalizePath(p) would return p unchanged.
func isNormalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		seg := p[start:i]
		switch {
		case seg == "":
			if i != len(p) {
				return false // "//"
			}
		case seg == "." || seg == "..":
			return false
		case !isNormalEncoded(seg, segmentLo, segmentHi) || hiddenDotDot(seg):
			return false
		}
		start = i + 1
	}
	return true
}

// normalizePath normalises a path; see the package documentation.
func normalizePath(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", errNotAbsolute
	}
	if isNormalPath(p) {
		return p, nil
	}
	out := make([]byte, 0, len(p)+len(p)/2)
	trailing := false
	for rest := p[1:]; ; {
		raw, tail, more := strings.Cut(rest, "/")
		mark := len(out)
		out = append(out, '/')
		var err error
		if out, err = appendEncoded(out, raw, segmentLo, segmentHi); err != nil {
			if err == ErrControl {
				return "", errPathControl
			}
			return "", errPathEscape
		}
		seg := out[mark+1:]
		trailing = false
		switch string(seg) {
		case "", ".":
			out = out[:mark]
			trailing = true
		case "..":
			if mark == 0 {
				return "", errPathDotDot
			}
			out = out[:lastSlash(out[:mark])]
			trailing = true
		default:
			if hiddenDotDot(string(seg)) {
				return "", errHiddenDotDot
			}
		}
		if !more {
			break
		}
		rest = tail
	}
	if trailing || len(out) == 0 {
		out = append(out, '/')
	}
	if string(out) == p {
		return p, nil
	}
	return string(out), nil
}

// lastSlash returns the index of the last "/" in b, which starts with one.
func lastSlash(b []byte) int {
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == '/' {
			return i
		}
	}
	return 0
}

// ignored reports whether the normalised parameter name is to be dropped.
func (n *Normalizer) ignored(name string) bool {
	if _, ok := n.exact[name]; ok {
		return true
	}
	for _, p := range n.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// compareParams orders parameters by name, then by the rest ("" or "=value").
func compareParams(name1, rest1, name2, rest2 string) int {
	if c := strings.Compare(name1, name2); c != 0 {
		return c
	}
	return strings.Compare(rest1, rest2)
}

// isNormalQuery reports whether normalizeQuery(q) would return q unchanged.
func (n *Normalizer) isNormalQuery(q string) bool {
	if q == "" {
		return true
	}
	var prevName, prevRest string
	for i := 0; ; i++ {
		param, tail, more := strings.Cut(q, "&")
		if param == "" {
			return false
		}
		name, value, hasValue := strings.Cut(param, "=")
		rest := param[len(name):]
		if !isNormalEncoded(name, queryLo, queryHi) || hasValue && !isNormalEncoded(value, queryLo, queryHi) {
			return false
		}
		if n.ignored(name) || i > 0 && compareParams(prevName, prevRest, name, rest) > 0 {
			return false
		}
		if !more {
			return true
		}
		prevName, prevRest, q = name, rest, tail
	}
}

// param locates a normalised parameter in a buffer: name is buf[start:eq], and the rest
// ("" or "=value") buf[eq:end].
type param struct{ start, eq, end int }

// normalizeQuery normalises a query; see the package documentation.
func (n *Normalizer) normalizeQuery(q string) (string, error) {
	if n.isNormalQuery(q) {
		return q, nil
	}
	buf := make([]byte, 0, len(q)+len(q)/2)
	var params []param
	for rest := q; ; {
		raw, tail, more := strings.Cut(rest, "&")
		if raw != "" {
			name, value, hasValue := strings.Cut(raw, "=")
			p := param{start: len(buf)}
			var err error
			buf, err = appendEncoded(buf, name, queryLo, queryHi)
			p.eq = len(buf)
			if err == nil && hasValue {
				buf = append(buf, '=')
				buf, err = appendEncoded(buf, value, queryLo, queryHi)
			}
			if err != nil {
				if err == ErrControl {
					return "", errQueryControl
				}
				return "", errQueryEscape
			}
			p.end = len(buf)
			if n.ignored(string(buf[p.start:p.eq])) {
				buf = buf[:p.start]
			} else {
				params = append(params, p)
			}
		}
		if !more {
			break
		}
		rest = tail
	}
	if len(params) == 0 {
		return "", nil
	}
	slices.SortFunc(params, func(a, b param) int {
		if c := bytes.Compare(buf[a.start:a.eq], buf[b.start:b.eq]); c != 0 {
			return c
		}
		return bytes.Compare(buf[a.eq:a.end], buf[b.eq:b.end])
	})
	out := make([]byte, 0, len(buf)+len(params))
	for i, p := range params {
		if i > 0 {
			out = append(out, '&')
		}
		out = append(out, buf[p.start:p.end]...)
	}
	if string(out) == q {
		return q, nil
	}
	return string(out), nil
}
