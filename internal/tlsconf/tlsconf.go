// Package tlsconf terminates TLS for Duet's HTTP listeners. Certificates come from files (the
// viewer's server name picks among them, and a file replaced on disk is served to new
// connections within a second, open connections keeping theirs) or from an ACME CA through
// certmagic, with storage shared by the edges of a region, renewal before expiry and OCSP
// stapling. TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers, session tickets with keys rotated by
// crypto/tls, ALPN http/1.1; a redirect handler for plain HTTP and the Strict-Transport-Security
// value complete HTTPS.
//
// The TLS sits directly on the TCP socket: the server wraps each accepted connection with
// tls.Server(conn, Terminator.TLSConfig()) and reads plaintext from it, so a server that
// inspects the bytes of requests (the edge's viewerConn) sits above the TLS.
package tlsconf

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// minVersions maps Config.MinVersion to crypto/tls's constants.
// ("" is the default, for configs not built from Default).
var minVersions = map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// cipherSuites are TLS 1.2's: ECDHE key exchange (forward secrecy) and AEAD ciphers only, as
// Mozilla's "intermediate" profile. crypto/tls orders them by the hardware's AES support. TLS
// 1.3's suites are not configurable and all qualify.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ALPN protocol names.
const (
	alpnHTTP11  = "http/1.1"
	alpnACMETLS = "acme-tls/1" // RFC 8737: the TLS-ALPN-01 challenge
)

// Terminator holds a listener's certificates and its TLS configuration.
type Terminator struct {
	cfg   Config
	log   *slog.Logger
	files *fileCerts // nil without Config.Certificates
	// startACME is the ACME client (internal/tlsconf/acme.Start); nil: ACME domains are refused.
	startACME ACME
	acme      atomic.Pointer[acmeHolder]
	tls       *tls.Config
}

// ACME starts an ACME client that obtains and renews cfg.ACME's certificates, answering its
// challenges on ls, until ctx ends. internal/tlsconf/acme.Start (certmagic) is the one: the
// commands pass it in, so that a package that serves TLS (the edge) does not link certmagic
// and its dependencies itself.
type ACME func(ctx context.Context, cfg Config, ls Listeners, log *slog.Logger) (ACMEManager, error)

// ACMEManager is a running ACME client.
type ACMEManager interface {
	// GetCertificate answers a handshake for a managed name or a TLS-ALPN-01 challenge.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// Manages reports whether name is one of the managed domains.
	Manages(name string) bool
	// HandleHTTPChallenge answers an HTTP-01 challenge request and reports whether r was one.
	HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool
	// Stop ends the client's background work.
	Stop()
}

// acmeHolder lets an atomic.Pointer hold the interface.
type acmeHolder struct{ ACMEManager }

