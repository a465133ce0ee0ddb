package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/origin/replicate"
)

// replicateRoleConfig is `duet replicate`'s configuration.
type replicateRoleConfig struct {
	replicate.Config `yaml:",inline"`
	// Name names this instance in NATS monitoring. Default: the host name.
	Name string `yaml:"name"`
	// NATS is the region's NATS (origin events, purge stream, tombstones). Required.
	NATS natsConfig `yaml:"nats"`
	// Admin is the address of /healthz, /readyz and /metrics. Default 127.0.0.1:9096.
	Admin string `yaml:"admin"`
}

func defaultReplicateRoleConfig() replicateRoleConfig {
	return replicateRoleConfig{Config: replicate.DefaultConfig(), Name: defaultEdgeRoleConfig().Name,
		NATS: natsConfig{URLs: []string{"nats://127.0.0.1:4222"}}, Admin: "127.0.0.1:9096"}
}

func replicateCommand(logger func() (*slog.Logger, error), environ []string) *cobra.Command {
	cfg := defaultReplicateRoleConfig()
	return roleCommand(&cobra.Command{
		Use:   "replicate",
		Short: "Replicate the origin buckets between regions (one per region), and purge changed objects",
		Long: `Copy into this region's bucket the objects created or changed in the other regions (from the
origin event streams that MinIO's NATS notifications feed), replicate deletes, run an
anti-entropy sweep every sweep_interval, and soft-purge (purge_mode) every object that changed
in this region's bucket at every edge of the region. Settings: defaults, then --config (YAML),
then DUET_REPLICATE_* environment variables, then flags; a region in a variable or flag reads
"name=eu;endpoint=http://127.0.0.1:9000;bucket=origin;access_key=AK;secret_key=SK", regions
separated by commas. See README.md, "Replication".`,
	}, "replicate", &cfg, logger, environ, func(ctx context.Context, log *slog.Logger) error {
		return runReplicate(ctx, cfg, log, nil)
	})
}

// runReplicate replicates until ctx ends; admin, when given, replaces cfg.Admin (tests).
func runReplicate(ctx context.Context, cfg replicateRoleConfig, log *slog.Logger, admin net.Listener) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if len(cfg.NATS.URLs) == 0 {
		return errors.New("nats.urls is required: the replicator reads its region's origin events there")
	}
	var err error
	if admin == nil {
		var lc net.ListenConfig
		if admin, err = lc.Listen(ctx, "tcp", cfg.Admin); err != nil {
			return fmt.Errorf("listen on admin address %s: %w", cfg.Admin, err)
		}
	}
	defer admin.Close()
	name := cfg.Name
	if name == "" {
		name = cfg.Region
	}
	nc, err := bus.Connect(ctx, cfg.NATS.conn("duet-replicate-"+name), log)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Drain() //nolint:errcheck // best effort at exit
	reg := newRegistry()
	rep, err := replicate.New(ctx, cfg.Config, replicate.Deps{NATS: nc, Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !rep.Ready() {
			http.Error(w, "not ready: setting up streams and consumer", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(admin) }()
	log.Info("replicator admin listening", "admin", admin.Addr().String())
	runErr := rep.Run(ctx)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = fmt.Errorf("admin server: %w", err)
	}
	return runErr
}
