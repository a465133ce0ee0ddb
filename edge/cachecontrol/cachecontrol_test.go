package cachecontrol

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const sec = time.Second

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   Directives
	}{
		{"empty", []string{""}, Directives{}},
		{"no values", nil, Directives{}},
		{"only commas and spaces", []string{" , ,, \t,"}, Directives{}},
		{"max-age", []string{"max-age=60"}, Directives{MaxAge: 60 * sec, HasMaxAge: true}},
		{"upper case name", []string{"MAX-AGE=60"}, Directives{MaxAge: 60 * sec, HasMaxAge: true}},
		{"mixed case name", []string{"Max-Age=60, No-Store"}, Directives{MaxAge: 60 * sec, HasMaxAge: true, NoStore: true}},
		{"whitespace around =", []string{"max-age = 60"}, Directives{MaxAge: 60 * sec, HasMaxAge: true}},
		{"tabs", []string{"\tmax-age=5\t,\tpublic\t"}, Directives{MaxAge: 5 * sec, HasMaxAge: true, Public: true}},
		{"quoted value", []string{`max-age="60"`}, Directives{MaxAge: 60 * sec, HasMaxAge: true}},
		{"quoted value with quoted-pair", []string{`max-age="6\0"`}, Directives{MaxAge: 60 * sec, HasMaxAge: true}},
		{"max-age zero", []string{"max-age=0"}, Directives{HasMaxAge: true}},
		{"max-age leading zeros", []string{"max-age=007"}, Directives{MaxAge: 7 * sec, HasMaxAge: true}},
		{"max-age negative is stale", []string{"max-age=-1"}, Directives{HasMaxAge: true}},
		{"max-age plus sign is stale", []string{"max-age=+5"}, Directives{HasMaxAge: true}},
		{"max-age non-numeric is stale", []string{"max-age=abc"}, Directives{HasMaxAge: true}},
		{"max-age fraction is stale", []string{"max-age=1.5"}, Directives{HasMaxAge: true}},
		{"max-age empty is stale", []string{"max-age="}, Directives{HasMaxAge: true}},
		{"max-age empty quoted is stale", []string{`max-age=""`}, Directives{HasMaxAge: true}},
		{"max-age without value is stale", []string{"max-age"}, Directives{HasMaxAge: true}},
		{"max-age inner space is stale", []string{"max-age=6 0"}, Directives{HasMaxAge: true}},
		{"max-age garbage after quote is stale", []string{`max-age="60"x`}, Directives{HasMaxAge: true}},
		{"max-age unterminated quote is stale", []string{`max-age="60`}, Directives{HasMaxAge: true}},
		{"max-age duplicate same value", []string{"max-age=60, max-age=60"}, Directives{MaxAge: 60 * sec, HasMaxAge: true}},
		{"max-age duplicate conflict is stale", []string{"max-age=60, max-age=120"}, Directives{HasMaxAge: true}},
		{"max-age conflict stays stale", []string{"max-age=60, max-age=120, max-age=60"}, Directives{HasMaxAge: true}},
		{"max-age valid then invalid is stale", []string{"max-age=60, max-age=x"}, Directives{HasMaxAge: true}},
		{"max-age 2^31-1", []string{"max-age=2147483647"}, Directives{MaxAge: 2147483647 * sec, HasMaxAge: true}},
		{"max-age 2^31", []string{"max-age=2147483648"}, Directives{MaxAge: MaxDelta, HasMaxAge: true}},
		{"max-age saturates", []string{"max-age=99999999999999999999999999"}, Directives{MaxAge: MaxDelta, HasMaxAge: true}},
		{"s-maxage", []string{"s-maxage=600"}, Directives{SMaxAge: 600 * sec, HasSMaxAge: true}},
		{"s-maxage invalid is stale", []string{"s-maxage=soon"}, Directives{HasSMaxAge: true}},
		{"s-maxage conflict is stale", []string{"s-maxage=1", "s-maxage=2"}, Directives{HasSMaxAge: true}},
		{"max-stale without value", []string{"max-stale"}, Directives{MaxStale: MaxDelta, HasMaxStale: true}},
		{"max-stale with value", []string{"max-stale=30"}, Directives{MaxStale: 30 * sec, HasMaxStale: true}},
		{"max-stale invalid ignored", []string{"max-stale=abc"}, Directives{}},
		{"max-stale empty ignored", []string{"max-stale="}, Directives{}},
		{"max-stale first valid wins", []string{"max-stale=abc, max-stale=5, max-stale=10"}, Directives{MaxStale: 5 * sec, HasMaxStale: true}},
		{"max-stale bare first wins", []string{"max-stale, max-stale=5"}, Directives{MaxStale: MaxDelta, HasMaxStale: true}},
		{"min-fresh", []string{"min-fresh=10"}, Directives{MinFresh: 10 * sec, HasMinFresh: true}},
		{"min-fresh without value ignored", []string{"min-fresh"}, Directives{}},
		{"min-fresh first wins", []string{"min-fresh=10, min-fresh=20"}, Directives{MinFresh: 10 * sec, HasMinFresh: true}},
		{"rfc5861 stale-while-revalidate", []string{"max-age=600, stale-while-revalidate=30"},
			Directives{MaxAge: 600 * sec, HasMaxAge: true, StaleWhileRevalidate: 30 * sec, HasStaleWhileRevalidate: true}},
		{"rfc5861 stale-if-error", []string{"max-age=600, stale-if-error=1200"},
			Directives{MaxAge: 600 * sec, HasMaxAge: true, StaleIfError: 1200 * sec, HasStaleIfError: true}},
		{"stale-if-error negative ignored", []string{"stale-if-error=-5"}, Directives{}},
		{"stale-while-revalidate exponent ignored", []string{"stale-while-revalidate=1e9"}, Directives{}},
		{"stale-while-revalidate huge", []string{"stale-while-revalidate=100000000000"},
			Directives{StaleWhileRevalidate: MaxDelta, HasStaleWhileRevalidate: true}},
		{"booleans", []string{"public, private, no-store, no-cache, no-transform, must-revalidate, proxy-revalidate, immutable, only-if-cached"},
			Directives{Public: true, Private: true, NoStore: true, NoCache: true, NoTransform: true, MustRevalidate: true, ProxyRevalidate: true, Immutable: true, OnlyIfCached: true}},
		{"boolean with value", []string{"no-store=1, immutable=\"yes\""}, Directives{NoStore: true, Immutable: true}},
		{"structured field false is still set", []string{"no-store=?0"}, Directives{NoStore: true}},
		{"unknown ignored", []string{"foo, bar=baz, max-age=5, x-y=\"1\""}, Directives{MaxAge: 5 * sec, HasMaxAge: true}},
		{"unknown with quoted comma", []string{`foo="a, max-age=5", s-maxage=7`}, Directives{SMaxAge: 7 * sec, HasSMaxAge: true}},
		{"prefix of a name is unknown", []string{"max, max-ag=5, no-store-x"}, Directives{}},
		{"empty elements", []string{",,, ,max-age=5,,"}, Directives{MaxAge: 5 * sec, HasMaxAge: true}},
		{"no-cache qualified", []string{`no-cache="Set-Cookie, X-Foo"`},
			Directives{NoCache: true, NoCacheFields: []string{"set-cookie", "x-foo"}}},
		{"no-cache quoted comma does not split", []string{`no-cache="a, b", max-age=5`},
			Directives{NoCache: true, NoCacheFields: []string{"a", "b"}, MaxAge: 5 * sec, HasMaxAge: true}},
		{"no-cache token form", []string{"no-cache=Set-Cookie"}, Directives{NoCache: true, NoCacheFields: []string{"set-cookie"}}},
		{"no-cache empty quoted", []string{`no-cache=""`}, Directives{NoCache: true}},
		{"no-cache empty token", []string{`no-cache=`}, Directives{NoCache: true}},
		{"no-cache only commas", []string{`no-cache=" , ,"`}, Directives{NoCache: true}},
		{"no-cache unterminated runs to end of line", []string{`no-cache="a, max-age=5`}, Directives{NoCache: true}},
		{"no-cache garbage after quote", []string{`no-cache="x"y, max-age=5`}, Directives{NoCache: true, MaxAge: 5 * sec, HasMaxAge: true}},
		{"no-cache invalid names dropped", []string{`no-cache="@bad, ok, a b"`}, Directives{NoCache: true, NoCacheFields: []string{"ok"}}},
		{"no-cache duplicates merged", []string{`no-cache="A, a", no-cache="B, a"`}, Directives{NoCache: true, NoCacheFields: []string{"a", "b"}}},
		{"private qualified merged", []string{`private="X-A"`, `private="x-a, X-B"`},
			Directives{Private: true, PrivateFields: []string{"x-a", "x-b"}}},
		{"private qualified then bare", []string{`private="X-A", private`}, Directives{Private: true, PrivateFields: []string{"x-a"}}},
		{"quoted-pair in field list", []string{`no-cache="a\,b"`}, Directives{NoCache: true, NoCacheFields: []string{"a", "b"}}},
		{"several lines combine", []string{"max-age=5", "no-cache", "public"},
			Directives{MaxAge: 5 * sec, HasMaxAge: true, NoCache: true, Public: true}},
		{"conflict across lines", []string{"max-age=5", "max-age=6"}, Directives{HasMaxAge: true}},
		{"quote does not span lines", []string{`no-cache="a`, `max-age=5"`}, Directives{NoCache: true, HasMaxAge: true}},
		{"cdn-cache-control rfc9213 example", []string{"max-age=600, stale-while-revalidate=60"},
			Directives{MaxAge: 600 * sec, HasMaxAge: true, StaleWhileRevalidate: 60 * sec, HasStaleWhileRevalidate: true}},
		{"typical video segment", []string{"public, max-age=31536000, immutable"},
			Directives{Public: true, MaxAge: 31536000 * sec, HasMaxAge: true, Immutable: true}},
		{"request directives", []string{"max-age=0, max-stale=60, min-fresh=5, only-if-cached, no-transform"},
			Directives{HasMaxAge: true, MaxStale: 60 * sec, HasMaxStale: true, MinFresh: 5 * sec, HasMinFresh: true, OnlyIfCached: true, NoTransform: true}},
		{"non-ascii bytes", []string{"max-age=5\xff, \xfe=1, no-store"}, Directives{HasMaxAge: true, NoStore: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.values...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.values, got, tt.want)
			}
		})
	}
}

