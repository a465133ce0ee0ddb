package tlsconf

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Config is a listener's TLS: where its certificates come from and how HTTPS is answered. TLS
// is on when Certificates or ACME.Domains is set; the zero value is plain HTTP.
type Config struct {
	// Certificates are PEM certificate-chain and key files, each written "CERT_FILE:KEY_FILE"
	// (in a flag or variable, comma-separated pairs). The viewer's server name (SNI) picks the
	// certificate whose names match it, exactly or through a wildcard such as *.example.com;
	// a viewer that sends no name, or one no certificate has, gets the first. The files are
	// checked every reload_interval: a pair replaced on disk (its modification time, size or
	// inode changed, as when a Kubernetes Secret is updated) is served to new connections,
	// while open connections keep the certificate they started with; a pair that does not
	// load (half written) is retried and the previous one kept. Default none.
	Certificates []CertKey `yaml:"certificates"`
	// ReloadInterval is how often the certificate files are checked for change. Default 1s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// MinVersion is the oldest TLS version accepted: "1.2" (the default) or "1.3". SSL, TLS 1.0
	// and TLS 1.1 are always refused. TLS 1.2 offers only ECDHE key exchange with AEAD ciphers
	// (AES-GCM, ChaCha20-Poly1305); TLS 1.3 has its own, all of them modern. Sessions resume
	// through tickets whose keys the process rotates itself (a new key every day, each
	// accepted for a week, none written anywhere); a ticket from another edge is not accepted
	// and costs a full handshake.
	MinVersion string `yaml:"min_version"`
	// HSTS is the Strict-Transport-Security value sent with every HTTPS answer, for example
	// "max-age=31536000; includeSubDomains". Default "" (not sent): a browser that has seen it
	// refuses plain HTTP to the name for max-age, so turn it on deliberately.
	HSTS string `yaml:"hsts"`
	// RedirectListen is an address for plain HTTP that answers every request 308 with the same
	// URL over https (on the TLS listener's port, left out when it is 443), and answers the
	// ACME HTTP-01 challenge. Default "" (off).
	RedirectListen string `yaml:"redirect_listen"`
	// ACME obtains and renews certificates from an ACME CA.
	ACME ACMEConfig `yaml:"acme"`
}

// ACMEConfig obtains certificates automatically (RFC 8555) through certmagic.
type ACMEConfig struct {
	// Domains are the names to obtain certificates for. The first edge of a region to start
	// obtains them; the others load them from storage. Certificates files, when also set, are
	// preferred for the names they hold. Default none (ACME off).
	Domains []string `yaml:"domains"`
	// CA is the ACME directory URL. Default: the Let’s Encrypt production directory.
	CA string `yaml:"ca"`
	// CARoots is a PEM file of the root certificates that sign the CA's own HTTPS certificate,
	// for a private CA. Default "": the system's roots.
	CARoots string `yaml:"ca_roots"`
	// Email is the ACME account's contact, where the CA sends notices. Default "".
	Email string `yaml:"email"`
	// Storage is the directory holding the ACME account, the certificates, their keys and the
	// locks that make one edge do each issuance and renewal. Point every edge of a region at the
	// same directory (a shared volume, ReadWriteMany in Kubernetes): the others then load the
	// certificate instead of asking the CA, and any of them can answer a challenge. Default
	// ".duet/acme".
	Storage string `yaml:"storage"`
	// Challenges are the ACME challenge types offered: "tls-alpn-01" is answered on the TLS
	// listener, which the CA must reach on port 443; "http-01" on redirect_listen, which the
	// CA must reach on port 80. Default both; http-01 only with redirect_listen set.
	Challenges []string `yaml:"challenges"`
	// OCSPStapling staples the CA's OCSP response to the certificate when the certificate names
	// an OCSP responder, so viewers need not ask the CA. Default true.
	OCSPStapling bool `yaml:"ocsp_stapling"`
	// RenewCheckInterval is how often the certificates are checked for renewal. One is renewed
	// when the CA's renewal information (ARI) says so, or else once a third of its lifetime is
	// left. Default 10m.
	RenewCheckInterval time.Duration `yaml:"renew_check_interval"`
}

// Challenge types.
const (
	ChallengeTLSALPN = "tls-alpn-01"
	ChallengeHTTP    = "http-01"
)

