package cachekey

import (
	"errors"
	"strings"
	"testing"
)

func mustNew(t testing.TB, cfg Config) *Normalizer {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/b/", "/a/b/"},
		{"//", "/"},
		{"/a//b", "/a/b"},
		{"//a///b//", "/a/b/"},
		{"/a/./b", "/a/b"},
		{"/./a/b", "/a/b"},
		{"/a/b/.", "/a/b/"},
		{"/a/c/../b", "/a/b"},
		{"/a/b/../c", "/a/c"},
		{"/a/b/..", "/a/"},
		{"/a/..", "/"},
		{"/a/b/../../c", "/c"},
		{"/a/%2e%2e/b", "/b"},
		{"/a/.%2E/b", "/b"},
		{"/a/%2E/b", "/a/b"},
		{"/%61/b", "/a/b"},
		{"/%41%42%7e%5f%2d%2E%30", "/AB~_-.0"},
		{"/a%2fb", "/a%2Fb"},
		{"/a%2Fb", "/a%2Fb"},
		{"/%e2%82%ac", "/%E2%82%AC"},
		{"/\xe2\x82\xac", "/%E2%82%AC"},
		{"/a b", "/a%20b"},
		{"/a%20b", "/a%20b"},
		{"/a?b#c", "/a%3Fb%23c"},
		{"/a\\b", "/a%5Cb"},
		{"/a%5cb", "/a%5Cb"},
		{"/a;b=c,d", "/a;b=c,d"},
		{"/!$&'()*+,;=:@", "/!$&'()*+,;=:@"},
		{"/a\"<>[]^`{|}", "/a%22%3C%3E%5B%5D%5E%60%7B%7C%7D"},
		{"/%25", "/%25"},
		{"/%252e%252e/x", "/%252e%252e/x"},
		{"/...", "/..."},
		{"/a/.../b", "/a/.../b"},
		{"/..a/b..", "/..a/b.."},
		{"/.hidden", "/.hidden"},
		{"/a%2F.%2Fb", "/a%2F.%2Fb"},
		{"/a;..b", "/a;..b"},
		{"/seg/1080p/video_00001.m4s", "/seg/1080p/video_00001.m4s"},
	}
	n := mustNew(t, Config{})
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, _, err := n.Normalize(tt.in, "")
			if err != nil {
				t.Fatalf("Normalize(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if again, _, err := n.Normalize(got, ""); err != nil || again != got {
				t.Errorf("Normalize(%q) = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

func TestSpellingsCollide(t *testing.T) {
	groups := [][][2]string{
		{{"/a/b", ""}, {"/a//b", ""}, {"/a/./b", ""}, {"/%61/b", ""}, {"/a/c/../b", ""}, {"//a/b", ""}, {"/a/%62", ""}, {"/a/%2e/b", ""}, {"/x/%2E%2E/a/b", ""}},
		{{"/a/b/", ""}, {"/a/b//", ""}, {"/a/b/.", ""}, {"/a/b/c/..", ""}, {"/a/b/./", ""}},
		{{"/a%2Fb", ""}, {"/a%2fb", ""}},
		{{"/a b", ""}, {"/a%20b", ""}},
		{{"/v.mp4", "b=2&a=1"}, {"/v.mp4", "a=1&b=2"}, {"/v.mp4", "&a=1&&b=2&"}, {"/v.mp4", "%61=1&b=%32"}, {"/v.mp4", "a=1&b=2&token=x"}, {"/v.mp4", "utm_source=x&a=1&utm_medium=y&b=2"}},
		{{"/v.mp4", ""}, {"/v.mp4", "token=abc"}, {"/v.mp4", "&&"}, {"/v.mp4", "utm_x=1"}},
	}
	n := mustNew(t, Config{IgnoreParams: []string{"token", "utm_*"}})
	for _, group := range groups {
		t.Run(group[0][0]+"?"+group[0][1], func(t *testing.T) {
			var first string
			for i, in := range group {
				p, q, err := n.Normalize(in[0], in[1])
				if err != nil {
					t.Fatalf("Normalize(%q, %q): %v", in[0], in[1], err)
				}
				key := Key(p, q)
				if i == 0 {
					first = key
				} else if key != first {
					t.Errorf("Normalize(%q, %q) gives key %q, want %q as for %q", in[0], in[1], key, first, group[0])
				}
			}
		})
	}
}

func TestSpellingsDiffer(t *testing.T) {
	pairs := [][2][2]string{
		{{"/a%2Fb", ""}, {"/a/b", ""}},
		{{"/a/b/", ""}, {"/a/b", ""}},
		{{"/a%5Cb", ""}, {"/a/b", ""}},
		{{"/A", ""}, {"/a", ""}},
		{{"/a%21", ""}, {"/a!", ""}},
		{{"/a", "b"}, {"/a", "b="}},
		{{"/a", "b=+"}, {"/a", "b=%20"}},
		{{"/a", "b=1&b=2"}, {"/a", "b=1"}},
		{{"/a", "b=%26"}, {"/a", "b=&"}},
		{{"/a?b", ""}, {"/a", "b"}},
		{{"/a", "B=1"}, {"/a", "b=1"}},
		{{"/a", "tokenx=1"}, {"/a", ""}},
	}
	n := mustNew(t, Config{IgnoreParams: []string{"token"}})
	for _, pair := range pairs {
		t.Run(pair[0][0]+"?"+pair[0][1], func(t *testing.T) {
			var keys [2]string
			for i, in := range pair {
				p, q, err := n.Normalize(in[0], in[1])
				if err != nil {
					t.Fatalf("Normalize(%q, %q): %v", in[0], in[1], err)
				}
				keys[i] = Key(p, q)
			}
			if keys[0] == keys[1] {
				t.Errorf("%q and %q share the key %q", pair[0], pair[1], keys[0])
			}
		})
	}
}

func TestNormalizeErrors(t *testing.T) {
	tests := []struct {
		path, query string
		want        error
	}{
		{"/..", "", ErrDotDot},
		{"/../x", "", ErrDotDot},
		{"/a/../../x", "", ErrDotDot},
		{"/a/b/../../../x", "", ErrDotDot},
		{"/%2e%2e/x", "", ErrDotDot},
		{"/%2E%2E/x", "", ErrDotDot},
		{"/.%2e/x", "", ErrDotDot},
		{"//../x", "", ErrDotDot},
		{"/./../x", "", ErrDotDot},
		{"/a/%2e%2e/%2e%2e", "", ErrDotDot},
		// Hidden behind separators some origins honour.
		{"/a/..%2Fx", "", ErrDotDot},
		{"/a/b%2F..%2F..%2Fx", "", ErrDotDot},
		{"/a%2f..", "", ErrDotDot},
		{"/..\\x", "", ErrDotDot},
		{"/a/x\\..\\..\\y", "", ErrDotDot},
		{"/%5C..%5Cx", "", ErrDotDot},
		{"/%5c%2e%2e", "", ErrDotDot},
		{"/..;/x", "", ErrDotDot},
		{"/a/..;jsessionid=1/x", "", ErrDotDot},
		{"/a/..%3bx", "", ErrDotDot},

		{"/a%00", "", ErrControl},
		{"/a\x00b", "", ErrControl},
		{"/a\nb", "", ErrControl},
		{"/a%0d%0aX-Evil:1", "", ErrControl},
		{"/a%7f", "", ErrControl},
		{"/a\x7f", "", ErrControl},
		{"/a\tb", "", ErrControl},
		{"/a", "b=%00", ErrControl},
		{"/a", "b=\r\n", ErrControl},
		{"/a", "%1f=1", ErrControl},

		{"/%zz", "", ErrBadEscape},
		{"/a%", "", ErrBadEscape},
		{"/a%4", "", ErrBadEscape},
		{"/a%4g", "", ErrBadEscape},
		{"/a%%41", "", ErrBadEscape},
		{"/a", "b=%zz", ErrBadEscape},
		{"/a", "%", ErrBadEscape},
		{"/a", "b=1%2", ErrBadEscape},

		{"", "", ErrNotAbsolute},
		{"a/b", "", ErrNotAbsolute},
		{"*", "", ErrNotAbsolute},
		{"http://example.com/a", "", ErrNotAbsolute},
		{"%2Fa", "", ErrNotAbsolute},
		{"\\a", "", ErrNotAbsolute},

		{"/" + strings.Repeat("a", MaxLen), "", ErrTooLong},
		{"/a", strings.Repeat("b", MaxLen), ErrTooLong},
		{"/" + strings.Repeat("a", MaxLen/2), strings.Repeat("b", MaxLen/2), ErrTooLong},
		// Short enough as sent, too long once raw bytes are encoded.
		{"/" + strings.Repeat("\xff", MaxLen/2), "", ErrTooLong},
	}
	n := mustNew(t, Config{})
	for _, tt := range tests {
		name := tt.path + "?" + tt.query
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			p, q, err := n.Normalize(tt.path, tt.query)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Normalize(%q, %q) = %q, %q, %v; want %v", tt.path, tt.query, p, q, err, tt.want)
			}
			if p != "" || q != "" {
				t.Errorf("Normalize returned %q, %q with an error", p, q)
			}
		})
	}
}