func TestParseFieldOverflow(t *testing.T) {
	var names []string
	for i := range MaxFields + 1 {
		names = append(names, "x-"+strings.Repeat("a", i+1))
	}
	tests := []struct {
		name   string
		values []string
		want   int
	}{
		{"at limit", []string{`no-cache="` + strings.Join(names[:MaxFields], ", ") + `"`}, MaxFields},
		{"over limit in one list", []string{`no-cache="` + strings.Join(names, ", ") + `"`}, 0},
		{"over limit across lists", []string{`no-cache="` + strings.Join(names[:MaxFields], ", ") + `"`, `no-cache="` + names[MaxFields] + `"`}, 0},
		{"duplicates do not count", []string{`no-cache="` + strings.Join(names[:MaxFields], ", ") + `"`, `no-cache="` + names[0] + `"`}, MaxFields},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Parse(tt.values...)
			if !d.NoCache {
				t.Fatal("NoCache not set")
			}
			if len(d.NoCacheFields) != tt.want {
				t.Errorf("got %d fields, want %d", len(d.NoCacheFields), tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		name string
		d    Directives
		want string
	}{
		{"zero", Directives{}, ""},
		{"max-age", Directives{MaxAge: 60 * sec, HasMaxAge: true}, "max-age=60"},
		{"max-age zero", Directives{HasMaxAge: true}, "max-age=0"},
		{"sub-second truncated", Directives{MaxAge: 1500 * time.Millisecond, HasMaxAge: true}, "max-age=1"},
		{"negative clamped", Directives{MaxAge: -5 * sec, HasMaxAge: true}, "max-age=0"},
		{"huge clamped", Directives{SMaxAge: 4 * MaxDelta, HasSMaxAge: true}, "s-maxage=2147483648"},
		{"value without Has ignored", Directives{MaxAge: 60 * sec}, ""},
		{"max-stale unlimited", Directives{MaxStale: MaxDelta, HasMaxStale: true}, "max-stale"},
		{"max-stale limited", Directives{MaxStale: 10 * sec, HasMaxStale: true}, "max-stale=10"},
		{"qualified no-cache", Directives{NoCache: true, NoCacheFields: []string{"set-cookie", "x-foo"}}, `no-cache="set-cookie, x-foo"`},
		{"qualified private skips non-tokens", Directives{Private: true, PrivateFields: []string{"a b", "x"}}, `private="x"`},
		{"fields without flag ignored", Directives{NoCacheFields: []string{"x"}}, ""},
		{"everything", Directives{
			Public: true, Private: true, NoCache: true, NoStore: true, NoTransform: true, MustRevalidate: true,
			ProxyRevalidate: true, Immutable: true, MaxAge: 1 * sec, HasMaxAge: true, SMaxAge: 2 * sec, HasSMaxAge: true,
			MaxStale: 3 * sec, HasMaxStale: true, MinFresh: 4 * sec, HasMinFresh: true, OnlyIfCached: true,
			StaleWhileRevalidate: 5 * sec, HasStaleWhileRevalidate: true, StaleIfError: 6 * sec, HasStaleIfError: true,
		}, "public, private, no-cache, no-store, no-transform, must-revalidate, proxy-revalidate, immutable, max-age=1, s-maxage=2, max-stale=3, min-fresh=4, only-if-cached, stale-while-revalidate=5, stale-if-error=6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []string{
		"public, max-age=31536000, immutable",
		`no-cache="Set-Cookie", private="X-A, X-B", max-age=5, max-age=6`,
		"max-stale, min-fresh=1, only-if-cached",
		"stale-while-revalidate=99999999999, stale-if-error=0",
		"MAX-AGE=\"60\", S-MAXAGE=30, must-revalidate, proxy-revalidate, no-transform, no-store",
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			d := Parse(in)
			if got := Parse(d.String()); !reflect.DeepEqual(got, d) {
				t.Errorf("Parse(%q) = %+v, round trip via %q gives %+v", in, d, d.String(), got)
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	tests := []string{
		"public, max-age=31536000, immutable",
		"max-age=600, s-maxage=60, stale-while-revalidate=30, stale-if-error=86400, must-revalidate",
		`Max-Age="60", No-Cache, private, x-unknown="a, b", no-store`,
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() { _ = Parse(in) })
			if allocs != 0 {
				t.Errorf("Parse(%q) allocates %v times, want 0", in, allocs)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	const in = "public, max-age=600, s-maxage=60, stale-while-revalidate=30, stale-if-error=86400"
	b.ReportAllocs()
	for b.Loop() {
		_ = Parse(in)
	}
}

// fuzzSeeds is the corpus FuzzParse starts from.
var fuzzSeeds = []string{
	"",
	"max-age=60",
	"public, max-age=31536000, immutable",
	`no-cache="Set-Cookie, X-Foo", private="a", max-age="5"`,
	"max-age=5, max-age=6",
	"max-stale, min-fresh=1, only-if-cached",
	"max-stale=abc, max-stale=5",
	"stale-while-revalidate=99999999999999999999, stale-if-error=-1",
	`no-cache="a, max-age=5`,
	`foo="a\"b, c", s-maxage=7`,
	"MAX-AGE = 60 ,\tNO-STORE",
	"max-age=5\nno-cache=\"a\"\nprivate",
	",,,=,=\",\\",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Newlines split the input into several header lines.
		d := Parse(strings.Split(s, "\n")...)
		for _, v := range []time.Duration{d.MaxAge, d.SMaxAge, d.MaxStale, d.MinFresh, d.StaleWhileRevalidate, d.StaleIfError} {
			if v < 0 || v > MaxDelta || v%time.Second != 0 {
				t.Fatalf("Parse(%q): bad duration %v in %+v", s, v, d)
			}
		}
		for _, fields := range [][]string{d.NoCacheFields, d.PrivateFields} {
			if len(fields) > MaxFields {
				t.Fatalf("Parse(%q): %d fields", s, len(fields))
			}
			for _, f := range fields {
				if !isToken(f) || lowerASCII(f) != f {
					t.Fatalf("Parse(%q): bad field name %q", s, f)
				}
			}
		}
		if len(d.NoCacheFields) > 0 && !d.NoCache || len(d.PrivateFields) > 0 && !d.Private {
			t.Fatalf("Parse(%q): fields without their directive: %+v", s, d)
		}
		out := d.String()
		if got := Parse(out); !reflect.DeepEqual(got, d) {
			t.Fatalf("Parse(%q) = %+v\nString() = %q\nParse(String()) = %+v", s, d, out, got)
		}
	})
}
