package minioproc_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
)

func TestStartMissingBinary(t *testing.T) {
	_, err := minioproc.Start(t.Context(), minioproc.Config{Bin: "./bin/minio-missing", Dir: t.TempDir()})
	if !errors.Is(err, minioproc.ErrBinaryNotFound) {
		t.Fatalf("err = %v, want ErrBinaryNotFound", err)
	}
	const want = `minio server binary not found at ./bin/minio-missing: run "make tools"`
	if err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
}

func TestStartInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  minioproc.Config
	}{
		{"no bin", minioproc.Config{Dir: "x"}},
		{"no dir", minioproc.Config{Bin: "x"}},
		{"short secret", minioproc.Config{Bin: "x", Dir: "x", SecretKey: "short"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := minioproc.Start(t.Context(), tc.cfg); err == nil {
				t.Fatalf("Start(%+v) succeeded, want a config error", tc.cfg)
			}
		})
	}
}

// TestStartPortTaken checks that a server that cannot start fails Start quickly, with minio's own
// explanation in the error.
func TestStartPortTaken(t *testing.T) {
	bin := testenv.MinIOBin(t) // skips or fails like every MinIO test when the binary is missing
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = minioproc.Start(t.Context(), minioproc.Config{
		Bin:  bin,
		Dir:  t.TempDir(),
		Addr: l.Addr().String(),
	})
	if !errors.Is(err, minioproc.ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
	if !strings.Contains(err.Error(), "log tail") {
		t.Fatalf("err = %v, want the log tail in it", err)
	}
	t.Log(err)
}

func TestStopIdempotentNilSafe(t *testing.T) {
	var nilSrv *minioproc.Server
	if err := nilSrv.Stop(); err != nil {
		t.Fatalf("nil Stop: %v", err)
	}
	srv := testenv.MinIO(t)
	for range 3 {
		if err := srv.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
}