func TestMaxLenBoundary(t *testing.T) {
	n := mustNew(t, Config{})
	path := "/" + strings.Repeat("a", MaxLen-11)
	query := strings.Repeat("q", 10)
	p, q, err := n.Normalize(path, query)
	if err != nil || p != path || q != query {
		t.Fatalf("Normalize at MaxLen: %v", err)
	}
}

func TestNormalizeQuery(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		query string
		want  string
	}{
		{"empty", Config{}, "", ""},
		{"sorted kept", Config{}, "a=1&b=2", "a=1&b=2"},
		{"sorted by name", Config{}, "b=2&a=1&c=0", "a=1&b=2&c=0"},
		{"then by value", Config{}, "a=2&a=10&a=1", "a=1&a=10&a=2"},
		{"bare before empty value", Config{}, "a=&a&a=x", "a&a=&a=x"},
		{"empty params dropped", Config{}, "&&a=1&&", "a=1"},
		{"only ampersands", Config{}, "&&&", ""},
		{"empty name kept", Config{}, "=x&a=1", "=x&a=1"},
		{"unreserved decoded", Config{}, "%61%62=%7E%2e", "ab=~."},
		{"escapes upper-cased", Config{}, "a=%2f%3d%26", "a=%2F%3D%26"},
		{"raw specials encoded", Config{}, "a=b c#\"\\", "a=b%20c%23%22%5C"},
		{"raw reserved kept", Config{}, "a=/?:@!$'()*+,;=", "a=/?:@!$'()*+,;="},
		{"equals in value kept", Config{}, "a=b=c", "a=b=c"},
		{"encoded equals in name", Config{}, "a%3db=c", "a%3Db=c"},
		{"utf-8 encoded", Config{}, "q=\xc3\xa9", "q=%C3%A9"},
		{"plus kept", Config{}, "q=a+b", "q=a+b"},
		{"ignore exact", Config{IgnoreParams: []string{"token"}}, "token=x&a=1&token=y", "a=1"},
		{"ignore exact is exact", Config{IgnoreParams: []string{"token"}}, "tokens=x&Token=y&atoken=z", "Token=y&atoken=z&tokens=x"},
		{"ignore bare and empty", Config{IgnoreParams: []string{"t"}}, "t&t=&a", "a"},
		{"ignore wildcard", Config{IgnoreParams: []string{"utm_*"}}, "utm_source=a&utm_=b&v=1&utm=c", "utm=c&v=1"},
		{"ignore wildcard after decoding", Config{IgnoreParams: []string{"utm_*"}}, "utm%5Fsource=a&%75tm_x=b&v=1", "v=1"},
		{"ignore encoded config name", Config{IgnoreParams: []string{"%73ig"}}, "sig=abc&v=1", "v=1"},
		{"ignore everything", Config{IgnoreParams: []string{"a", "b*"}}, "a=1&bb=2&b", ""},
		{"drop query", Config{DropQuery: true}, "b=2&a=1", ""},
		{"drop query skips validation", Config{DropQuery: true}, "a=%zz&b=%00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := mustNew(t, tt.cfg)
			_, got, err := n.Normalize("/x", tt.query)
			if err != nil {
				t.Fatalf("Normalize(%q) error: %v", tt.query, err)
			}
			if got != tt.want {
				t.Errorf("Normalize(%q) query = %q, want %q", tt.query, got, tt.want)
			}
			if _, again, err := n.Normalize("/x", got); err != nil || again != got {
				t.Errorf("Normalize(%q) query = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		params  []string
		wantErr bool
	}{
		{"none", nil, false},
		{"exact and wildcard", []string{"token", "utm_*", "Expires", "x%2Fy"}, false},
		{"empty", []string{""}, true},
		{"lone star", []string{"*"}, true},
		{"inner star", []string{"a*b"}, true},
		{"double star", []string{"a**"}, true},
		{"ampersand", []string{"a&b"}, true},
		{"equals", []string{"a=b"}, true},
		{"control", []string{"a\nb"}, true},
		{"encoded control", []string{"a%00"}, true},
		{"bad escape", []string{"a%zz"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{IgnoreParams: tt.params})
			if tt.wantErr != (err != nil) || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Errorf("New(%q) error = %v, want error %v", tt.params, err, tt.wantErr)
			}
		})
	}
}

