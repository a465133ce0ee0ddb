// Package byterange implements HTTP range requests (RFC 9110 §14): parsing a Range header
// against a representation's size, parsing and formatting Content-Range, and writing
// multipart/byteranges bodies.
//
// Parse's policy where RFC 9110 §14.2 leaves a server free to ignore or reject a range set:
//
//   - A Range header with more than MaxRanges range-specs is rejected with ErrInvalid, so the
//     caller ignores it and answers 200 with the whole representation.
//   - Otherwise, unsatisfiable ranges are dropped. If the remaining ranges neither overlap nor
//     touch, they are returned in the order the client listed them (RFC 9110 §14.6 asks for
//     that order in a multipart response). If any two overlap or are adjacent, all ranges are
//     coalesced: sorted by start, and overlapping or adjacent ranges merged. The result never
//     covers a byte twice, so a request such as "bytes=0-,0-,0-" cannot multiply the bytes
//     the edge sends; it becomes a single range.
package byterange

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Errors returned by Parse and ParseContentRange.
var (
	// ErrInvalid reports a Range header that is syntactically invalid, does not use the
	// "bytes" unit, or lists more than MaxRanges ranges; RFC 9110 §14.2 says to ignore such a
	// header and answer 200. ParseContentRange also returns it for a malformed Content-Range.
	ErrInvalid = errors.New("invalid byte range")
	// ErrUnsatisfiable reports a valid Range header none of whose ranges overlaps the
	// representation; the answer is 416 with Content-Range: bytes */size (see
	// UnsatisfiedContentRange).
	ErrUnsatisfiable = errors.New("range not satisfiable")
)

// Errors with context, made once so that the error paths of the parsers do not allocate.
// Each wraps ErrInvalid or ErrUnsatisfiable, and is compared with errors.Is.
var (
	errUnit         = fmt.Errorf("range: unit is not bytes: %w", ErrInvalid)
	errEmpty        = fmt.Errorf("range: no range-spec: %w", ErrInvalid)
	errSyntax       = fmt.Errorf("range: malformed range-spec: %w", ErrInvalid)
	errTooMany      = fmt.Errorf("range: more than %d ranges: %w", MaxRanges, ErrInvalid)
	errNoOverlap    = fmt.Errorf("range: no range overlaps the representation: %w", ErrUnsatisfiable)
	errContentRange = fmt.Errorf("content-range: malformed value: %w", ErrInvalid)
)

// MaxRanges is the largest number of range-specs Parse accepts in one Range header. Empty
// list elements ("bytes=0-1,,2-3") do not count.
const MaxRanges = 32

// Range is a range of bytes, Start and End inclusive, resolved against a representation's
// size: 0 <= Start <= End < size.
type Range struct{ Start, End int64 }

// Len returns the number of bytes in r.
func (r Range) Len() int64 { return r.End - r.Start + 1 }

// Parse resolves a Range header value against a representation of the given size (a size
// of 0 or less makes every range unsatisfiable). It returns the ranges to send, at most
// MaxRanges of them, each within [0,size).
//
// It accepts "bytes=" in any case, int-ranges ("0-499", "9500-"), suffix ranges ("-500"),
// and lists of them separated by commas with optional whitespace. Ends past the
// representation are clipped. The error wraps ErrInvalid (ignore the header, answer 200) or
// ErrUnsatisfiable (answer 416); test it with errors.Is. See the package documentation for
// how overlapping and adjacent ranges are coalesced.
func Parse(header string, size int64) ([]Range, error) {
	const unit = "bytes="
	if len(header) < len(unit) || !equalFoldASCII(header[:len(unit)], unit) {
		return nil, errUnit
	}
	set := header[len(unit):]

	// First pass: check the syntax and count the satisfiable ranges, so the result is one
	// allocation of the right size.
	specs, satisfiable := 0, 0
	for rest := set; ; {
		var elem string
		elem, rest = nextElement(rest)
		if elem != "" {
			specs++
			if specs > MaxRanges {
				return nil, errTooMany
			}
			_, ok, err := resolve(elem, size)
			if err != nil {
				return nil, err
			}
			if ok {
				satisfiable++
			}
		}
		if rest == "" {
			break
		}
	}
	if specs == 0 {
		return nil, errEmpty
	}
	if satisfiable == 0 {
		return nil, errNoOverlap
	}

	out := make([]Range, 0, satisfiable)
	for rest := set; rest != ""; {
		var elem string
		elem, rest = nextElement(rest)
		if elem == "" {
			continue
		}
		if r, ok, _ := resolve(elem, size); ok {
			out = append(out, r)
		}
	}
	if needsCoalescing(out) {
		out = coalesce(out)
	}
	return out, nil
}

// nextElement splits off the first comma-separated list element of s, trimmed of optional
// whitespace. rest is "" once the list is exhausted.
func nextElement(s string) (elem, rest string) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return strings.Trim(s[:i], ows), s[i+1:]
		}
	}
	return strings.Trim(s, ows), ""
}

