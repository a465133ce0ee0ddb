package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// TLSConfig is a client's TLS to its NATS servers.
type TLSConfig struct {
	// CAFile is a PEM file of the CAs that sign the servers' certificates; empty: the system
	// roots.
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key, for servers that verify
	// clients (mutual TLS); both or neither.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool
}

// ConnConfig is how a process (edge, purge service, CLI) reaches its region's NATS.
type ConnConfig struct {
	// URLs of the region's NATS servers (nats://host:port or tls://host:port), several for a
	// cluster. Required.
	URLs []string
	// Name is the connection's name, shown in the servers' monitoring (for example
	// "duet-edge-eu1-a").
	Name string
	// CredsFile is a NATS .creds file (user JWT and seed). Or NKeyFile, or User and Password, or
	// Token; at most one of the four.
	CredsFile string
	// NKeyFile is a file holding the client's nkey seed ("SU…", mode 0600): the server knows the
	// public key (Identity.NKey) and the client proves it holds the seed, which never leaves it.
	NKeyFile string
	// User and Password authenticate with a user name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLS, when set, makes the connection use TLS.
	TLS *TLSConfig
	// ReconnectBufBytes is how many bytes of publishes are buffered while disconnected (beyond
	// that, publishes fail); 0 means 8 MiB, negative disables buffering.
	ReconnectBufBytes int
}

// DefaultReconnectBufBytes is ConnConfig.ReconnectBufBytes's default: 8 MiB.
const DefaultReconnectBufBytes = 8 << 20

// Reconnection pacing used by Connect: a short wait between rounds over the URLs, plus jitter so
// that the edges of a region do not all come back at once.
const (
	reconnectWait      = 250 * time.Millisecond
	reconnectJitter    = 250 * time.Millisecond
	reconnectJitterTLS = 500 * time.Millisecond
)

func (c ConnConfig) validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("no NATS URLs"))
	}
	for _, u := range c.URLs {
		if strings.TrimSpace(u) == "" || strings.Contains(u, ",") {
			errs = append(errs, fmt.Errorf("NATS URL %q: give one URL per entry", u))
		}
	}
	n := 0
	for _, set := range []bool{c.CredsFile != "", c.NKeyFile != "", c.User != "", c.Token != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("set at most one of creds file, nkey file, user and token"))
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, errors.New("password without a user"))
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("TLS: cert file and key file go together"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Connect connects to NATS and returns once connected, or fails when ctx ends first. The
// connection then reconnects forever (MaxReconnects -1) with a short wait and jitter, buffering
// up to ReconnectBufBytes of publishes meanwhile, and logs disconnects, reconnects and
// asynchronous errors on log (nil: silent). Because it retries a failed first connect
// (RetryOnFailedConnect), a process can start before its NATS server does: Connect waits for it
// (bound the wait with ctx). The caller owns the connection (Close or Drain it).
func Connect(ctx context.Context, cfg ConnConfig, log *slog.Logger) (*nats.Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "nats", "conn_name", cfg.Name)
	bufBytes := cfg.ReconnectBufBytes
	if bufBytes == 0 {
		bufBytes = DefaultReconnectBufBytes
	}

	connected := make(chan struct{})
	var once sync.Once
	markConnected := func() { once.Do(func() { close(connected) }) }

	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitterTLS),
		nats.ReconnectBufSize(bufBytes),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
			markConnected()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
			markConnected()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			} else {
				log.Info("nats disconnected")
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("nats reconnect attempt failed", "error", err)
		}),
		nats.ClosedHandler(func(_ *nats.Conn) {
			log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats error", "subject", sub.Subject, "error", err)
				return
			}
			log.Warn("nats error", "error", err)
		}),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			// The error names the file, never the seed.
			return nil, fmt.Errorf("connect to nats: nkey file: %w", err)
		}
		opts = append(opts, opt)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("connect to nats: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}

	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", strings.Join(cfg.URLs, ","), err)
	}
	if nc.IsConnected() {
		markConnected()
	}
	select {
	case <-connected:
		return nc, nil
	case <-ctx.Done():
		nc.Close()
		return nil, fmt.Errorf("connect to nats %s: %w", strings.Join(cfg.URLs, ","), context.Cause(ctx))
	}
}

// ClientConfig builds a client's TLS configuration from the files (the embedded server's
// leafnode remotes dial with it too).
func (c *TLSConfig) ClientConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in, for tests
	if c.CAFile != "" {
		pool, err := loadCAs(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS: load cert %s and key %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// loadCAs reads a PEM file of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("TLS: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("TLS: CA file %s: no PEM certificates", file)
	}
	return pool, nil
}
