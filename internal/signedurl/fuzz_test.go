package signedurl

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// FuzzCheck feeds arbitrary tokens and paths to the parser and the check: nothing panics, a
// token that Parse refuses is refused by Check, and a token that Check accepts round-trips
// through Parse and Sign to the same text.
func FuzzCheck(f *testing.F) {
	ks, err := NewKeys([]Key{{ID: "k1", Secret: secretA}, {ID: "k2", Secret: secretB}})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []Claims{
		{KeyID: "k1", Expires: now.Add(time.Hour), Prefix: "/vod/abc/"},
		{KeyID: "k2", Expires: now.Add(time.Minute), Prefix: "/", Client: netip.MustParseAddr("10.0.0.1")},
		{KeyID: "k2", Expires: now.Add(time.Minute), Prefix: "/a", Client: netip.MustParseAddr("2001:db8::1")},
	} {
		tok, err := ks.Sign(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok, c.Prefix+"x", "10.0.0.1")
	}
	f.Add("1.k1.1.Lw..", "/", "")
	f.Add("1..1.Lw..AAAA", "/", "::1")
	f.Add(strings.Repeat(".", 7), "/a", "1.2.3.4")
	f.Add("1.k1.01.Lw.1.2.3.4."+strings.Repeat("A", 43), "/a", "1.2.3.4")
	f.Fuzz(func(t *testing.T, tok, path, client string) {
		addr, _ := netip.ParseAddr(client)
		err := ks.Check(tok, path, addr, now)
		c, perr := Parse(tok)
		if perr != nil {
			if err == nil {
				t.Fatalf("Parse refuses %q (%v) but Check accepts it", tok, perr)
			}
			return
		}
		if err != nil {
			return
		}
		again, serr := ks.Sign(c)
		if serr != nil || again != tok {
			t.Fatalf("accepted %q, re-signed as %q (%v)", tok, again, serr)
		}
		if !Covers(c.Prefix, path) || !c.Expires.After(now) {
			t.Fatalf("accepted %q for %q: claims %+v", tok, path, c)
		}
	})
}