// resolve parses one range-spec and resolves it against size. ok reports whether it is
// satisfiable; err is ErrInvalid for a syntax error.
func resolve(spec string, size int64) (r Range, ok bool, err error) {
	dash := -1
	for i := 0; i < len(spec); i++ {
		if spec[i] == '-' {
			dash = i
			break
		}
	}
	if dash < 0 {
		return Range{}, false, errSyntax
	}
	first, last := spec[:dash], spec[dash+1:]
	if first == "" {
		// suffix-range = "-" suffix-length
		n, valid := parseDigits(last)
		if !valid {
			return Range{}, false, errSyntax
		}
		if n == 0 || size <= 0 {
			return Range{}, false, nil
		}
		return Range{Start: size - min(n, size), End: size - 1}, true, nil
	}
	start, valid := parseDigits(first)
	if !valid {
		return Range{}, false, errSyntax
	}
	end := int64(-1)
	if last != "" {
		if end, valid = parseDigits(last); !valid || end < start {
			return Range{}, false, errSyntax
		}
	}
	if start >= size {
		return Range{}, false, nil
	}
	if end < 0 || end >= size {
		end = size - 1
	}
	return Range{Start: start, End: end}, true, nil
}

// parseDigits parses 1*DIGIT, saturating at the largest int64 instead of overflowing.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	const maxInt64 = 1<<63 - 1
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (maxInt64-d)/10 {
			n = maxInt64
		} else {
			n = n*10 + d
		}
	}
	return n, true
}

// needsCoalescing reports whether any two ranges overlap or are adjacent.
func needsCoalescing(rs []Range) bool {
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			a, b := rs[i], rs[j]
			// Adjacent or overlapping: neither ends more than one byte before the other
			// starts. End+1 cannot overflow since End < size <= MaxInt64.
			if a.Start <= b.End+1 && b.Start <= a.End+1 {
				return true
			}
		}
	}
	return false
}

// coalesce sorts rs by start and merges overlapping and adjacent ranges, in place.
func coalesce(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.Start <= last.End+1 {
			last.End = max(last.End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// ParseContentRange parses a Content-Range value from an origin's 206 or 416 response:
// "bytes 0-99/1234", "bytes 0-99/*" (total -1: length unknown) or "bytes */1234" (start and
// end -1: an unsatisfied-range). The unit is matched case-insensitively. The error, wrapping
// ErrInvalid, reports anything else, including start > end, end >= total and "bytes */*".
func ParseContentRange(v string) (start, end, total int64, err error) {
	const unit = "bytes"
	if len(v) < len(unit)+1 || !equalFoldASCII(v[:len(unit)], unit) || v[len(unit)] != ' ' {
		return 0, 0, 0, errContentRange
	}
	v = v[len(unit)+1:]
	slash := -1
	for i := 0; i < len(v); i++ {
		if v[i] == '/' {
			slash = i
			break
		}
	}
	if slash < 0 {
		return 0, 0, 0, errContentRange
	}
	rng, complete := v[:slash], v[slash+1:]
	total = -1
	if complete != "*" {
		var ok bool
		if total, ok = parseExact(complete); !ok {
			return 0, 0, 0, errContentRange
		}
	}
	if rng == "*" {
		if total < 0 {
			return 0, 0, 0, errContentRange
		}
		return -1, -1, total, nil
	}
	dash := -1
	for i := 0; i < len(rng); i++ {
		if rng[i] == '-' {
			dash = i
			break
		}
	}
	if dash < 0 {
		return 0, 0, 0, errContentRange
	}
	var ok1, ok2 bool
	start, ok1 = parseExact(rng[:dash])
	end, ok2 = parseExact(rng[dash+1:])
	if !ok1 || !ok2 || start > end || (total >= 0 && end >= total) {
		return 0, 0, 0, errContentRange
	}
	return start, end, total, nil
}

// parseExact parses 1*DIGIT that fits in an int64.
func parseExact(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// ContentRange formats the Content-Range value of a 206 response carrying r of a
// representation of the given size: "bytes 0-99/1234". A negative size is written as "*"
// (length unknown).
func ContentRange(r Range, size int64) string {
	var buf [64]byte
	return string(appendContentRange(buf[:0], r, size))
}

// UnsatisfiedContentRange formats the Content-Range value of a 416 response: "bytes */1234".
func UnsatisfiedContentRange(size int64) string {
	var buf [32]byte
	b := append(buf[:0], "bytes */"...)
	return string(strconv.AppendInt(b, max(size, 0), 10))
}

func appendContentRange(b []byte, r Range, size int64) []byte {
	b = append(b, "bytes "...)
	b = strconv.AppendInt(b, r.Start, 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, r.End, 10)
	b = append(b, '/')
	if size < 0 {
		return append(b, '*')
	}
	return strconv.AppendInt(b, size, 10)
}

// ows is optional whitespace (RFC 9110 section 5.6.3): spaces and tabs, for strings.Trim.
const ows = " \t"

// equalFoldASCII compares s to the lower-case ASCII string lower, ignoring case.
func equalFoldASCII(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
