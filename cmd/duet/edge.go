package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/edge/announce"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/tlsconf/acme"
	"github.com/duetcdn/duet/purge"
)

func edgeCommand(logger func() (*slog.Logger, error), environ []string) *cobra.Command {
	cfg := defaultEdgeRoleConfig()
	return roleCommand(&cobra.Command{
		Use:   "edge",
		Short: "Run an edge cache node",
		Long: `Run an edge cache node. Settings come from the defaults, then --config (YAML), then
DUET_EDGE_* environment variables, then flags; every setting has all three spellings
(memory.max_bytes, DUET_EDGE_MEMORY_MAX_BYTES, --memory.max_bytes). See README.md.`,
	}, "edge", &cfg, logger, environ, func(ctx context.Context, log *slog.Logger) error {
		// The memory tier's budget bounds the process (one edge per process): the Go heap is held
		// near it, the collector working harder as it nears the limit, unless the operator set
		// GOMEMLIMIT. Not in runEdge: tests run several edges in one process.
		if os.Getenv("GOMEMLIMIT") == "" && cfg.Validate() == nil {
			debug.SetMemoryLimit(cfg.Config.MemoryLimit())
		}
		return runEdge(ctx, cfg, log)
	})
}

// runEdge wires an edge from its config and serves until ctx ends. With NATS configured it also
// runs the purge consumer (the cache is untrusted until it has caught up) and the heartbeat.
func runEdge(ctx context.Context, cfg edgeRoleConfig, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	reg := newRegistry()
	o, group, err := newOrigins(ctx, cfg.Origin, reg, log)
	if err != nil {
		return err
	}
	deps := edge.Deps{Origin: o, Logger: log, Registry: reg, Gatherer: reg, ACME: acme.Start}
	// The access log's NATS sink publishes once the connection below is up (lines before that
	// are counted as failed).
	alogPub := &lazyPublisher{}
	if cfg.AccessLog.Sink == "nats" {
		if len(cfg.NATS.URLs) == 0 {
			return fmt.Errorf("access_log.sink \"nats\" needs nats.urls")
		}
		deps.AccessLogPublisher = alogPub
	}
	if rw := cfg.Steering.rewriter(cfg.Name, cfg.publicURL()); rw != nil {
		deps.Rewriter = rw
	}
	srv, err := edge.New(ctx, cfg.Config, deps)
	if err != nil {
		return err
	}
	if len(cfg.NATS.URLs) == 0 {
		if srv.Peers() != nil {
			srv.Close()
			return fmt.Errorf("peer_fill.enabled needs nats.urls: the region's edges find each other from their heartbeats")
		}
		return srv.ListenAndServe(ctx)
	}
	srv.SetCacheTrusted(false) // until the purge consumer has caught up
	nc, err := bus.Connect(ctx, cfg.NATS.conn("duet-edge-"+cfg.Name), log)
	if err != nil {
		srv.Close()
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Drain() //nolint:errcheck // best effort at exit
	alogPub.conn.Store(nc)
	var cons *purge.Consumer
	regions := cfg.Purge.Regions
	if len(regions) == 0 {
		regions = []string{cfg.Region}
	}
	pm, err := edge.NewPurgeMetrics(reg)
	if err == nil {
		cons, err = purge.NewConsumer(purge.ConsumerConfig{Edge: cfg.Name, Region: cfg.Region, Regions: regions,
			StalenessBound: cfg.Purge.StalenessBound}, nc, edgeApplier{srv}, log, pm)
	}
	if err != nil {
		srv.Close()
		return err
	}
	srv.SetStalenessBound(cons.StalenessBound())
	if ps := srv.Peers(); ps != nil {
		sub, err := subscribePeers(nc, ps, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer sub.Unsubscribe() //nolint:errcheck // best effort at exit
	}
	url := cfg.publicURL()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	done := make(chan struct{}, 2)
	go func() { _ = cons.Run(bg); done <- struct{}{} }()
	go func() {
		acfg := cfg.announced(url, srv.MaxConns())
		if group != nil {
			acfg.Origins = func() []bus.OriginHealth { return originHealth(group) }
		}
		_ = announce.Run(bg, nc, acfg, edgeStats{srv}, log)
		done <- struct{}{}
	}()
	// The heartbeat and the consumer outlive the viewer listener: during the drain the edge
	// still announces "draining" and still applies purges.
	err = srv.ListenAndServe(ctx)
	stopBG()
	<-done
	<-done
	return err
}
