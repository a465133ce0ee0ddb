package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/tlsconf"
	"github.com/duetcdn/duet/internal/tlsconf/acme"
	"github.com/duetcdn/duet/steering"
)

// steeringRoleConfig is `duet steering`'s configuration.
type steeringRoleConfig struct {
	steering.Config `yaml:",inline"`
	// Name names this instance in NATS monitoring. Default: the host name.
	Name string `yaml:"name"`
	// NATS is the region's NATS, where edge heartbeats arrive (from every region, across the
	// leafnode links). Required.
	NATS natsConfig `yaml:"nats"`
	// TLS makes the listener speak HTTPS (as the edges' tls settings do): players then load the
	// steering answers and the player page over https, which an https page requires.
	TLS tlsconf.Config `yaml:"tls"`
}

func defaultSteeringRoleConfig() steeringRoleConfig {
	return steeringRoleConfig{Config: steering.DefaultConfig(), Name: defaultEdgeRoleConfig().Name,
		NATS: natsConfig{URLs: []string{"nats://127.0.0.1:4222"}}, TLS: tlsconf.Default()}
}

func steeringCommand(logger func() (*slog.Logger, error), environ []string) *cobra.Command {
	cfg := defaultSteeringRoleConfig()
	return roleCommand(&cobra.Command{
		Use:   "steering",
		Short: "Run the steering service (GeoIP, edge health, HLS/DASH content steering)",
		Long: `Run the steering service: it learns the edges from their heartbeats on NATS, probes them,
and sends each viewer to the nearest healthy edge with room (/v1/route, /r/{path},
/v1/steer/hls, /v1/steer/dash, /v1/topology, status page at /). Settings: defaults, then
--config (YAML), then DUET_STEERING_* environment variables, then flags, e.g.

  duet steering --regions eu:50.11:8.68,us:38.9:-77.04 --nats.urls nats://127.0.0.1:4222`,
	}, "steering", &cfg, logger, environ, func(ctx context.Context, log *slog.Logger) error {
		return runSteering(ctx, cfg, log, nil)
	})
}

// runSteering serves until ctx ends; ln, when given, replaces cfg.Listen (tests).
func runSteering(ctx context.Context, cfg steeringRoleConfig, log *slog.Logger, ln net.Listener) error {
	if len(cfg.NATS.URLs) == 0 {
		return fmt.Errorf("nats.urls is required: steering learns the edges from their heartbeats")
	}
	reg := newRegistry()
	var term *tlsconf.Terminator
	if cfg.TLS.Enabled() || cfg.TLS.RedirectListen != "" || cfg.TLS.HSTS != "" {
		var err error
		if term, err = tlsconf.New(cfg.TLS, log, acme.Start); err != nil {
			return err
		}
	}
	// New checks the configuration before anything connects.
	alogPub := &lazyPublisher{} // the access log's NATS sink, once connected below
	srv, err := steering.New(cfg.Config, steering.Deps{Logger: log, Registry: reg, Gatherer: reg, AccessLogPublisher: alogPub,
		HSTS: cfg.TLS.HSTS})
	if err != nil {
		return err
	}
	defer srv.Close()
	cfg.Config = srv.Config()
	if ln == nil {
		var lc net.ListenConfig
		if ln, err = lc.Listen(ctx, "tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	defer ln.Close()
	if term != nil {
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if ln, err = serveSteeringTLS(tctx, term, cfg.TLS, ln, log); err != nil {
			return err
		}
	}
	name := cfg.Name
	if name == "" {
		name = "steering"
	}
	nc, err := bus.Connect(ctx, cfg.NATS.conn("duet-steering-"+name), log)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Drain() //nolint:errcheck // best effort at exit
	alogPub.conn.Store(nc)
	return srv.Run(ctx, nc, ln)
}

var _ steering.Publisher = (*nats.Conn)(nil)

// serveSteeringTLS wraps ln in term's TLS and starts, until ctx ends, the certificates' upkeep
// and the redirect listener when tls.redirect_listen is set.
func serveSteeringTLS(ctx context.Context, term *tlsconf.Terminator, cfg tlsconf.Config, ln net.Listener, log *slog.Logger) (net.Listener, error) {
	ls := tlsconf.Listeners{TLS: ln.Addr()}
	if cfg.RedirectListen != "" {
		var lc net.ListenConfig
		rl, err := lc.Listen(ctx, "tcp", cfg.RedirectListen)
		if err != nil {
			return nil, fmt.Errorf("listen for plain HTTP (tls.redirect_listen) on %s: %w", cfg.RedirectListen, err)
		}
		ls.Redirect = rl.Addr()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		redirect := &http.Server{Handler: term.RedirectHandler(port), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = redirect.Serve(rl) }()
		go func() {
			<-ctx.Done()
			_ = redirect.Close()
		}()
	}
	go func() {
		if err := term.Run(ctx, ls); err != nil {
			log.Error("TLS certificates not managed", "error", err)
		}
	}()
	return tls.NewListener(ln, term.TLSConfig()), nil
}
