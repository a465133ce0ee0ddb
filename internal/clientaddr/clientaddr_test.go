package clientaddr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustPrefixes(t testing.TB, list ...string) []netip.Prefix {
	t.Helper()
	ps, err := ParsePrefixes(list)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestParse(t *testing.T) {
	t.Parallel()
	trusted := mustPrefixes(t, "10.0.0.0/8", "2001:db8:1::/48", "192.0.2.7")
	tests := []struct {
		name, remote, xff string
		want              string
		err               error
	}{
		{"untrusted peer, no xff", "203.0.113.9:5555", "", "203.0.113.9", nil},
		{"untrusted peer ignores xff", "203.0.113.9:5555", "198.51.100.1", "203.0.113.9", nil},
		{"untrusted peer ignores bad xff", "203.0.113.9:5555", "garbage", "203.0.113.9", nil},
		{"trusted peer, no xff", "10.1.1.1:443", "", "10.1.1.1", nil},
		{"trusted peer, one hop", "10.1.1.1:443", "198.51.100.1", "198.51.100.1", nil},
		{"right-most untrusted wins", "10.1.1.1:443", "1.1.1.1, 198.51.100.1, 10.2.2.2", "198.51.100.1", nil},
		{"spoofed left part is not believed", "10.1.1.1:443", "garbage, 198.51.100.1", "198.51.100.1", nil},
		{"all hops trusted: left-most", "10.1.1.1:443", "10.3.3.3, 10.2.2.2", "10.3.3.3", nil},
		{"single trusted address", "192.0.2.7:80", "198.51.100.1", "198.51.100.1", nil},
		{"neighbour of a single trusted address", "192.0.2.8:80", "198.51.100.1", "192.0.2.8", nil},
		{"ipv6 peer", "[2001:db8:1::5]:443", "2001:db8:2::9", "2001:db8:2::9", nil},
		{"ipv6 peer, no port", "2001:db8:1::5", "198.51.100.1", "198.51.100.1", nil},
		{"bracketed ipv6 hop with port", "10.1.1.1:1", "[2001:db8:2::9]:1234", "2001:db8:2::9", nil},
		{"ipv4 hop with port", "10.1.1.1:1", "198.51.100.1:8080", "198.51.100.1", nil},
		{"ipv4-mapped peer", "[::ffff:10.1.1.1]:443", "198.51.100.1", "198.51.100.1", nil},
		{"ipv4-mapped hop", "10.1.1.1:1", "::ffff:198.51.100.1", "198.51.100.1", nil},
		{"zone dropped", "[fe80::1%eth0]:80", "", "fe80::1", nil},
		{"empty elements", "10.1.1.1:1", " , 198.51.100.1 ,, ", "198.51.100.1", nil},
		{"only empty elements", "10.1.1.1:1", " , ,", "10.1.1.1", nil},
		{"tabs", "10.1.1.1:1", "\t198.51.100.1\t", "198.51.100.1", nil},
		{"joined header lines", "10.1.1.1:1", "198.51.100.1,10.9.9.9", "198.51.100.1", nil},
		{"bad right-most hop", "10.1.1.1:1", "198.51.100.1, unknown", "", ErrBadForwardedFor},
		{"obfuscated hop", "10.1.1.1:1", "_hidden", "", ErrBadForwardedFor},
		{"hostname hop", "10.1.1.1:1", "example.com", "", ErrBadForwardedFor},
		{"ipv6 hop with bare port", "10.1.1.1:1", "2001:db8::1:80:x", "", ErrBadForwardedFor},
		{"too long", "10.1.1.1:1", strings.Repeat("10.0.0.1,", 500) + "1.2.3.4", "", ErrBadForwardedFor},
		{"too many hops", "10.1.1.1:1", strings.Repeat("10.0.0.1,", 70) + "10.0.0.2", "", ErrBadForwardedFor},
		{"bad peer", "nonsense", "", "", ErrBadPeer},
		{"empty peer", "", "", "", ErrBadPeer},
		{"peer with bad port", "1.2.3.4:http", "", "", ErrBadPeer},
		{"peer with long port", "1.2.3.4:1234567", "", "", ErrBadPeer},
		{"bracketed ipv4", "[1.2.3.4]:80", "", "", ErrBadPeer},
		{"unclosed bracket", "[2001:db8::1:80", "", "", ErrBadPeer},
		{"unix socket", "@", "", "", ErrBadPeer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.remote, tc.xff, trusted)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				return
			}
			if want := netip.MustParseAddr(tc.want); got != want {
				t.Fatalf("Parse = %v, want %v", got, want)
			}
		})
	}
}

func TestParseNoTrustedProxies(t *testing.T) {
	t.Parallel()
	got, err := Parse("10.1.1.1:1", "198.51.100.1", nil)
	if err != nil || got != netip.MustParseAddr("10.1.1.1") {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	got := mustPrefixes(t, " 10.1.2.3/8 ", "2001:db8::1", "::ffff:192.0.2.0/120", "192.0.2.1")
	want := []string{"10.0.0.0/8", "2001:db8::1/128", "192.0.2.0/24", "192.0.2.1/32"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("%d: %v, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", ""} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("ParsePrefixes(%q): no error", bad)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	trusted := mustPrefixes(t, "10.0.0.0/8")
	n := testing.AllocsPerRun(100, func() {
		_, _ = Parse("10.1.1.1:443", "1.1.1.1, 198.51.100.1, 10.2.2.2", trusted)
		_, _ = Parse("[2001:db8::1]:443", "", trusted)
	})
	if n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func BenchmarkParse(b *testing.B) {
	trusted := mustPrefixes(b, "10.0.0.0/8", "2001:db8:1::/48")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse("10.1.1.1:443", "1.1.1.1, 198.51.100.1, 10.2.2.2", trusted)
	}
}