func TestZeroNormalizer(t *testing.T) {
	var n Normalizer
	p, q, err := n.Normalize("/a//b", "z=1&a=2")
	if err != nil || p != "/a/b" || q != "a=2&z=1" {
		t.Errorf("zero Normalizer: %q, %q, %v", p, q, err)
	}
}

func TestKey(t *testing.T) {
	tests := []struct{ path, query, want string }{
		{"/a", "", "/a"},
		{"/a", "b=1", "/a?b=1"},
		{"/", "a", "/?a"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Key(tt.path, tt.query); got != tt.want {
				t.Errorf("Key(%q, %q) = %q, want %q", tt.path, tt.query, got, tt.want)
			}
		})
	}
}

func TestNormalReturnsInput(t *testing.T) {
	n := mustNew(t, Config{IgnoreParams: []string{"token", "utm_*"}})
	tests := []struct{ path, query string }{
		{"/", ""},
		{"/a/b", ""},
		{"/a/b/", ""},
		{"/seg/1080p/video_00001.m4s", "a=1&b=2"},
		{"/a%2Fb/%E2%82%AC", "a&a=&a=x&b=%26"},
		{"/" + strings.Repeat("abcdefgh/", 800), strings.Repeat("x=1&", 100) + "x=1"},
	}
	for _, tt := range tests {
		name := tt.path
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				p, q, err := n.Normalize(tt.path, tt.query)
				if err != nil || p != tt.path || q != tt.query {
					t.Fatalf("Normalize(%q, %q) = %q, %q, %v; want the input", tt.path, tt.query, p, q, err)
				}
			})
			if allocs != 0 {
				t.Errorf("Normalize of a normal path allocates %v times, want 0", allocs)
			}
		})
	}
}

func TestErrorsDoNotAllocate(t *testing.T) {
	n := mustNew(t, Config{})
	for _, in := range []string{"/../x", "/a%zz", "/a%00", "x", "/" + strings.Repeat("a", MaxLen)} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, err := n.Normalize(in, ""); err == nil {
				t.Fatalf("Normalize(%q): no error", in)
			}
		})
		// Rejecting on the fast checks must be free; the slow path may allocate its buffer.
		if allocs > 1 {
			t.Errorf("Normalize(%.20q) allocates %v times", in, allocs)
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	n := mustNew(b, Config{IgnoreParams: []string{"token", "utm_*"}})
	b.Run("normal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _, _ = n.Normalize("/live/channel7/1080p/segment_000123.m4s", "cdn=1&v=2")
		}
	})
	b.Run("rewrite", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _, _ = n.Normalize("/live//channel7/./1080p/%73egment_000123.m4s", "v=2&token=abc&cdn=1")
		}
	})
}
