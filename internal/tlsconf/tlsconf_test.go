package tlsconf

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/tlsconf/tlstest"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := Default()
	ok.Certificates = []CertKey{{Cert: "a.crt", Key: "a.key"}}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // "" for valid
	}{
		{"defaults, TLS off", func(c *Config) { c.Certificates = nil }, ""},
		{"files", func(*Config) {}, ""},
		{"min 1.3", func(c *Config) { c.MinVersion = "1.3" }, ""},
		{"min 1.1", func(c *Config) { c.MinVersion = "1.1" }, "min_version"},
		{"hsts", func(c *Config) { c.HSTS = "max-age=63072000; includeSubDomains; preload" }, ""},
		{"bad hsts", func(c *Config) { c.HSTS = "max-age=1\r\nX: y" }, "hsts"},
		{"hsts without TLS", func(c *Config) { c.Certificates, c.HSTS = nil, "max-age=1" }, "hsts needs TLS"},
		{"redirect", func(c *Config) { c.RedirectListen = ":80" }, ""},
		{"bad redirect", func(c *Config) { c.RedirectListen = "80" }, "redirect_listen"},
		{"acme", func(c *Config) { c.ACME.Domains = []string{"cdn.example.com"} }, ""},
		{"acme ip", func(c *Config) { c.ACME.Domains = []string{"10.0.0.1"} }, "not a DNS name"},
		{"acme http ca", func(c *Config) { c.ACME.Domains, c.ACME.CA = []string{"a.example"}, "http://ca" }, "acme.ca"},
		{"acme unknown challenge", func(c *Config) { c.ACME.Domains, c.ACME.Challenges = []string{"a.example"}, []string{"dns-01"} }, "dns-01"},
		{"acme http-01 without redirect", func(c *Config) {
			c.ACME.Domains, c.ACME.Challenges = []string{"a.example"}, []string{ChallengeHTTP}
		}, "none usable"},
		{"reload interval", func(c *Config) { c.ReloadInterval = 0 }, "reload_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.ACME.Challenges = append([]string(nil), ok.ACME.Challenges...)
			tc.mutate(&c)
			err := c.Validate("tls")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestCertKeyText(t *testing.T) {
	t.Parallel()
	var p CertKey
	if err := p.UnmarshalText([]byte("/tls/a.crt:/tls/a.key")); err != nil || p.Cert != "/tls/a.crt" || p.Key != "/tls/a.key" {
		t.Fatalf("%+v %v", p, err)
	}
	if b, _ := p.MarshalText(); string(b) != "/tls/a.crt:/tls/a.key" {
		t.Fatalf("marshal %q", b)
	}
	for _, bad := range []string{"a.crt", ":a.key", "a.crt:", "a:b:c"} {
		if err := p.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestReloadKeepsCertificateWhileFilesAreBroken: a pair that does not load (a key that does not
// match its certificate, as while the files are being replaced one by one) keeps the previous
// certificate, and the pair is loaded once the files match again.
func TestReloadKeepsCertificateWhileFilesAreBroken(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	c, k := ca.WriteFiles(t, dir, "a", 1, "a.example")
	f, err := newFileCerts([]CertKey{{Cert: c, Key: k}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 { return f.set.Load().first.Leaf.SerialNumber.Int64() }
	if f.reload() || serial() != 1 {
		t.Fatal("unchanged files reloaded")
	}
	c2, _ := ca.Issue(t, 2, "a.example")
	writeFile(t, c, c2) // the new certificate, the old key
	if f.reload() || serial() != 1 {
		t.Fatalf("a mismatched pair replaced the certificate (serial %d)", serial())
	}
	if err := os.Remove(k); err != nil {
		t.Fatal(err)
	}
	if f.reload() || serial() != 1 {
		t.Fatal("a missing key replaced the certificate")
	}
	ca.WriteFiles(t, dir, "a", 3, "a.example")
	if !f.reload() || serial() != 3 {
		t.Fatalf("the repaired pair not loaded (serial %d)", serial())
	}
	// Same content rewritten: another mtime or inode, loaded again (harmless).
	time.Sleep(10 * time.Millisecond) //nolint:forbidigo // a later mtime needs a later clock
	b, _ := os.ReadFile(c)
	writeFile(t, c, b)
	f.reload()
	if serial() != 3 {
		t.Fatal("rewritten certificate lost")
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.Certificates = []CertKey{{Cert: filepath.Join(t.TempDir(), "none.crt"), Key: "none.key"}}
	if _, err := New(cfg, nil, nil); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "none.crt") {
		t.Fatalf("missing files: %v", err)
	}
}

func TestRedirectHandler(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	c, k := ca.WriteFiles(t, t.TempDir(), "a", 1, "a.example")
	cfg := Default()
	cfg.Certificates = []CertKey{{Cert: c, Key: k}}
	term, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if term.TLSConfig().MinVersion != tls.VersionTLS12 || len(term.TLSConfig().NextProtos) != 1 {
		t.Fatalf("TLS config %+v", term.TLSConfig())
	}
	for _, tc := range []struct{ port, host, uri, status, location string }{
		{"443", "cdn.example.com", "/a.m3u8?x=1", "308", "https://cdn.example.com/a.m3u8?x=1"},
		{"8443", "cdn.example.com:80", "/a", "308", "https://cdn.example.com:8443/a"},
		{"8443", "[::1]:80", "/a", "308", "https://[::1]:8443/a"},
		{"443", "", "/a", "400", ""},
		{"443", "evil.example/x", "/a", "400", ""},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "http://x"+tc.uri, nil)
		r.Host = tc.host
		term.RedirectHandler(tc.port).ServeHTTP(w, r)
		if got := w.Result().Status[:3]; got != tc.status || w.Header().Get("Location") != tc.location {
			t.Errorf("Host %q: %s Location %q, want %s %q", tc.host, got, w.Header().Get("Location"), tc.status, tc.location)
		}
	}
}

// FuzzRedirectLocation: whatever Host and path a viewer sends, the redirect stays on https and
// the host the viewer named (no header injection, no other authority).
func FuzzRedirectLocation(f *testing.F) {
	ca := tlstest.NewCA(f)
	c, k := ca.WriteFiles(f, f.TempDir(), "a", 1, "a.example")
	cfg := Default()
	cfg.Certificates = []CertKey{{Cert: c, Key: k}}
	term, err := New(cfg, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := term.RedirectHandler("8443")
	for _, s := range [][2]string{{"cdn.example.com", "/a"}, {"[::1]:80", "//evil.example/"}, {"a@b", "/x?y"}, {"a:b:c", "/%0d%0a"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		r, err := http.NewRequest(http.MethodGet, "http://x.example/", nil)
		if err != nil {
			return
		}
		r.Host, r.URL.Path, r.URL.RawPath = host, path, ""
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		loc := w.Header().Get("Location")
		if w.Code == http.StatusBadRequest {
			return
		}
		if w.Code != http.StatusPermanentRedirect || !strings.HasPrefix(loc, "https://") || strings.ContainsAny(loc, "\r\n") {
			t.Fatalf("Host %q path %q: %d Location %q", host, path, w.Code, loc)
		}
		authority, _, _ := strings.Cut(strings.TrimPrefix(loc, "https://"), "/")
		if strings.ContainsAny(authority, "@?#\\") || !strings.HasSuffix(authority, ":8443") {
			t.Fatalf("Host %q path %q: Location %q leaves for another authority", host, path, loc)
		}
	})
}
