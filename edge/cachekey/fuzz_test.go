package cachekey

import (
	"errors"
	"strings"
	"testing"
)

// fuzzMaxLen is the length limit FuzzNormalize uses instead of MaxLen.
const fuzzMaxLen = 256

// climbs reports whether an origin that decodes every percent-escape, treats both "/" and
// "\" as separators and drops ";" parameters would resolve p above its root.
func climbs(p string) bool {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && unhex(p[i+1]) >= 0 && unhex(p[i+2]) >= 0 {
			b.WriteByte(byte(unhex(p[i+1])<<4 | unhex(p[i+2])))
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	depth := 0
	for _, seg := range strings.FieldsFunc(b.String(), func(r rune) bool { return r == '/' || r == '\\' }) {
		seg, _, _ = strings.Cut(seg, ";")
		switch seg {
		case "..":
			if depth == 0 {
				return true
			}
			depth--
		case ".", "":
		default:
			depth++
		}
	}
	return false
}

func FuzzNormalize(f *testing.F) {
	seeds := [][2]string{
		{"/", ""},
		{"/a/b", "b=2&a=1"},
		{"/a//b/./c/../d/", "&&x=1&token=abc&utm_source=y"},
		{"/%61/%2e%2E/b%2fc", "%61=%7e&a=%2f"},
		{"/a/../../x", ""},
		{"/a%00", ""},
		{"/%zz", "a=%zz"},
		{"/..%5C..%2F..;x", "a=\x00"},
		{"/a\\b c?d#e\xff", "q=a b#c\xc3\xa9&=&a&a="},
		{"relative", ""},
		{"/seg/1080p/video_00001.m4s", "cdn=1&v=2"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	n, err := New(Config{IgnoreParams: []string{"token", "utm_*", "%73ig"}})
	if err != nil {
		f.Fatal(err)
	}
	// A short limit lets short inputs reach the length checks; long inputs would make the
	// fuzzer's minimisation crawl.
	n.maxLen = fuzzMaxLen
	f.Fuzz(func(t *testing.T, rawPath, rawQuery string) {
		p, q, err := n.Normalize(rawPath, rawQuery)
		if err != nil {
			if p != "" || q != "" {
				t.Fatalf("Normalize(%q, %q) = %q, %q with error %v", rawPath, rawQuery, p, q, err)
			}
			known := false
			for _, e := range []error{ErrDotDot, ErrBadEscape, ErrControl, ErrNotAbsolute, ErrTooLong} {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("Normalize(%q, %q): unexpected error %v", rawPath, rawQuery, err)
			}
		} else {
			checkOutput(t, rawPath, rawQuery, p, q)
			p2, q2, err := n.Normalize(p, q)
			if err != nil || p2 != p || q2 != q {
				t.Fatalf("Normalize(%q, %q) = %q, %q; again: %q, %q, %v", rawPath, rawQuery, p, q, p2, q2, err)
			}
		}

		// The no-allocation fast checks accept exactly the normal forms.
		if rawPath != "" && rawPath[0] == '/' {
			np, err := normalizePath(rawPath)
			if isNormalPath(rawPath) != (err == nil && np == rawPath) {
				t.Fatalf("isNormalPath(%q) = %v, but normalizePath gives %q, %v", rawPath, isNormalPath(rawPath), np, err)
			}
		}
		nq, err := n.normalizeQuery(rawQuery)
		if n.isNormalQuery(rawQuery) != (err == nil && nq == rawQuery) {
			t.Fatalf("isNormalQuery(%q) = %v, but normalizeQuery gives %q, %v", rawQuery, n.isNormalQuery(rawQuery), nq, err)
		}
	})
}

// checkOutput verifies the promises Normalize makes about its output.
func checkOutput(t *testing.T, rawPath, rawQuery, p, q string) {
	t.Helper()
	fail := func(why string) {
		t.Helper()
		t.Fatalf("Normalize(%q, %q) = %q, %q: %s", rawPath, rawQuery, p, q, why)
	}
	if !strings.HasPrefix(p, "/") {
		fail("path not absolute")
	}
	for _, bad := range []string{"//", "/./", "/../"} {
		if strings.Contains(p, bad) {
			fail("path contains " + bad)
		}
	}
	if strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		fail("path ends in a dot segment")
	}
	if climbs(p) {
		fail("path climbs above the root")
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; isControl(c) || c >= 0x80 || c == '?' || c == '#' || c == '\\' {
			fail("path holds a raw " + string(rune(c)))
		}
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; isControl(c) || c >= 0x80 || c == '#' {
			fail("query holds a raw " + string(rune(c)))
		}
	}
	if len(p)+len(q) > fuzzMaxLen {
		fail("too long")
	}
	if q != "" {
		for _, param := range strings.Split(q, "&") {
			name, _, _ := strings.Cut(param, "=")
			if param == "" {
				fail("empty parameter")
			}
			if name == "token" || strings.HasPrefix(name, "utm_") || name == "sig" {
				fail("ignored parameter kept")
			}
		}
	}
}
