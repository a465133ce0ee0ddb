// Package testenv starts real servers for tests: the pinned MinIO binary from ./bin (through
// minioproc) and an embedded NATS server with JetStream. Every server listens on 127.0.0.1 on a free
// port, keeps its data in t.TempDir() and is stopped by t.Cleanup. Eventually is the poller tests
// use instead of sleeping.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/origin/s3client"
	"github.com/duetcdn/duet/origin/s3conf"
)

// MinIOBinEnv names the environment variable that overrides the MinIO binary's path.
const MinIOBinEnv = "DUET_MINIO_BIN"

// MinIO starts a real MinIO server for the test, with its data in t.TempDir(), and stops it in
// t.Cleanup. The binary is <repo root>/bin/minio (the directory holding go.mod, found by walking up
// from the working directory), or $DUET_MINIO_BIN. When it is missing the test fails under CI=true
// and is skipped otherwise, both with a message naming `make tools`.
func MinIO(t testing.TB) *minioproc.Server {
	t.Helper()
	bin := MinIOBin(t)
	dir := t.TempDir() // registered before the server's cleanup, so removed after the server stops
	log := &logBuffer{}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv, err := minioproc.Start(ctx, minioproc.Config{
		Bin:    bin,
		Dir:    filepath.Join(dir, "data"),
		Addr:   "127.0.0.1:0",
		Stdout: log,
	})
	if err != nil {
		t.Fatalf("testenv: start minio: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("testenv: stop minio: %v", err)
		}
		if t.Failed() {
			t.Logf("testenv: minio log (last %d bytes):\n%s", logKeep, log)
		}
	})
	return srv
}

// MinIOBin returns the path of the MinIO binary the tests use: $DUET_MINIO_BIN, else bin/minio in
// the module root. When it is missing the test fails under CI=true and is skipped otherwise, both
// with a message naming `make tools`.
func MinIOBin(t testing.TB) string {
	t.Helper()
	bin, err := minioBin()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("testenv: MinIO server binary not found at %s: run \"make tools\" "+
			"(or set %s) — the origin tests need the real server", bin, MinIOBinEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("!!!!!!!! SKIPPED: " + msg + " !!!!!!!!")
	}
	return bin
}

// Bucket creates a bucket with a fresh, unique name on srv and returns the name.
func Bucket(t testing.TB, srv *minioproc.Server) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "test-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := S3Client(t, srv).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v", name, err)
	}
	return name
}

// S3Client returns an S3 client for srv (path-style, region us-east-1, the server's root
// credentials), for tests to put and delete objects directly.
func S3Client(t testing.TB, srv *minioproc.Server) *s3.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	// Bucket is only what the settings require: the client is for any bucket on srv.
	c, err := s3client.New(t.Context(), s3conf.Config{Endpoint: srv.Endpoint(), Bucket: "any",
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey()}, s3client.Options{
		HTTPClient: &http.Client{Transport: tr},
		// Tests stop servers on purpose: fail fast rather than retry.
		MaxAttempts: 1,
	})
	if err != nil {
		t.Fatalf("testenv: S3 client for %s: %v", srv.Endpoint(), err)
	}
	return c
}

// NATS starts an embedded NATS server with JetStream on 127.0.0.1 and a random port, its store in
// t.TempDir(), and shuts it down in t.Cleanup. The client URL is ClientURL().
func NATS(t testing.TB) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testenv: new nats server: %v", err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("testenv: nats server not ready for connections within 10s")
	}
	return s
}

// Eventually polls cond every 10 ms until it returns true, or fails the test with msg (a format
// for args) once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: "+msg, append([]any{timeout}, args...)...)
		}
		<-tick.C
	}
}

// minioBin finds the MinIO binary: $DUET_MINIO_BIN, else bin/minio in the module root.
func minioBin() (string, error) {
	if p := os.Getenv(MinIOBinEnv); p != "" {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "minio"), nil
}

// moduleRoot walks up from the working directory to the directory that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// logKeep is how much of a MinIO log a failed test prints, in bytes.
const logKeep = 8 << 10

// logBuffer keeps the last logKeep bytes of a server's log.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - logKeep; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
