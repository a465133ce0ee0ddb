package devcluster

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestPortOffsetRefusesBrowserBlockedPorts: an offset that puts a service on a port browsers
// refuse (10080: the edges at 8080+2000) is refused with the service, the port and an offset
// that works; the defaults and the README's example offset are accepted.
func TestPortOffsetRefusesBrowserBlockedPorts(t *testing.T) {
	t.Parallel()
	for _, offset := range []int{0, 1000, 100} {
		if err := (layout{offset: offset}).checkPorts(2, 2); err != nil {
			t.Errorf("offset %d: %v", offset, err)
		}
	}
	err := layout{offset: 2000}.checkPorts(2, 2)
	if err == nil {
		t.Fatal("offset 2000 (edges on 10080) was accepted")
	}
	for _, want := range []string{"edge 1 of region 1 on port 10080", "choose another offset, for example 2100"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := (layout{offset: 2100}).checkPorts(2, 2); err != nil {
		t.Errorf("the offset the error suggests is refused too: %v", err)
	}
	// 6000 is X11's: the control API at 7070-1070.
	if err := (layout{offset: -1070}).checkPorts(2, 2); err == nil || !strings.Contains(err.Error(), "control API on port 6000") {
		t.Errorf("offset -1070: %v, want the control API on port 6000 refused", err)
	}
	if err := (layout{offset: 60000}).checkPorts(2, 2); err == nil || !strings.Contains(err.Error(), "outside 1-65535") {
		t.Errorf("offset 60000: %v, want ports past 65535 refused", err)
	}
}

// TestPortsHelp: --help names the ports the cluster really uses, the offset added.
func TestPortsHelp(t *testing.T) {
	t.Parallel()
	l := layout{offset: 1000}
	h := PortsHelp(1000)
	for _, want := range []string{l.control(), "edges 9080", "admin 10090", "NATS 5222", "steering 9400", "purge API 9500", "MinIO 10000"} {
		if !strings.Contains(h, want) {
			t.Errorf("PortsHelp(1000) = %q, does not say %q", h, want)
		}
	}
}

// TestRunRefusesBlockedOffsetFirst: `duet dev --port-offset 2000` fails before starting anything.
func TestRunRefusesBlockedOffsetFirst(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Dir, cfg.PortOffset, cfg.MinIOBin = t.TempDir(), 2000, "/nonexistent/minio"
	err := Run(t.Context(), cfg, nil, "/nonexistent/duet", slog.New(slog.DiscardHandler), io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "port 10080") {
		t.Fatalf("Run with offset 2000: %v, want the edges' port 10080 refused", err)
	}
}
