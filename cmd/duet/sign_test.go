package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/signedurl"
)

// `duet sign` mints, with the edge's own configuration, tokens the edge's check accepts; its
// mistakes say what to fix.
func TestSignCommand(t *testing.T) {
	secretA, secretB := strings.Repeat("a", 32), strings.Repeat("b", 32)
	cfg := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(cfg, []byte("signed_urls:\n  keys: [{id: old, secret: "+secretA+"}, {id: new, secret: "+secretB+"}]\n  sign_with: new\n  protect: [/vod/premium/]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := signedurl.NewKeys([]signedurl.Key{{ID: "old", Secret: secretA}, {ID: "new", Secret: secretB}})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(environ []string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"sign"}, args...), &out, &errb, environ)
		return strings.TrimSpace(out.String()), err
	}
	path, err := sign(nil, "/vod/%70remium/", "--config", cfg, "--object", "/vod/premium/720p/seg1.ts", "--client", "192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	tok, rest, ok := signedurl.SplitPath(path)
	if !ok || rest != "/vod/premium/720p/seg1.ts" {
		t.Fatalf("printed %q, want /_t/<token>/vod/premium/720p/seg1.ts", path)
	}
	c, err := signedurl.Parse(tok)
	if err != nil || c.KeyID != "new" || c.Prefix != "/vod/premium/" || time.Until(c.Expires) < 23*time.Hour {
		t.Fatalf("claims %+v (%v)", c, err)
	}
	if err := ks.Check(tok, rest, netip.MustParseAddr("192.0.2.9"), time.Now()); err != nil {
		t.Fatalf("the edge refuses the token: %v", err)
	}
	// Keys from the environment, another key by flag, the bare token printed.
	env := []string{"DUET_EDGE_SIGNED_URLS_KEYS=[{id: old, secret: " + secretA + "}]"}
	tok, err = sign(env, "/vod/free/", "--key", "old", "--ttl", "1m")
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Check(tok, "/vod/free/a.ts", netip.Addr{}, time.Now()); err != nil {
		t.Fatalf("%s: %v", tok, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"/vod/"}, "no key to sign with"},
		{[]string{"/vod/", "--config", cfg, "--key", "gone"}, `no key "gone"`},
		{[]string{"/../x", "--config", cfg}, `".." segment`},
		{[]string{"/vod/", "--config", cfg, "--client", "nope"}, "not an IP address"},
		{[]string{"/vod/", "--config", cfg, "--object", "/other/x.ts"}, "not under the prefix"},
		{[]string{"/vod/", "--config", cfg, "--ttl", "-1s"}, "must be positive"},
	} {
		if _, err := sign(nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("sign %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
