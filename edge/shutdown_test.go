package edge

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestGracefulShutdown: on shutdown the edge turns not-ready first (so steering and load
// balancers move viewers away), keeps serving through the drain delay, lets a download in
// progress finish, and only then stops.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	co := newCounting(objectOrigin(t))
	co.slowBody = func(r io.ReadCloser) io.ReadCloser {
		return &slowReader{r: r, step: 64 << 10, pause: 10 * time.Millisecond}
	}
	cfg := testConfig(t)
	cfg.DrainDelay = 300 * time.Millisecond
	srv, err := New(t.Context(), cfg, Deps{Origin: co})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	adm, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adm) }()
	base, admin := "http://"+ln.Addr().String(), "http://"+adm.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second}
	ready := func() int {
		resp, err := client.Get(admin + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if !within(10*time.Second, func() bool { return ready() == 200 }) {
		t.Fatal("the edge was not ready within 10 s of starting")
	}
	// Steering probes readiness on the viewer listener (the admin one is private).
	viewerReady := func() int {
		resp, err := client.Get(base + "/.well-known/duet/ready")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := viewerReady(); code != 200 {
		t.Fatalf("viewer-side readiness while serving: %d", code)
	}
	// A 2 MiB download that takes about 320 ms at the origin's pace.
	resp, err := client.Get(base + "/obj/1/" + "2097152")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	// Not ready at once, while viewers are still served during the drain delay.
	if !within(10*time.Second, func() bool { return ready() != 200 }) {
		t.Fatal("still ready 10 s after shutdown began (drain delay 300 ms)")
	}
	if code := ready(); code != http.StatusServiceUnavailable && code != 0 {
		t.Fatalf("readyz during drain: %d", code)
	}
	if code := viewerReady(); code != http.StatusServiceUnavailable && code != 0 {
		t.Fatalf("viewer-side readiness during drain: %d", code)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 2<<20 {
		t.Fatalf("download cut by shutdown: %d bytes, %v", n, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if _, err := client.Get(base + "/obj/1/10"); err == nil {
		t.Fatal("viewer listener still accepting after shutdown")
	}
	srv.Close() // idempotent after Serve closed it
}

// within polls cond every millisecond until it holds (true) or d has passed (false).
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond) //nolint:forbidigo // poll interval inside a deadline
	}
	return true
}
