package sfv

import (
	"errors"
	"reflect"
	"testing"
)

// Examples from RFC 8941 (§3.2, §3.1.1, §3.1.2, §3.3) and the edge cases of its parsing
// algorithms.
func TestParseDictionary(t *testing.T) {
	cases := []struct {
		in   string
		want Dictionary
	}{
		{`en="Applepie", da=:w4ZibGV0w6ZydGUK:`, Dictionary{
			{Key: "en", Member: Member{Item: Item{Value: "Applepie"}}},
			{Key: "da", Member: Member{Item: Item{Value: []byte("\xc3\x86blet\xc3\xa6rte\n")}}},
		}},
		{`a=?0, b, c; foo=bar`, Dictionary{
			{Key: "a", Member: Member{Item: Item{Value: false}}},
			{Key: "b", Member: Member{Item: Item{Value: true}}},
			{Key: "c", Member: Member{Item: Item{Value: true, Params: []Param{{"foo", Token("bar")}}}}},
		}},
		{`rating=1.5, feelings=(joy sadness)`, Dictionary{
			{Key: "rating", Member: Member{Item: Item{Value: Decimal(1500)}}},
			{Key: "feelings", Member: Member{IsList: true, Inner: []Item{{Value: Token("joy")}, {Value: Token("sadness")}}}},
		}},
		{`a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid`, Dictionary{
			{Key: "a", Member: Member{IsList: true, Inner: []Item{{Value: int64(1)}, {Value: int64(2)}}}},
			{Key: "b", Member: Member{Item: Item{Value: int64(3)}}},
			{Key: "c", Member: Member{Item: Item{Value: int64(4), Params: []Param{{"aa", Token("bb")}}}}},
			{Key: "d", Member: Member{Item: Item{Params: []Param{{"valid", true}}}, IsList: true, Inner: []Item{{Value: int64(5)}, {Value: int64(6)}}}},
		}},
		{`max-age=60, no-store`, Dictionary{
			{Key: "max-age", Member: Member{Item: Item{Value: int64(60)}}},
			{Key: "no-store", Member: Member{Item: Item{Value: true}}},
		}},
		{`a=1, a=2`, Dictionary{{Key: "a", Member: Member{Item: Item{Value: int64(2)}}}}},
		{`  a=-42 ,	b="x\"y\\"  `, Dictionary{
			{Key: "a", Member: Member{Item: Item{Value: int64(-42)}}},
			{Key: "b", Member: Member{Item: Item{Value: `x"y\`}}},
		}},
		{`t=foo/bar:baz, *k=*`, Dictionary{
			{Key: "t", Member: Member{Item: Item{Value: Token("foo/bar:baz")}}},
			{Key: "*k", Member: Member{Item: Item{Value: Token("*")}}},
		}},
		{`e=()`, Dictionary{{Key: "e", Member: Member{IsList: true, Inner: []Item{}}}}},
		{`d=-0.001, i=999999999999999`, Dictionary{
			{Key: "d", Member: Member{Item: Item{Value: Decimal(-1)}}},
			{Key: "i", Member: Member{Item: Item{Value: int64(999999999999999)}}},
		}},
	}
	for _, c := range cases {
		got, err := ParseDictionary(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %#v\nwant %#v", c.in, got, c.want)
		}
	}
}

func TestParseDictionaryRejects(t *testing.T) {
	for _, in := range []string{
		``, `   `, `a=1,`, `a=1,,b=2`, `A=1`, `1a=1`, `a=`, `a=1 b=2`, `a="unterminated`,
		`a="bad\escape"`, "a=\"tab\t\"", `a=1.`, `a=1.2345`, `a=1234567890123.1`,
		`a=1234567890123456`, `a=?2`, `a=:not base64!:`, `a=:abc`, `a=(1 2`, `a=(1,2)`,
		`a=1;`, `a=1;B=2`, `a=--1`, `a=-`, `max-age="60"x`, `a=é`, `a=1, `, `a=1;b=`,
	} {
		if d, err := ParseDictionary(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: got %#v, %v; want a syntax error", in, d, err)
		}
	}
}

func TestParseDictionaryLines(t *testing.T) {
	d, err := ParseDictionary("max-age=10", "no-cache")
	if err != nil || len(d) != 2 {
		t.Fatalf("two lines: %#v %v", d, err)
	}
	if _, err := ParseDictionary("max-age=10", ""); err == nil {
		t.Fatal("an empty line leaves a trailing comma: must fail")
	}
}

func FuzzParseDictionary(f *testing.F) {
	for _, s := range []string{`max-age=60, no-store`, `a=(1 2);x=?1, b=:aGk=:, c="s";t=1.5`, `a=1,`, `*=*`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDictionary(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error not wrapping ErrSyntax: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, e := range d {
			if e.Key == "" || seen[e.Key] {
				t.Fatalf("%q: empty or repeated key %q", s, e.Key)
			}
			seen[e.Key] = true
			switch v := e.Value.(type) {
			case int64:
				if v > 999999999999999 || v < -999999999999999 {
					t.Fatalf("integer out of range: %d", v)
				}
			case nil, Decimal, string, Token, []byte, bool:
			default:
				t.Fatalf("unexpected type %T", v)
			}
		}
	})
}
