package cachecontrol

import (
	"reflect"
	"testing"
	"time"
)

func TestParseCDN(t *testing.T) {
	cases := []struct {
		in   []string
		want Directives
		ok   bool
	}{
		{[]string{"max-age=60, no-store"}, Directives{MaxAge: time.Minute, HasMaxAge: true, NoStore: true}, true},
		{[]string{"max-age=60", "must-revalidate"}, Directives{MaxAge: time.Minute, HasMaxAge: true, MustRevalidate: true}, true},
		{[]string{`no-cache="set-cookie, X-Foo", private=?0`}, Directives{NoCache: true, NoCacheFields: []string{"set-cookie", "x-foo"}}, true},
		{[]string{`private;x=1, public=?1`}, Directives{Private: true, Public: true}, true},
		{[]string{`max-age=(1 2), s-maxage="5", stale-if-error=30, stale-while-revalidate=-1`}, Directives{StaleIfError: 30 * time.Second, HasStaleIfError: true}, true},
		{[]string{`no-store=1, unknown=:AQ==:`}, Directives{}, true},
		{[]string{`max-age=60,`}, Directives{}, false},
		{[]string{`max-age=60 no-store`}, Directives{}, false},
		{[]string{`Max-Age=60`}, Directives{}, false},
		{[]string{``}, Directives{}, false},
	}
	for _, c := range cases {
		got, ok := ParseCDN(c.in...)
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %+v %v, want %+v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseCDN(f *testing.F) {
	for _, s := range []string{"max-age=60, no-store", `no-cache="a, b";p, s-maxage=999999999999999`, "a=(1 2), private=?0", "max-age=1.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseCDN(s)
		if !ok {
			if !reflect.DeepEqual(d, Directives{}) {
				t.Fatalf("%q: directives from a field that did not parse: %+v", s, d)
			}
			return
		}
		for _, v := range []time.Duration{d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError} {
			if v < 0 || v > MaxDelta {
				t.Fatalf("%q: duration %v out of range", s, v)
			}
		}
		if len(d.NoCacheFields) > MaxFields || len(d.PrivateFields) > MaxFields {
			t.Fatalf("%q: too many fields", s)
		}
	})
}
