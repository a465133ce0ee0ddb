package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
)

// TestEdgeConfigFile reads the README's example file through the same loader `duet edge` uses.
func TestEdgeConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "edge.yaml")
	yaml := `name: edge-eu-1
region: eu
listen: ":8080"
admin_listen: "127.0.0.1:9090"
origin: {type: s3, endpoint: "http://minio.eu:9000", bucket: media, prefix: vod}
memory: {max_bytes: 4GiB, max_object_bytes: 4MiB}
disk: {dir: /var/cache/duet, max_bytes: 500GiB}
cache: {ignore_params: [token, "utm_*"], segment_ttl: 24h, playlist_ttl: 2s}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := edge.DefaultConfig()
	fs := pflag.NewFlagSet("edge", pflag.ContinueOnError)
	ld := config.NewLoader("edge", &cfg, fs)
	if err := fs.Parse([]string{"--disk.max_bytes", "1TiB"}); err != nil {
		t.Fatal(err)
	}
	if err := ld.Load(file, []string{"DUET_EDGE_REGION=us"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	switch {
	case cfg.Memory.MaxBytes != 4<<30, cfg.Memory.MaxObjectBytes != 4<<20:
		t.Errorf("memory: %+v", cfg.Memory)
	case cfg.Disk.MaxBytes != 1<<40:
		t.Errorf("flag did not win over the file: %v", cfg.Disk.MaxBytes)
	case cfg.Region != "us":
		t.Errorf("environment did not win over the file: %q", cfg.Region)
	case cfg.Cache.PlaylistTTL != 2*time.Second || len(cfg.Cache.IgnoreParams) != 2:
		t.Errorf("cache: %+v", cfg.Cache)
	case cfg.Cache.NegativeTTL != 10*time.Second:
		t.Errorf("a default was lost: %v", cfg.Cache.NegativeTTL)
	}
}
