package bus

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestServerConfigOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  ServerConfig
		ok   bool
	}{
		{"minimal", ServerConfig{Region: "eu1", StoreDir: "/tmp/x"}, true},
		{"hub cluster remote", ServerConfig{Region: "eu1", StoreDir: "/tmp/x",
			LeafRemotes: []string{"nats-leaf://u:p@10.0.0.1:7422, nats-leaf://u:p@10.0.0.2:7422", "nats-leaf://10.1.0.1:7422"}}, true},
		{"no region", ServerConfig{StoreDir: "/tmp/x"}, false},
		{"reserved region", ServerConfig{Region: "ack", StoreDir: "/tmp/x"}, false},
		{"no store", ServerConfig{Region: "eu1"}, false},
		{"bad remote", ServerConfig{Region: "eu1", StoreDir: "/tmp/x", LeafRemotes: []string{"not a url"}}, false},
		{"password alone", ServerConfig{Region: "eu1", StoreDir: "/tmp/x", LeafPort: -1, LeafPassword: "p"}, false},
		{"TLS without CA", ServerConfig{Region: "eu1", StoreDir: "/tmp/x", TLS: &ServerTLS{CertFile: "c", KeyFile: "k"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := tc.cfg.options()
			if tc.ok != (err == nil) {
				t.Fatalf("options() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidConfig) {
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
	r := startRegion(t, "A", ServerConfig{})
	if u := LeafURL(r.server()); u != "" {
		t.Errorf("LeafURL of a server without a leafnode listener = %q, want empty", u)
	}
}

// TestStartServerPortInUse: a server that cannot listen fails fast with the reason.
func TestStartServerPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	start := time.Now()
	s, err := StartServer(t.Context(), ServerConfig{Region: "A", Port: ln.Addr().(*net.TCPAddr).Port, StoreDir: t.TempDir()})
	if err == nil {
		s.Shutdown()
		t.Fatal("StartServer succeeded on a port in use")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("StartServer took %s to fail", took)
	}
	t.Logf("StartServer on a port in use: %v", err)
}
