package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/sample"
	"github.com/duetcdn/duet/origin"
)

// devOptions are the flags of `duet dev`.
type devOptions struct {
	dir, listen, admin, minioAddr, minioBin, bucket string
}

func devCommand(logger func() (*slog.Logger, error), stdout io.Writer) *cobra.Command {
	o := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Duet on this machine: a MinIO origin with a sample HLS stream and an edge in front of it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			return runDev(cmd.Context(), o, log, stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", ".duet", "state directory (MinIO data, disk cache, logs); survives restarts")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "edge address for viewers")
	f.StringVar(&o.admin, "admin", "127.0.0.1:9090", "edge admin address (/metrics, /healthz, /readyz, /purge)")
	f.StringVar(&o.minioAddr, "minio-addr", "127.0.0.1:9000", "MinIO S3 API address")
	f.StringVar(&o.minioBin, "minio-bin", "bin/minio", "MinIO server binary (make tools installs it)")
	f.StringVar(&o.bucket, "bucket", "duet-dev", "origin bucket")
	return cmd
}

// samplePrefix is where the sample stream lives, in the bucket and in viewers' URLs.
const samplePrefix = "vod/sample/"

func runDev(ctx context.Context, o devOptions, log *slog.Logger, stdout io.Writer) error {
	start := time.Now()
	if _, err := os.Stat(o.minioBin); err != nil {
		return fmt.Errorf("MinIO server binary not found at %s: run \"make tools\" (or pass --minio-bin)", o.minioBin)
	}
	for name, addr := range map[string]string{"--listen": o.listen, "--admin": o.admin, "--minio-addr": o.minioAddr} {
		if err := portFree(ctx, addr); err != nil {
			return fmt.Errorf("%s %s: %w (stop what uses it, or pick another address)", name, addr, err)
		}
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	minioLog, err := os.OpenFile(filepath.Join(o.dir, "minio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open minio log: %w", err)
	}
	defer minioLog.Close()
	mc := minioproc.Config{Bin: o.minioBin, Dir: filepath.Join(o.dir, "minio"), Addr: o.minioAddr, Stdout: minioLog}
	mio, err := minioproc.Start(ctx, mc)
	if err != nil {
		return fmt.Errorf("start MinIO: %w", err)
	}
	defer func() { _ = mio.Stop() }()

	s3o, err := origin.NewS3(ctx, origin.S3Config{
		Endpoint: mio.Endpoint(), Bucket: o.bucket, PathStyle: true,
		AccessKey: mio.AccessKey(), SecretKey: mio.SecretKey(),
	})
	if err != nil {
		return err
	}
	if err := s3o.EnsureBucket(ctx); err != nil {
		return fmt.Errorf("create bucket %s: %w", o.bucket, err)
	}
	files := sample.Stream()
	for _, f := range files {
		if err := s3o.Put(ctx, samplePrefix+f.Path, bytes.NewReader(f.Body), int64(len(f.Body)), f.ContentType, "", map[string]string{"surrogate-key": "sample"}); err != nil {
			return fmt.Errorf("upload sample %s: %w", f.Path, err)
		}
	}

	cfg := edge.DefaultConfig()
	cfg.Name, cfg.Region = "dev-edge-1", "dev"
	cfg.Listen, cfg.AdminListen = o.listen, o.admin
	cfg.Origin = edge.OriginConfig{Type: "s3", Endpoint: mio.Endpoint(), Bucket: o.bucket,
		AccessKey: mio.AccessKey(), SecretKey: mio.SecretKey(), Timeout: 10 * time.Second}
	cfg.Disk = edge.DiskConfig{Dir: filepath.Join(o.dir, "cache"), MaxBytes: 1 << 30}
	cfg.Memory = edge.MemoryConfig{MaxBytes: 128 << 20, MaxObjectBytes: 4 << 20}
	cfg.ShutdownTimeout = 10 * time.Second
	reg := newRegistry()
	srv, err := edge.New(ctx, cfg, edge.Deps{Origin: s3o, Logger: log, Registry: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	// The sample was just uploaded again: what a warm cache from an earlier run holds of it may
	// be stale, so purge it the way an origin change will (and so the demo shows a MISS first).
	if _, err := srv.Purge(ctx, edge.PurgePrefix("/"+samplePrefix)); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe(ctx) }()

	base := "http://" + o.listen
	seg := base + "/" + samplePrefix + "720p/seg0.ts"
	if err := waitReady(ctx, "http://"+o.admin+"/readyz"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
Duet dev is up (%s). State lives in %s; Ctrl-C stops everything.

  origin (MinIO)   %s  bucket %s  (log: %s)
  edge             %s   admin %s
  sample stream    %s/%smaster.m3u8   (%d objects)

  see a MISS, then a HIT:
    for i in 1 2; do curl -s -o /dev/null -D - %s | grep -iE '^(x-cache|cache-status)'; done

  purge the stream:   curl -s -XPOST %s/purge -d '{"prefixes":["/%s"]}'
  metrics:            curl -s %s/metrics | grep ^duet_edge
`, time.Since(start).Round(time.Millisecond), o.dir, mio.Endpoint(), o.bucket, filepath.Join(o.dir, "minio.log"),
		base, "http://"+o.admin, base, samplePrefix, len(files), seg, "http://"+o.admin, samplePrefix, "http://"+o.admin)
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// portFree fails when something already listens on addr.
func portFree(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return errors.New("address already in use or not usable")
	}
	return ln.Close()
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("edge did not become ready at %s", url)
}
