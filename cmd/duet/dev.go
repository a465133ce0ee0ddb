package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/devcluster"
)

func devCommand(logger func() (*slog.Logger, error), stdout io.Writer, environ []string) *cobra.Command {
	o := devcluster.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole two-region Duet CDN on this machine, with a sample stream",
		Long: `Run a whole Duet CDN on loopback: per region an embedded NATS (the regions linked), a MinIO
origin, a purge API, a replicator, a steering service and two edges, each role its own process
(logs and configs under --dir). A sample HLS stream is uploaded, then every URL is printed.
Ctrl-C stops everything; state under --dir survives a restart.

Ports (plus --port-offset): ` + devcluster.PortsHelp(0) + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the duet binary to start the roles with: %w", err)
			}
			return devcluster.Run(cmd.Context(), o, devRoles{}, exe, log, stdout, environ)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", o.Dir, "state directory (origins' data, caches, NATS streams, configs, logs); survives restarts")
	f.StringVar(&o.Regions, "regions", o.Regions, "regions as name:lat:lon, comma-separated (at most 5)")
	f.IntVar(&o.Edges, "edges", o.Edges, "edges per region (1 to 9)")
	f.IntVar(&o.PortOffset, "port-offset", o.PortOffset, "added to every port, to run beside what uses the defaults (default 0: the ports above)")
	f.StringVar(&o.MinIOBin, "minio-bin", o.MinIOBin, "MinIO server binary (make tools installs it)")
	f.StringVar(&o.Bucket, "bucket", o.Bucket, "origin bucket (the same name in every region)")
	f.BoolVar(&o.HTTPS, "https", o.HTTPS, "edges and steering serve HTTPS with a certificate from a local CA made under --dir/tls (trust tls/ca.crt in a browser: README.md)")
	return cmd
}
