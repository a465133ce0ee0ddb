// Package natsserver embeds a NATS server with JetStream for one region, linked to the other
// regions by leafnodes: what `duet dev` and the tests run in place of the operators' NATS. It is
// apart from package bus so that the roles, which only connect to NATS, do not link the server.
package natsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/duetcdn/duet/internal/bus"
)

// Config configures an embedded NATS server for one region (`duet dev` and tests; in
// production each region runs its operators' NATS, configured the same way: see package bus's
// documentation).
type Config struct {
	// Region names the region (bus.ValidRegion); it is also the server's name and its JetStream
	// domain. Required.
	Region string
	// Host is the address the client and leafnode listeners bind; default 127.0.0.1.
	Host string
	// Port is the client port; -1 picks a free one, 0 means NATS's default 4222.
	Port int
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// LeafPort is the leafnode listener's port, for other regions to link to: 0 = no listener,
	// -1 = a free port (LeafURL tells which).
	LeafPort int
	// LeafRemotes are the leafnode listeners this server links to, one entry per other region (or
	// hub): a URL ("nats-leaf://user:password@host:7422"), or a comma-separated list of the URLs
	// of one cluster's servers. The links must form a tree: see package bus's documentation.
	LeafRemotes []string
	// LeafUser and LeafPassword, when LeafUser is set, are required of the regions that link to
	// this server's leafnode listener (in their remote URL). Without them the listener accepts any
	// remote: fine on a loopback, not on a network.
	LeafUser, LeafPassword string
	// TLS, when set, makes the leafnode links use mutual TLS with these files: the listener
	// presents the certificate and requires a client certificate signed by the CA, and the
	// remotes present it and verify the other region's. The certificate must therefore allow
	// both server and client authentication.
	TLS *TLS
	// Identities, when set, are the only clients the server admits, each with its role's
	// permissions (bus.Identity.Permissions): a connection without one of them is refused, and
	// so is any subject its role does not need. Empty: anyone who reaches the client port may do
	// anything (tests only; `duet dev` always sets them).
	Identities []bus.Identity
	// Logger receives the server's logs, every line at debug level with the server's own level
	// in nats_level (nil: silent).
	Logger *slog.Logger
}

// TLS names the PEM files of a server's leafnode TLS.
type TLS struct {
	// CAFile holds the CA certificates that sign the regions' certificates.
	CAFile string
	// CertFile and KeyFile are this server's certificate and key.
	CertFile, KeyFile string
}

// DefaultStartTimeout bounds Start's wait for readiness when ctx has no deadline.
const DefaultStartTimeout = 30 * time.Second

// leafReconnectInterval is how long a server waits before redialling a lost leafnode link (the
// server adds up to as much jitter again). NATS's default is 1 s; a shorter wait brings a healed
// link back sooner, and the attempts are cheap.
const leafReconnectInterval = 250 * time.Millisecond

// tlsTimeout is the leafnode TLS handshake timeout, in seconds: generous, for busy test machines.
const tlsTimeout = 5