// LetsEncrypt is the default ACME directory.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Default returns the defaults every field comment names.
func Default() Config {
	return Config{
		ReloadInterval: time.Second,
		MinVersion:     "1.2",
		ACME: ACMEConfig{
			CA:                 LetsEncrypt,
			Storage:            ".duet/acme",
			Challenges:         []string{ChallengeTLSALPN, ChallengeHTTP},
			OCSPStapling:       true,
			RenewCheckInterval: 10 * time.Minute,
		},
	}
}

// Enabled reports whether the listener speaks TLS.
func (c *Config) Enabled() bool { return len(c.Certificates) > 0 || len(c.ACME.Domains) > 0 }

// CertKey is a certificate-chain file and its key file.
type CertKey struct {
	Cert string
	Key  string
}

// UnmarshalText reads "CERT_FILE:KEY_FILE".
func (p *CertKey) UnmarshalText(text []byte) error {
	cert, key, ok := strings.Cut(string(text), ":")
	if !ok || cert == "" || key == "" || strings.Contains(key, ":") {
		return fmt.Errorf("certificate %q: want CERT_FILE:KEY_FILE, such as /etc/duet/tls/tls.crt:/etc/duet/tls/tls.key", text)
	}
	p.Cert, p.Key = cert, key
	return nil
}

// MarshalText writes "CERT_FILE:KEY_FILE".
func (p CertKey) MarshalText() ([]byte, error) { return []byte(p.Cert + ":" + p.Key), nil }

// hstsValue is what Strict-Transport-Security may hold (RFC 6797 §6.1): max-age first, then
// the optional directives.
var hstsValue = regexp.MustCompile(`^max-age=[0-9]{1,10}(\s*;\s*(includeSubDomains|preload))*$`)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid TLS config")

// Validate reports every problem at once; prefix is the settings' path ("tls").
func (c *Config) Validate(prefix string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s."+format, append([]any{ErrConfig, prefix}, args...)...))
	}
	for i, p := range c.Certificates {
		if p.Cert == "" || p.Key == "" {
			bad("certificates[%d]: want CERT_FILE:KEY_FILE", i)
		}
	}
	if len(c.Certificates) > 0 && c.ReloadInterval < 10*time.Millisecond {
		bad("reload_interval must be at least 10ms")
	}
	if _, ok := minVersions[c.MinVersion]; !ok {
		bad("min_version %q: use \"1.2\" or \"1.3\"", c.MinVersion)
	}
	if c.HSTS != "" && !hstsValue.MatchString(c.HSTS) {
		bad("hsts %q: want max-age=SECONDS, optionally followed by \"; includeSubDomains\" and \"; preload\"", c.HSTS)
	}
	if c.RedirectListen != "" {
		if _, _, err := net.SplitHostPort(c.RedirectListen); err != nil {
			bad("redirect_listen %q is not host:port", c.RedirectListen)
		}
	}
	if c.RedirectListen != "" && !c.Enabled() {
		bad("redirect_listen needs TLS: set certificates or acme.domains")
	}
	if c.HSTS != "" && !c.Enabled() {
		bad("hsts needs TLS: set certificates or acme.domains")
	}
	a := &c.ACME
	if len(a.Domains) > 0 {
		for _, d := range a.Domains {
			if d == "" || strings.ContainsAny(d, " /:") || net.ParseIP(d) != nil {
				bad("acme.domains: %q is not a DNS name", d)
			}
		}
		if a.CA == "" || !strings.HasPrefix(a.CA, "https://") {
			bad("acme.ca %q must be an https:// directory URL", a.CA)
		}
		if a.Storage == "" {
			bad("acme.storage is required (a directory shared by the region's edges)")
		}
		if a.RenewCheckInterval < time.Second {
			bad("acme.renew_check_interval must be at least 1s")
		}
		for _, ch := range a.Challenges {
			if ch != ChallengeTLSALPN && ch != ChallengeHTTP {
				bad("acme.challenges: %q is unknown: use %q or %q", ch, ChallengeTLSALPN, ChallengeHTTP)
			}
		}
		if len(c.Challenges()) == 0 {
			bad("acme.challenges: none usable (http-01 needs redirect_listen)")
		}
	}
	return errors.Join(errs...)
}

// Challenges are the challenge types offered: those configured, http-01 only with a redirect
// listener to answer it.
func (c *Config) Challenges() []string {
	var out []string
	for _, ch := range c.ACME.Challenges {
		if ch == ChallengeHTTP && c.RedirectListen == "" || slices.Contains(out, ch) {
			continue
		}
		out = append(out, ch)
	}
	return out
}
