package clientaddr

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParse checks that any peer and X-Forwarded-For either fail with one of
// the two errors or give an address that is the peer or one of the hops, and
// that only a trusted peer's header is ever read.
func FuzzParse(f *testing.F) {
	for _, s := range [][2]string{
		{"10.1.1.1:443", "1.1.1.1, 198.51.100.1, 10.2.2.2"},
		{"203.0.113.9:5555", "198.51.100.1"},
		{"[2001:db8:1::5]:443", "[2001:db8:2::9]:1234, ::ffff:1.2.3.4"},
		{"[fe80::1%eth0]:80", ""},
		{"10.1.1.1:1", " , ,"},
		{"10.1.1.1:1", "unknown"},
		{"1.2.3.4:99999", "1.2.3.4:80"},
		{"[::1]", "[1.2.3.4]"},
	} {
		f.Add(s[0], s[1])
	}
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("::1/128"),
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got, err := Parse(remote, xff, trusted)
		if err != nil {
			if err != ErrBadPeer && err != ErrBadForwardedFor {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !got.IsValid() || got.Zone() != "" || got.Is4In6() {
			t.Fatalf("Parse = %v", got)
		}
		peer, perr := Parse(remote, "", nil)
		if perr != nil {
			t.Fatalf("peer %q accepted with xff, refused alone: %v", remote, perr)
		}
		if !isTrusted(peer, trusted) {
			if got != peer {
				t.Fatalf("untrusted peer %v: got %v", peer, got)
			}
			return
		}
		if got == peer {
			return
		}
		// The answer is one of the hops.
		for hop := range strings.SplitSeq(xff, ",") {
			if a, ok := parseHost(strings.Trim(hop, " \t")); ok && a == got {
				return
			}
		}
		t.Fatalf("Parse(%q, %q) = %v: neither the peer nor a hop", remote, xff, got)
	})
}