// New validates cfg and loads its certificate files; acme is the ACME client, needed only
// with acme.domains set. It contacts no CA: ACME starts in Run, once the listeners are open.
func New(cfg Config, log *slog.Logger, acme ACME) (*Terminator, error) {
	if err := cfg.Validate("tls"); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%w: tls: neither certificates nor acme.domains set", ErrConfig)
	}
	if len(cfg.ACME.Domains) > 0 && acme == nil {
		return nil, fmt.Errorf("%w: tls.acme.domains: this program has no ACME client", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Terminator{cfg: cfg, log: log.With("component", "tls"), startACME: acme}
	if len(cfg.Certificates) > 0 {
		f, err := newFileCerts(cfg.Certificates, t.log)
		if err != nil {
			return nil, err
		}
		t.files = f
	}
	protos := []string{alpnHTTP11}
	if len(cfg.ACME.Domains) > 0 && len(cfg.Challenges()) > 0 {
		for _, ch := range cfg.Challenges() {
			if ch == ChallengeTLSALPN {
				protos = append(protos, alpnACMETLS)
			}
		}
	}
	// One config for every connection, never cloned: the session ticket keys crypto/tls
	// generates and rotates live in it, so a ticket issued on one connection resumes on the
	// next. No SetSessionTicketKeys: the automatic keys rotate daily and are never written out.
	t.tls = &tls.Config{
		MinVersion:     minVersions[cfg.MinVersion],
		CipherSuites:   cipherSuites,
		NextProtos:     protos,
		GetCertificate: t.getCertificate,
		// crypto/tls starts every connection with ~1.2 KB records growing packet by packet
		// until 128 KB are sent, for a browser's first paint over a slow link. An edge sends
		// playlists (one small record anyway) and segments a player reads whole: full 16 KiB
		// records from the first byte take a syscall and a record per 16 KiB, not per 1-12 KiB.
		DynamicRecordSizingDisabled: true,
	}
	return t, nil
}

// TLSConfig is the configuration to serve with: tls.Server(conn, t.TLSConfig()) for every
// accepted connection. Do not modify or clone it.
func (t *Terminator) TLSConfig() *tls.Config { return t.tls }

// HSTS is the Strict-Transport-Security value to send with every answer, "" for none.
func (t *Terminator) HSTS() string { return t.cfg.HSTS }

// getCertificate picks the certificate for a handshake: the ACME challenge's, then a file's
// for the name, then ACME's for the name, then the first file's, then ACME's default.
func (t *Terminator) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := t.acme.Load()
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == alpnACMETLS {
		if m == nil {
			return nil, fmt.Errorf("tls-alpn-01 challenge for %q: ACME is not running", hello.ServerName)
		}
		return m.GetCertificate(hello)
	}
	var set *certSet
	if t.files != nil {
		set = t.files.set.Load()
		if c := set.lookup(hello.ServerName); c != nil {
			return c, nil
		}
	}
	if m != nil && (set == nil || m.Manages(hello.ServerName)) {
		return m.GetCertificate(hello)
	}
	if set != nil {
		return set.first, nil
	}
	return nil, fmt.Errorf("no certificate for %q yet: ACME has not started", hello.ServerName)
}

// Listeners are the addresses the Terminator's TLS and redirect listeners are bound to; ACME
// answers its challenges on them.
type Listeners struct {
	TLS      net.Addr
	Redirect net.Addr // nil without Config.RedirectListen
}

// Run reloads changed certificate files and, with ACME configured, obtains and renews the
// certificates, until ctx ends. Call it once the listeners are open (ACME's CA may connect at
// once).
func (t *Terminator) Run(ctx context.Context, ls Listeners) error {
	if len(t.cfg.ACME.Domains) > 0 {
		m, err := t.startACME(ctx, t.cfg, ls, t.log)
		if err != nil {
			return err
		}
		t.acme.Store(&acmeHolder{m})
		defer m.Stop()
	}
	if t.files == nil {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(t.cfg.ReloadInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.files.reload()
		}
	}
}

// RedirectHandler answers plain HTTP: ACME HTTP-01 challenges, and every other request 308
// with the same URL over https on tlsPort (left out when "443").
func (t *Terminator) RedirectHandler(tlsPort string) http.Handler {
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
		if !validHost(host) {
			http.Error(w, "a Host header naming the site is required to redirect to https", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") { // an IPv6 literal
			host = "[" + host + "]"
		}
		if tlsPort != "443" {
			host += ":" + tlsPort
		}
		uri := r.URL.RequestURI()
		if !strings.HasPrefix(uri, "/") { // "*" (OPTIONS *)
			uri = "/" + uri
		}
		http.Redirect(w, r, "https://"+host+uri, http.StatusPermanentRedirect) //nolint:gosec // same host, https: the redirect's whole point
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := t.acme.Load(); m != nil && m.HandleHTTPChallenge(w, r) {
			return
		}
		redirect(w, r)
	})
}

// validHost reports whether h is a host name or an IP address (the redirect names it).
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for i := range len(h) {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
