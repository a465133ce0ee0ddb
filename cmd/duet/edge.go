package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
	"github.com/duetcdn/duet/origin"
)

// Compile-time guards: the origins satisfy what the edge asks of them.
var (
	_ edge.Origin    = (*origin.S3)(nil)
	_ edge.Origin    = (*origin.HTTP)(nil)
	_ edge.Forwarder = (*origin.HTTP)(nil)
)

func edgeCommand(logger func() (*slog.Logger, error), environ []string) *cobra.Command {
	cfg := edge.DefaultConfig()
	if h, err := os.Hostname(); err == nil {
		cfg.Name = h
	}
	var file string
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run an edge cache node",
		Long: `Run an edge cache node. Settings come from the defaults, then --config (YAML), then
DUET_EDGE_* environment variables, then flags; every setting has all three spellings
(memory.max_bytes, DUET_EDGE_MEMORY_MAX_BYTES, --memory.max_bytes). See README.md.`,
		Args: cobra.NoArgs,
	}
	ld := config.NewLoader("edge", &cfg, cmd.Flags())
	cmd.Flags().StringVarP(&file, "config", "c", "", "YAML config file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := ld.Load(file, environ); err != nil {
			return err
		}
		log, err := logger()
		if err != nil {
			return err
		}
		return runEdge(cmd.Context(), cfg, log)
	}
	return cmd
}

// runEdge wires an edge from its config and serves until ctx ends.
func runEdge(ctx context.Context, cfg edge.Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	o, err := newOrigin(ctx, cfg.Origin)
	if err != nil {
		return err
	}
	reg := newRegistry()
	srv, err := edge.New(ctx, cfg, edge.Deps{Origin: o, Logger: log, Registry: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx)
}

func newOrigin(ctx context.Context, c edge.OriginConfig) (edge.Origin, error) {
	switch c.Type {
	case "s3":
		pathStyle := c.PathStyle == nil || *c.PathStyle
		o, err := origin.NewS3(ctx, origin.S3Config{
			Endpoint: c.Endpoint, Region: c.S3Region, Bucket: c.Bucket, Prefix: c.Prefix, PathStyle: pathStyle,
			AccessKey: c.AccessKey, SecretKey: c.SecretKey, Timeout: c.Timeout, MaxConns: c.MaxConns,
		})
		if err != nil {
			return nil, fmt.Errorf("s3 origin: %w", err)
		}
		return o, nil
	case "http":
		o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: c.Endpoint, Timeout: c.Timeout, MaxConns: c.MaxConns, Host: c.Host})
		if err != nil {
			return nil, fmt.Errorf("http origin: %w", err)
		}
		return o, nil
	}
	return nil, fmt.Errorf("origin.type %q: use s3 or http", c.Type)
}
