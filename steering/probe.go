package steering

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
)

// Prober checks that viewers can reach an edge at its public base URL. A nil error means the
// edge answered.
type Prober interface {
	Probe(ctx context.Context, baseURL string) error
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, baseURL string) error

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context, baseURL string) error { return f(ctx, baseURL) }

// DialProber probes by opening (and closing) a TCP connection to the URL's host and port: cheap,
// never reaches the origin, and fails at once for a killed process (connection refused) or a
// closed listener (a drained edge).
type DialProber struct{ Dialer net.Dialer }

// Probe dials baseURL's host.
func (p *DialProber) Probe(ctx context.Context, baseURL string) error {
	addr, err := hostPort(baseURL)
	if err != nil {
		return err
	}
	c, err := p.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// HTTPProber probes with a GET of baseURL + Path that must answer 2xx.
type HTTPProber struct {
	Client *http.Client
	Path   string
}

// Probe GETs baseURL + p.Path.
func (p *HTTPProber) Probe(ctx context.Context, baseURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+p.Path, nil)
	if err != nil {
		return err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: status %d", p.Path, resp.StatusCode)
	}
	return nil
}

// probeClient is the HTTPProber's client: ProbeTimeout, and the system's roots plus
// ProbeCARoots.
func probeClient(cfg Config) (*http.Client, error) {
	c := &http.Client{Timeout: cfg.ProbeTimeout}
	if cfg.ProbeCARoots == "" {
		return c, nil
	}
	b, err := os.ReadFile(cfg.ProbeCARoots)
	if err != nil {
		return nil, fmt.Errorf("%w: probe_ca_roots: %w", ErrInvalidConfig, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: probe_ca_roots %s holds no PEM certificate", ErrInvalidConfig, cfg.ProbeCARoots)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.Transport = t
	return c, nil
}

// hostPort is the host:port to dial for an http(s) base URL.
func hostPort(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("edge URL %q is not an http(s) URL", base)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}
