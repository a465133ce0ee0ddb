package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/internal/bus"
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
}

func defaultSteeringRoleConfig() steeringRoleConfig {
	return steeringRoleConfig{Config: steering.DefaultConfig(), Name: defaultEdgeRoleConfig().Name,
		NATS: natsConfig{URLs: []string{"nats://127.0.0.1:4222"}}}
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
	// New checks the configuration before anything connects.
	alogPub := &lazyPublisher{} // the access log's NATS sink, once connected below
	srv, err := steering.New(cfg.Config, steering.Deps{Logger: log, Registry: reg, Gatherer: reg, AccessLogPublisher: alogPub})
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