func (c *Config) options() (*server.Options, error) {
	var errs []error
	if err := bus.ValidRegion(c.Region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	}
	if c.StoreDir == "" {
		errs = append(errs, errors.New("store dir is required"))
	}
	if c.LeafPassword != "" && c.LeafUser == "" {
		errs = append(errs, errors.New("leaf password without a leaf user"))
	}
	if len(c.Identities) > 0 && c.LeafPort != 0 && c.LeafUser == "" && c.TLS == nil {
		// Identities lock the client port; a leafnode listener without credentials would let
		// anyone link in and publish as the server's account.
		errs = append(errs, errors.New("a leafnode listener beside identities needs a leaf user (or TLS)"))
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "" || c.TLS.CAFile == "") {
		errs = append(errs, errors.New("TLS needs a CA file, a cert file and a key file"))
	}
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	opts := &server.Options{
		ServerName:      c.Region,
		Host:            host,
		Port:            c.Port,
		JetStream:       true,
		JetStreamDomain: c.Region,
		StoreDir:        c.StoreDir,
		NoSigs:          true,
		NoLog:           c.Logger == nil,
	}
	opts.LeafNode.ReconnectInterval = leafReconnectInterval
	for _, id := range c.Identities {
		if err := id.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		p := id.Permissions()
		perms := &server.Permissions{Publish: &server.SubjectPermission{Allow: p.Publish},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe}}
		if id.NKey != "" {
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: id.NKey, Permissions: perms})
		} else {
			opts.Users = append(opts.Users, &server.User{Username: id.User, Password: id.Password, Permissions: perms})
		}
	}
	var listenTLS, dialTLS *tls.Config
	if c.TLS != nil && len(errs) == 0 {
		var err error
		listenTLS, err = server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, CaFile: c.TLS.CAFile,
			Verify: true, Timeout: tlsTimeout, MinVersion: tls.VersionTLS12,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("leafnode TLS: %w", err))
		}
		dialTLS, err = (&bus.TLSConfig{CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile}).ClientConfig()
		if err != nil {
			errs = append(errs, fmt.Errorf("leafnode TLS: %w", err))
		}
	}
	if c.LeafPort != 0 {
		opts.LeafNode.Host = host
		opts.LeafNode.Port = c.LeafPort
		opts.LeafNode.Username = c.LeafUser
		opts.LeafNode.Password = c.LeafPassword
		// Remotes dial the URLs they are configured with, not the addresses this server would
		// advertise (which a proxy, NAT or load balancer in between makes wrong).
		opts.LeafNode.NoAdvertise = true
		if listenTLS != nil {
			opts.LeafNode.TLSConfig = listenTLS
			opts.LeafNode.TLSTimeout = tlsTimeout
		}
	}
	for _, r := range c.LeafRemotes {
		remote := &server.RemoteLeafOpts{}
		for one := range strings.SplitSeq(r, ",") {
			u, err := url.Parse(strings.TrimSpace(one))
			if err != nil || u.Host == "" {
				errs = append(errs, fmt.Errorf("leaf remote %q: not a URL", redact(one)))
				continue
			}
			remote.URLs = append(remote.URLs, u)
		}
		if len(remote.URLs) == 0 {
			continue
		}
		if dialTLS != nil {
			remote.TLS = true
			remote.TLSConfig = dialTLS.Clone()
			remote.TLSTimeout = tlsTimeout
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, remote)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", bus.ErrInvalidConfig, err)
	}
	return opts, nil
}

// Start starts an embedded NATS server for cfg.Region with JetStream (domain cfg.Region)
// and its leafnode listener and links, and returns once it is ready for connections with
// JetStream enabled (or fails when ctx ends, or after DefaultStartTimeout when ctx has no
// deadline). Leafnode links come up in the background. The caller owns the server: Shutdown and
// WaitForShutdown it.
func Start(ctx context.Context, cfg Config) (*server.Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats server %s: %w", cfg.Region, err)
	}
	// Always install a logger: it also catches a fatal error (a port in use) to fail fast with.
	l := &serverLogger{log: slog.New(slog.DiscardHandler)}
	debug := false
	if cfg.Logger != nil {
		l.log = cfg.Logger.With("component", "nats-server", "region", cfg.Region)
		debug = cfg.Logger.Enabled(ctx, slog.LevelDebug)
	}
	s.SetLoggerV2(l, debug, false, false)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	go s.Start()
	for !s.ReadyForConnections(100*time.Millisecond) || !s.JetStreamEnabled() {
		var err error
		if msg := l.fatal.Load(); msg != nil {
			err = errors.New(*msg)
		} else if ctx.Err() != nil {
			err = fmt.Errorf("not ready: %w", context.Cause(ctx))
		}
		if err != nil {
			s.Shutdown()
			s.WaitForShutdown()
			return nil, fmt.Errorf("start nats server %s: %w", cfg.Region, err)
		}
	}
	return s, nil
}

// LeafURL is the URL other regions dial to link to s's leafnode listener
// ("nats-leaf://host:port", without credentials), or "" when s has none.
func LeafURL(s *server.Server) string {
	v, err := s.Varz(nil)
	if err != nil || v.LeafNode.Port <= 0 {
		return ""
	}
	return (&url.URL{Scheme: "nats-leaf", Host: net.JoinHostPort(v.LeafNode.Host, strconv.Itoa(v.LeafNode.Port))}).String()
}

// redact hides a URL's password.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// serverLogger sends an embedded server's log lines to slog, all at debug level, and keeps the
// first fatal error.
type serverLogger struct {
	log   *slog.Logger
	fatal atomic.Pointer[string] // the first fatal error logged
}

func (l *serverLogger) logf(level, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "nats_level", level)
}

func (l *serverLogger) Noticef(format string, v ...any) { l.logf("notice", format, v...) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.logf("warn", format, v...) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.logf("error", format, v...) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.logf("debug", format, v...) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.logf("trace", format, v...) }

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.fatal.CompareAndSwap(nil, &msg)
	l.logf("fatal", format, v...)
}
