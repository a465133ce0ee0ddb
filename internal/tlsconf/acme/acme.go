// Package acme obtains and renews certificates with ACME (RFC 8555) through certmagic, for
// tlsconf.Terminator: Start is the tlsconf.ACME the commands wire in.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/certmagic"

	"github.com/duetcdn/duet/internal/tlsconf"
)

// manager is certmagic managing Config.ACME.Domains.
type manager struct {
	magic   *certmagic.Config
	cache   *certmagic.Cache
	issuer  *certmagic.ACMEIssuer
	domains []string // lower case
	http    bool     // HTTP-01 is answered on the redirect listener
}

var _ tlsconf.ACMEManager = (*manager)(nil)

func (m *manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.magic.GetCertificate(hello)
}

func (m *manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.http && m.issuer.HandleHTTPChallenge(w, r)
}

func (m *manager) Manages(name string) bool {
	return slices.Contains(m.domains, strings.ToLower(strings.TrimSuffix(name, ".")))
}

func (m *manager) Stop() { m.cache.Stop() }

// Start (a tlsconf.ACME) builds certmagic's cache, config and issuer and starts managing the domains in
// the background: certificates in storage are loaded, missing ones obtained, all renewed in
// time. The challenges are answered on the Terminator's own listeners: certmagic finds their
// ports taken and leaves the answering to them.
func Start(ctx context.Context, cfg tlsconf.Config, ls tlsconf.Listeners, log *slog.Logger) (tlsconf.ACMEManager, error) {
	a := cfg.ACME
	zl := zapLogger(log.With("component", "acme"))
	m := &manager{}
	for _, d := range a.Domains {
		m.domains = append(m.domains, strings.ToLower(d))
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: a.RenewCheckInterval,
		OCSPCheckInterval:  a.RenewCheckInterval,
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: a.Storage},
		DefaultServerName: m.domains[0],
		OCSP:              certmagic.OCSPConfig{DisableStapling: !a.OCSPStapling},
		Logger:            zl,
		OnEvent: func(_ context.Context, event string, data map[string]any) error {
			switch event {
			case "cert_obtaining", "cert_obtained", "cert_failed", "cached_managed_cert":
				log.Info("acme: "+strings.ReplaceAll(event, "_", " "), "data", fmt.Sprint(data))
			}
			return nil
		},
	})
	tmpl := certmagic.ACMEIssuer{CA: a.CA, Email: a.Email, Agreed: true, Logger: zl,
		DisableHTTPChallenge: true, DisableTLSALPNChallenge: true}
	if a.CARoots != "" {
		pem, err := os.ReadFile(a.CARoots)
		if err != nil {
			m.cache.Stop()
			return nil, fmt.Errorf("read acme.ca_roots: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			m.cache.Stop()
			return nil, fmt.Errorf("%w: acme.ca_roots %s holds no PEM certificate", tlsconf.ErrConfig, a.CARoots)
		}
		tmpl.TrustedRoots = pool
	}
	for _, ch := range cfg.Challenges() {
		switch {
		case ch == tlsconf.ChallengeTLSALPN && ls.TLS != nil:
			host, port := hostPort(ls.TLS)
			tmpl.DisableTLSALPNChallenge, tmpl.ListenHost, tmpl.AltTLSALPNPort = false, host, port
		case ch == tlsconf.ChallengeHTTP && ls.Redirect != nil:
			host, port := hostPort(ls.Redirect)
			tmpl.DisableHTTPChallenge, tmpl.AltHTTPPort = false, port
			if tmpl.ListenHost == "" {
				tmpl.ListenHost = host
			}
		}
	}
	m.issuer = certmagic.NewACMEIssuer(m.magic, tmpl)
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	m.http = !tmpl.DisableHTTPChallenge
	if err := m.magic.ManageAsync(ctx, a.Domains); err != nil {
		m.cache.Stop()
		return nil, fmt.Errorf("manage certificates for %v: %w", a.Domains, err)
	}
	return m, nil
}

// hostPort splits a listener's address.
func hostPort(a net.Addr) (string, int) {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "", 0
	}
	p, _ := strconv.Atoi(port)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return host, p
}
