package natsserver

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
)

func TestConfigOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Region: "eu1", StoreDir: "/tmp/x"}, true},
		{"hub cluster remote", Config{Region: "eu1", StoreDir: "/tmp/x",
			LeafRemotes: []string{"nats-leaf://u:p@10.0.0.1:7422, nats-leaf://u:p@10.0.0.2:7422", "nats-leaf://10.1.0.1:7422"}}, true},
		{"no region", Config{StoreDir: "/tmp/x"}, false},
		{"reserved region", Config{Region: "ack", StoreDir: "/tmp/x"}, false},
		{"no store", Config{Region: "eu1"}, false},
		{"bad remote", Config{Region: "eu1", StoreDir: "/tmp/x", LeafRemotes: []string{"not a url"}}, false},
		{"password alone", Config{Region: "eu1", StoreDir: "/tmp/x", LeafPort: -1, LeafPassword: "p"}, false},
		{"TLS without CA", Config{Region: "eu1", StoreDir: "/tmp/x", TLS: &TLS{CertFile: "c", KeyFile: "k"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := tc.cfg.options()
			if tc.ok != (err == nil) {
				t.Fatalf("options() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, bus.ErrInvalidConfig) {
					t.Errorf("error %v does not wrap ErrInvalidConfig", err)
				}
				return
			}
			if opts.ServerName != tc.cfg.Region || opts.JetStreamDomain != tc.cfg.Region || !opts.JetStream {
				t.Errorf("server name %q, domain %q, jetstream %v", opts.ServerName, opts.JetStreamDomain, opts.JetStream)
			}
			if opts.Host != "127.0.0.1" {
				t.Errorf("host %q, want the default 127.0.0.1", opts.Host)
			}
			if len(opts.LeafNode.Remotes) != len(tc.cfg.LeafRemotes) {
				t.Errorf("%d remotes, want %d", len(opts.LeafNode.Remotes), len(tc.cfg.LeafRemotes))
			}
			if tc.name == "hub cluster remote" && len(opts.LeafNode.Remotes[0].URLs) != 2 {
				t.Errorf("first remote has %d URLs, want 2 (one cluster)", len(opts.LeafNode.Remotes[0].URLs))
			}
		})
	}
}

func TestLeafURLWithoutListener(t *testing.T) {
	t.Parallel()
	s, err := Start(t.Context(), Config{Region: "A", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if u := LeafURL(s); u != "" {
		t.Errorf("LeafURL of a server without a leafnode listener = %q, want empty", u)
	}
}

// TestStartPortInUse: a server that cannot listen fails fast with the reason.
func TestStartPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	start := time.Now()
	s, err := Start(t.Context(), Config{Region: "A", Port: ln.Addr().(*net.TCPAddr).Port, StoreDir: t.TempDir()})
	if err == nil {
		s.Shutdown()
		t.Fatal("Start succeeded on a port in use")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Start took %s to fail", took)
	}
	t.Logf("Start on a port in use: %v", err)
}
