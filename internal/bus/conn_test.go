package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/testenv"
)

// freePort returns a port nothing listens on (it was free a moment ago).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestConnectBeforeServer: a client started before its server connects once the server is up,
// and reconnects after the server restarts.
func TestConnectBeforeServer(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	logs := &logCapture{}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go func() {
		nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{"nats://127.0.0.1:" + itoa(port)}, Name: "early"}, slog.New(logs))
		done <- result{nc, err}
	}()
	// The client has tried and failed at least once before the server exists.
	testenv.Eventually(t, 10*time.Second, func() bool { return logs.contains("nats reconnect attempt failed") },
		"the client never tried to connect")
	select {
	case r := <-done:
		t.Fatalf("Connect returned before the server was up: %v", r.err)
	default:
	}

	r := startRegion(t, "A", natsserver.Config{Port: port})
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("Connect did not return once the server was up")
	}
	if res.err != nil {
		t.Fatalf("Connect: %v", res.err)
	}
	nc := res.nc
	t.Cleanup(nc.Close)
	if !nc.IsConnected() {
		t.Fatalf("Connect returned a connection in state %v", nc.Status())
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}

	r.restart()
	testenv.Eventually(t, 10*time.Second, func() bool { return logs.contains("nats reconnected") && nc.IsConnected() },
		"the client did not reconnect after the server restarted")
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("flush after reconnect: %v", err)
	}
}

// TestConnectGivesUpWithContext: with no server, Connect fails when ctx ends.
func TestConnectGivesUpWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{"nats://127.0.0.1:" + itoa(freePort(t))}}, nil)
	if err == nil {
		nc.Close()
		t.Fatal("Connect succeeded with no server")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want one wrapping context.DeadlineExceeded", err)
	}
}
