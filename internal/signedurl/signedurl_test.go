package signedurl

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	secretA = strings.Repeat("a", 32)
	secretB = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-longer-than-a-block"
)

func keys(t testing.TB, ks ...Key) *Keys {
	t.Helper()
	k, err := NewKeys(ks)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The MAC is standard HMAC-SHA256: anyone can mint tokens with their own language's library.
func TestMACIsHMACSHA256(t *testing.T) {
	for _, secret := range []string{secretA, secretB} {
		ks := keys(t, Key{ID: "k1", Secret: secret})
		tok, err := ks.Sign(Claims{KeyID: "k1", Expires: time.Unix(2_000_000_000, 0), Prefix: "/vod/abc/"})
		if err != nil {
			t.Fatal(err)
		}
		i := strings.LastIndexByte(tok, '.')
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(tok[:i]))
		if want := base64.RawURLEncoding.EncodeToString(m.Sum(nil)); tok[i+1:] != want {
			t.Fatalf("mac %s, want %s", tok[i+1:], want)
		}
		if want := "1.k1.2000000000." + base64.RawURLEncoding.EncodeToString([]byte("/vod/abc/")) + ".."; !strings.HasPrefix(tok, want) {
			t.Fatalf("token %s does not start with %s", tok, want)
		}
	}
}

func TestCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ks := keys(t, Key{ID: "old", Secret: secretA}, Key{ID: "new", Secret: secretB})
	other := keys(t, Key{ID: "new", Secret: strings.Repeat("z", 40)})
	client := netip.MustParseAddr("192.0.2.7")
	sign := func(ks *Keys, c Claims) string {
		t.Helper()
		tok, err := ks.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(ks, Claims{KeyID: "new", Expires: now.Add(time.Hour), Prefix: "/vod/abc"})
	tampered := good[:2] + "old" + good[5:] // claims the other key
	for _, tc := range []struct {
		name, tok, path string
		client          netip.Addr
		want            error
	}{
		{"ok", good, "/vod/abc/720p/seg1.ts", client, nil},
		{"ok exact", good, "/vod/abc", client, nil},
		{"old key still accepted", sign(ks, Claims{KeyID: "old", Expires: now.Add(time.Hour), Prefix: "/"}), "/x", client, nil},
		{"missing", "", "/vod/abc/a.ts", client, ErrMissing},
		{"wrong prefix", good, "/vod/abcd/a.ts", client, ErrScope},
		{"outside", good, "/vod/a.ts", client, ErrScope},
		{"expired", sign(ks, Claims{KeyID: "new", Expires: now, Prefix: "/vod/abc/"}), "/vod/abc/a.ts", client, ErrExpired},
		{"tampered key id", tampered, "/vod/abc/a.ts", client, ErrSignature},
		{"other secret", sign(other, Claims{KeyID: "new", Expires: now.Add(time.Hour), Prefix: "/vod/abc/"}), "/vod/abc/a.ts", client, ErrSignature},
		{"unknown key", strings.Replace(good, ".new.", ".k9.", 1), "/vod/abc/a.ts", client, ErrUnknownKey},
		{"garbage", "hello", "/vod/abc/a.ts", client, ErrMalformed},
		{"bound ok", sign(ks, Claims{KeyID: "new", Expires: now.Add(time.Hour), Prefix: "/", Client: client}), "/a", client, nil},
		{"bound mapped", sign(ks, Claims{KeyID: "new", Expires: now.Add(time.Hour), Prefix: "/", Client: client}), "/a", netip.MustParseAddr("::ffff:192.0.2.7"), nil},
		{"bound other", sign(ks, Claims{KeyID: "new", Expires: now.Add(time.Hour), Prefix: "/", Client: client}), "/a", netip.MustParseAddr("192.0.2.8"), ErrClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ks.Check(tc.tok, tc.path, tc.client, now)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Check(%s, %s) = %v, want %v", tc.tok, tc.path, err, tc.want)
			}
		})
	}
	// Every single-byte change of a good token is refused.
	for i := range good {
		b := []byte(good)
		b[i] ^= 0x01
		if err := ks.Check(string(b), "/vod/abc/a.ts", client, now); err == nil {
			t.Fatalf("token with byte %d changed (%s) accepted", i, b)
		}
	}
}

