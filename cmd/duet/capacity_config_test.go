package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
)

// TestEdgeCapacityConfig: capacity.* read from the file, the environment and flags reach the
// heartbeat's announcer; conns defaults to max_conns and never exceeds it; negative values are
// refused with the keys named.
func TestEdgeCapacityConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(file, []byte("name: e1\nregion: eu\norigin: {type: http, endpoint: \"http://127.0.0.1:9000\"}\ncapacity: {conns: 800, egress_bytes_per_sec: 1GB}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultEdgeRoleConfig()
	fs := pflag.NewFlagSet("edge", pflag.ContinueOnError)
	ld := config.NewLoader("edge", &cfg, fs)
	if err := fs.Parse([]string{"--capacity.cpu_percent", "350"}); err != nil {
		t.Fatal(err)
	}
	if err := ld.Load(file, []string{"DUET_EDGE_CAPACITY_CONNS=600"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := cfg.announced("http://e1:8080", 1000)
	if a.Capacity != 600 || a.CapacityEgressBytesPerSec != 1e9 || a.CapacityCPU != 3.5 || a.Edge != "e1" || a.URL != "http://e1:8080" {
		t.Fatalf("announced %+v", a)
	}
	if a := cfg.announced("u", 500); a.Capacity != 500 {
		t.Errorf("capacity.conns over max_conns announced as %d, want max_conns 500", a.Capacity)
	}
	cfg.Capacity.Conns = 0
	if a := cfg.announced("u", 2000); a.Capacity != 2000 {
		t.Errorf("without capacity.conns: %d, want max_conns 2000", a.Capacity)
	}
	cfg.Capacity.CPUPercent = -1
	if err := cfg.Validate(); !errors.Is(err, edge.ErrConfig) || !strings.Contains(err.Error(), "capacity.cpu_percent") {
		t.Errorf("negative capacity: %v", err)
	}
}
