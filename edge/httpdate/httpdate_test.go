package httpdate

import (
	"net/http"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"} {
		got, ok := Parse(s, now)
		if !ok || !got.Equal(want) {
			t.Errorf("%q: got %v %v, want %v", s, got, ok, want)
		}
	}
	// rfc850's two-digit year: not more than 50 years ahead of now.
	if got, ok := Parse("Friday, 01-Jan-21 00:00:00 GMT", now); !ok || got.Year() != 2021 {
		t.Errorf("21 read as %v", got)
	}
	if got, ok := Parse("Thursday, 01-Jan-99 00:00:00 GMT", now); !ok || got.Year() != 1999 {
		t.Errorf("99 read as %v", got)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"", "0", "-1", "Sun, 06 Nov 1994  08:49:37 GMT", "Sun,  06 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 8:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 UTC",
		"Sun, 06 nov 1994 08:49:37 GMT", "sun, 06 Nov 1994 08:49:37 GMT", " Sun, 06 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMT ", "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT", "Sun, 00 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-1994 08:49:37 GMT", "Sun Nov 6 08:49:37 1994", "Sun Nov 06 8:49:37 1994",
		"Sun, 06 Nov 1994 08:49:37 +0000", "Sun, 06 Nov 1994 08:4a:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT\x00",
	} {
		if got, ok := Parse(s, now); ok {
			t.Errorf("%q accepted as %v", s, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := Parse(s, now)
		if !ok {
			return
		}
		// An accepted IMF-fixdate formats back to itself (but for the day name, which Parse
		// does not check against the date, and a leap second, which it reads as the next one).
		if len(s) == 29 && s[23:25] != "60" && got.Format(http.TimeFormat)[3:] != s[3:] {
			t.Fatalf("%q read as %v", s, got)
		}
		if got.Location() != time.UTC {
			t.Fatalf("%q: not UTC", s)
		}
	})
}