func TestSignRefusesBadClaims(t *testing.T) {
	ks := keys(t, Key{ID: "k", Secret: secretA})
	exp := time.Now().Add(time.Hour)
	for _, c := range []Claims{
		{KeyID: "nope", Expires: exp, Prefix: "/"},
		{KeyID: "k", Expires: exp, Prefix: "vod/"},
		{KeyID: "k", Expires: exp, Prefix: "/vod/../x"},
		{KeyID: "k", Expires: exp, Prefix: "/vod//x"},
		{KeyID: "k", Expires: exp, Prefix: "/vod/a%20b/"},
		{KeyID: "k", Expires: exp, Prefix: "/vod/a\\b/"},
		{KeyID: "k", Expires: exp, Prefix: "/" + strings.Repeat("a", MaxPrefixLen)},
		{KeyID: "k", Expires: time.Unix(0, 0), Prefix: "/"},
	} {
		if tok, err := ks.Sign(c); err == nil {
			t.Errorf("Sign(%+v) = %s, want an error", c, tok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Protect: []string{"/vod/"}}, "needs at least one key"},
		{Config{Keys: KeyList{{ID: "k", Secret: "short"}}}, "at least 32"},
		{Config{Keys: KeyList{{ID: "k", Secret: secretA}, {ID: "k", Secret: secretA}}}, "listed twice"},
		{Config{Keys: KeyList{{ID: "k.1", Secret: secretA}}}, "must be 1 to 32"},
		{Config{Keys: KeyList{{ID: "k", Secret: secretA}}, SignWith: "j"}, "names no key"},
		{Config{Keys: KeyList{{ID: "k", Secret: secretA}}, Protect: []string{"vod"}}, "decoded absolute path"},
	} {
		err := tc.cfg.Validate("signed_urls")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	ok := Config{Keys: KeyList{{ID: "a", Secret: secretA}, {ID: "b", Secret: secretB}}, Protect: []string{"/vod/premium/"}}
	if err := ok.Validate("signed_urls"); err != nil {
		t.Fatal(err)
	}
	if ok.SigningKey() != "b" || !ok.Protected("/vod/premium/x.ts") || ok.Protected("/vod/premium2/x.ts") || ok.Protected("/vod/x.ts") {
		t.Fatal("SigningKey or Protected is wrong")
	}
}

// Protection is matched against the path as origins read it: S3 takes %2F for '/'.
func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"/vod/premium/a.ts": "/vod/premium/a.ts", "/vod%2Fpremium/a.ts": "/vod/premium/a.ts",
		"/vod%5Cpremium/a.ts": "/vod/premium/a.ts", "/my%20show/a.ts": "/my show/a.ts", "/bad%zz": "/bad%zz",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%s) = %s, want %s", in, got, want)
		}
	}
	c := Config{Keys: KeyList{{ID: "k", Secret: secretA}}, Protect: []string{"/vod/premium/", "/my show/"}}
	for _, p := range []string{"/vod%2Fpremium/a.ts", "/vod%5Cpremium/a.ts", "/my%20show/a.ts"} {
		if !c.Protected(Canonical(p)) {
			t.Errorf("%s is not protected", p)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Canonical("/vod/premium/a.ts") }); n != 0 {
		t.Fatalf("Canonical of a path without %% allocates %.0f times", n)
	}
}

func TestSplitPathAndQuery(t *testing.T) {
	for _, tc := range []struct{ in, tok, rest string }{
		{"/_t/abc/vod/x.ts", "abc", "/vod/x.ts"},
		{"/_t/abc", "abc", ""},
		{"/vod/x.ts", "", "/vod/x.ts"},
	} {
		tok, rest, _ := SplitPath(tc.in)
		if tok != tc.tok || rest != tc.rest {
			t.Errorf("SplitPath(%s) = %q %q", tc.in, tok, rest)
		}
	}
	for _, tc := range []struct{ q, tok, rest string }{
		{"a=1&duet_token=xy&b", "xy", "a=1&duet_token=xy&b"},
		{"duet_token=xy&b=2", "xy", "b=2"},
		{"a=1&duet_token=xy", "xy", "a=1"},
		{"duet_token=xy", "xy", ""},
		{"duet_token", "", "duet_token"},
		{"duet_tokens=1", "", "duet_tokens=1"},
		{"", "", ""},
	} {
		if tok, rest := FromQuery(tc.q); tok != tc.tok || rest != tc.rest {
			t.Errorf("FromQuery(%s) = %q %q, want %q %q", tc.q, tok, rest, tc.tok, tc.rest)
		}
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	ks := keys(t, Key{ID: "old", Secret: secretA}, Key{ID: "new", Secret: secretB})
	now := time.Now()
	tok, _ := ks.Sign(Claims{KeyID: "new", Expires: now.Add(time.Hour), Prefix: "/vod/abc/", Client: netip.MustParseAddr("2001:db8::1")})
	client := netip.MustParseAddr("2001:db8::1")
	for _, path := range []string{"/vod/abc/a.ts", "/other"} {
		if n := testing.AllocsPerRun(100, func() { _ = ks.Check(tok, path, client, now) }); n != 0 {
			t.Fatalf("Check allocates %.0f times", n)
		}
	}
	bad := "1.x.1.L2E.." + strings.Repeat("A", 43)
	if n := testing.AllocsPerRun(100, func() { _ = ks.Check(bad, "/a", client, now) }); n != 0 {
		t.Fatalf("a refused Check allocates %.0f times", n)
	}
}

func BenchmarkCheck(b *testing.B) {
	ks := keys(b, Key{ID: "old", Secret: secretA}, Key{ID: "new", Secret: secretB})
	now := time.Now()
	tok, _ := ks.Sign(Claims{KeyID: "new", Expires: now.Add(time.Hour), Prefix: "/vod/abc/"})
	b.ReportAllocs()
	for b.Loop() {
		if err := ks.Check(tok, "/vod/abc/720p/seg00042.ts", netip.Addr{}, now); err != nil {
			b.Fatal(err)
		}
	}
}
