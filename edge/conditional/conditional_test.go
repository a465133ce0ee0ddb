package conditional

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

var (
	lastMod = time.Date(2026, 3, 1, 12, 0, 0, 500_000_000, time.UTC) // sub-second: compared by the second
	before  = lastMod.Add(-time.Hour).Format(http.TimeFormat)
	at      = lastMod.Format(http.TimeFormat)
	after   = lastMod.Add(time.Hour).Format(http.TimeFormat)
	ok200   = Stored{Status: 200, ETag: `"v1"`, LastModified: lastMod}
)

func TestPreconditions(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ifMatch, ius string
		st           Stored
		want         bool
	}{
		{"no conditions", "", "", ok200, true},
		{"If-Match same tag", `"v1"`, "", ok200, true},
		{"If-Match in a list", ` "v0" , "v1"`, "", ok200, true},
		{"If-Match other tag", `"v2"`, "", ok200, false},
		{"If-Match weak tag never matches", `W/"v1"`, "", ok200, false},
		{"If-Match against a weak ETag", `"v1"`, "", Stored{Status: 200, ETag: `W/"v1"`}, false},
		{"If-Match star", " * ", "", ok200, true},
		{"If-Match star on a 404", "*", "", Stored{Status: 404, ETag: `"v1"`}, false},
		{"If-Match without an ETag", `"v1"`, "", Stored{Status: 200}, false},
		{"If-Match wins over If-Unmodified-Since", `"v1"`, before, ok200, true},
		{"If-Unmodified-Since later", "", after, ok200, true},
		{"If-Unmodified-Since the same second", "", at, ok200, true},
		{"If-Unmodified-Since earlier", "", before, ok200, false},
		{"If-Unmodified-Since with spaces", "", "  " + before + " ", ok200, false},
		{"If-Unmodified-Since not a date: ignored", "", "yesterday", ok200, true},
		{"If-Unmodified-Since without Last-Modified: ignored", "", before, Stored{Status: 200}, true},
	} {
		if got := Preconditions(tc.ifMatch, tc.ius, tc.st); got != tc.want {
			t.Errorf("%s: Preconditions(%q, %q) = %v, want %v", tc.name, tc.ifMatch, tc.ius, got, tc.want)
		}
	}
}

func TestNotModified(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inm, ims string
		st       Stored
		want     bool
	}{
		{"no conditions", "", "", ok200, false},
		{"If-None-Match same tag", `"v1"`, "", ok200, true},
		{"If-None-Match weak comparison", `W/"v1"`, "", ok200, true},
		{"If-None-Match against a weak ETag", `"v1"`, "", Stored{Status: 200, ETag: `W/"v1"`}, true},
		{"If-None-Match in a list", `"a", "b",W/"v1"`, "", ok200, true},
		{"If-None-Match other tag", `"v2"`, "", ok200, false},
		{"If-None-Match star without an ETag", "*", "", Stored{Status: 200}, true},
		{"If-None-Match without an ETag", `"v1"`, "", Stored{Status: 200}, false},
		{"If-None-Match wins over If-Modified-Since", `"v2"`, after, ok200, false},
		{"If-Modified-Since later", "", after, ok200, true},
		{"If-Modified-Since the same second", "", at, ok200, true},
		{"If-Modified-Since earlier", "", before, ok200, false},
		{"If-Modified-Since not a date", "", "soon", ok200, false},
		{"If-Modified-Since without Last-Modified", "", after, Stored{Status: 200, ETag: `"v1"`}, false},
		{"If-Modified-Since in the obsolete RFC 850 form", "", lastMod.Format(time.RFC850), ok200, true},
	} {
		if got := NotModified(tc.inm, tc.ims, tc.st); got != tc.want {
			t.Errorf("%s: NotModified(%q, %q) = %v, want %v", tc.name, tc.inm, tc.ims, got, tc.want)
		}
	}
}

func TestIfRange(t *testing.T) {
	for _, tc := range []struct {
		name string
		ir   string
		st   Stored
		want bool
	}{
		{"absent", "", ok200, true},
		{"same strong tag", `"v1"`, ok200, true},
		{"other tag", `"v2"`, ok200, false},
		{"weak tag never holds", `W/"v1"`, ok200, false},
		{"strong tag against a weak ETag", `"v1"`, Stored{Status: 200, ETag: `W/"v1"`}, false},
		{"exact date", at, ok200, true},
		{"exact date with spaces", " " + at + " ", ok200, true},
		{"later date", after, ok200, false},
		{"earlier date", before, ok200, false},
		{"date without Last-Modified", at, Stored{Status: 200, ETag: `"v1"`}, false},
		{"neither a tag nor a date", "v1", ok200, false},
	} {
		if got := IfRange(tc.ir, tc.st); got != tc.want {
			t.Errorf("%s: IfRange(%q) = %v, want %v", tc.name, tc.ir, got, tc.want)
		}
	}
}

func TestETagListMatches(t *testing.T) {
	for _, tc := range []struct {
		list, etag     string
		strong, weakly bool // the strong and the weak comparison's answers
	}{
		{`"a"`, `"a"`, true, true},
		{`"a"`, `W/"a"`, false, true},
		{`W/"a"`, `"a"`, false, true},
		{`W/"a"`, `W/"a"`, false, true},
		{`"b", "a"`, `"a"`, true, true},
		{`"b","c"`, `"a"`, false, false},
		{`*`, `"a"`, true, true},
		{`*`, ``, false, false},
		{`"a"`, ``, false, false},
		{``, `"a"`, false, false},
		{`"A"`, `"a"`, false, false}, // tags are case-sensitive
	} {
		if got := ETagListMatches(tc.list, tc.etag, true); got != tc.strong {
			t.Errorf("ETagListMatches(%q, %q, strong) = %v, want %v", tc.list, tc.etag, got, tc.strong)
		}
		if got := ETagListMatches(tc.list, tc.etag, false); got != tc.weakly {
			t.Errorf("ETagListMatches(%q, %q, weak) = %v, want %v", tc.list, tc.etag, got, tc.weakly)
		}
	}
}

// FuzzConditional checks the rules that hold whatever the fields say: no panic; a strong match
// is also a weak one; a tag list names the tag it holds; If-Match and If-None-Match take
// precedence over the date they come with; a stored response matches its own Last-Modified.
func FuzzConditional(f *testing.F) {
	f.Add(`"a", W/"b"`, `W/"b"`, "*", at, int64(1772366400), 200)
	f.Add("", `"x"`, `"x"`, "Sun, 06 Nov 1994 08:49:37 GMT", int64(0), 404)
	f.Add(" * ", "", `W/""`, "Sunday, 06-Nov-94 08:49:37 GMT", int64(-1), 206)
	f.Fuzz(func(t *testing.T, list, etag, cond, date string, unix int64, status int) {
		var lm time.Time
		if unix > 0 && unix < 1<<34 {
			lm = time.Unix(unix, 0).UTC()
		}
		st := Stored{Status: status, ETag: etag, LastModified: lm}
		strong, weak := ETagListMatches(list, etag, true), ETagListMatches(list, etag, false)
		if strong && !weak {
			t.Fatalf("ETagListMatches(%q, %q): strong match but no weak match", list, etag)
		}
		if etag != "" && !strings.Contains(etag, ",") && strings.TrimSpace(etag) == etag {
			if !ETagListMatches(list+","+etag, etag, false) {
				t.Fatalf("list %q does not weakly match %q", list+","+etag, etag)
			}
			if !strings.HasPrefix(etag, "W/") && !ETagListMatches(etag+","+list, etag, true) {
				t.Fatalf("list %q does not strongly match %q", etag+","+list, etag)
			}
		}
		if cond != "" {
			if Preconditions(cond, date, st) != Preconditions(cond, "", st) {
				t.Fatalf("If-Unmodified-Since %q counted beside If-Match %q", date, cond)
			}
			if NotModified(cond, date, st) != NotModified(cond, "", st) {
				t.Fatalf("If-Modified-Since %q counted beside If-None-Match %q", date, cond)
			}
		}
		_ = IfRange(cond, st)
		_ = IfRange(date, st)
		if !lm.IsZero() {
			own := lm.Format(http.TimeFormat)
			if !NotModified("", own, st) || !Preconditions("", own, st) || !IfRange(own, st) {
				t.Fatalf("Last-Modified %s does not match itself", own)
			}
		}
		if status >= 200 && status <= 299 && !Preconditions("*", date, st) {
			t.Fatalf("If-Match: * fails on a %d", status)
		}
	})
}
