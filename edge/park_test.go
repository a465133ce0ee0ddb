//go:build linux

package edge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/testenv"
)

// keepAliveGet sends a GET on c and reads the whole answer.
func keepAliveGet(t *testing.T, c net.Conn, br *bufio.Reader, path string, want []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: edge\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("GET %s: status %d, %d bytes (want %d), %v", path, resp.StatusCode, len(body), len(want), err)
	}
	_ = c.SetDeadline(time.Time{})
}

// waitClosed waits until the server closes c (a read ends without data).
func waitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (read %d bytes, %v)", within, n, err)
	}
}

// TestIdleConnectionsPark: a keep-alive viewer connection idle for idle_park_after is parked
// (fasthttp's goroutine for it ends), its next request is answered on the same connection as
// before, and idle_timeout still closes it while parked.
func TestIdleConnectionsPark(t *testing.T) {
	h := startEdge(t, objectOrigin(t), func(c *Config) {
		c.IdleParkAfter = 50 * time.Millisecond
		c.IdleTimeout = 1500 * time.Millisecond
	})
	path := "/obj/31/2000"
	want := randomBytes(2000, 31)
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	keepAliveGet(t, c, br, path, want)
	parked := func() bool { return h.srv.parker.parked() == 1 }
	testenv.Eventually(t, 5*time.Second, parked, "the idle connection was never parked")
	if got := h.srv.viewer.GetOpenConnectionsCount(); got != 0 {
		t.Fatalf("fasthttp still serves %d connections with the only one parked", got)
	}
	for range 3 { // served again, parked again
		keepAliveGet(t, c, br, path, want)
		testenv.Eventually(t, 5*time.Second, parked, "the connection was not parked again")
	}
	// Parked since at most ~1 s of its 1.5 s idle timeout: closed within a few sweeps, and
	// counted as a viewer timeout.
	timeouts := h.srv.watch.closed.Load()
	waitClosed(t, c, 5*time.Second)
	testenv.Eventually(t, 5*time.Second, func() bool { return h.srv.watch.closed.Load() == timeouts+1 }, "the idle timeout of a parked connection was not counted")
	testenv.Eventually(t, 5*time.Second, func() bool { return h.srv.parker.parked() == 0 }, "a closed connection is still parked")
	testenv.Eventually(t, 5*time.Second, func() bool {
		watched := false
		h.srv.watch.conns.Range(func(k, _ any) bool {
			if vc, ok := k.(*viewerConn); ok && vc.RemoteAddr().String() == c.LocalAddr().String() {
				watched = true
			}
			return true
		})
		return !watched
	}, "the closed parked connection is still watched")
}

// TestParkedConnectionsMakeRoom: at max_conns, a new viewer closes a parked connection instead
// of being refused; parked connections are closed at shutdown.
func TestParkedConnectionsMakeRoom(t *testing.T) {
	h := startEdge(t, objectOrigin(t), func(c *Config) {
		c.IdleParkAfter = 50 * time.Millisecond
		c.MaxConns = 2
	})
	path := "/obj/32/100"
	want := randomBytes(100, 32)
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		keepAliveGet(t, c, bufio.NewReader(c), path, want)
		conns = append(conns, c)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return h.srv.parker.parked() == 2 }, "the two idle connections were not parked")
	third, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	keepAliveGet(t, third, bufio.NewReader(third), path, want)
	if got := h.srv.parker.parked(); got != 1 {
		t.Fatalf("%d connections parked after the third arrived, want 1", got)
	}
	// One of the first two was closed to make room.
	closed := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); errors.Is(err, io.EOF) {
			closed++
		}
	}
	if closed != 1 {
		t.Fatalf("%d parked connections closed for the new viewer, want 1", closed)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return h.srv.parker.parked() == 2 }, "not parked again")
	h.stop()
	for _, c := range []net.Conn{conns[0], conns[1], third} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if n, err := c.Read(b[:]); n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection outlived the edge's shutdown (read %d, %v)", n, err)
		}
	}
}

// TestParkRacesARequest: a request that arrives as the connection is being parked is not lost:
// the parker sees it waiting and serves the connection at once.
func TestParkRacesARequest(t *testing.T) {
	served := make(chan []byte, 1)
	p, err := newParker(slog.New(slog.DiscardHandler), time.Minute, time.Second, func(c net.Conn) {
		b := make([]byte, 64)
		n, _ := c.Read(b)
		served <- b[:n]
	}, func(net.Conn) {}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	vc, client := tcpPair(t)
	vc.parker = p
	vc.idle() // fasthttp waits for the next request
	req := []byte("GET / HTTP/1.1\r\nHost: edge\r\n\r\n")
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	vc.requestPark()
	buf := make([]byte, 64)
	if n, err := vc.Read(buf); !errors.Is(err, errParked) {
		// The deadline expired before the read looked: it parks even with the request there.
		t.Fatalf("read %d bytes, %v; want the read ended for parking", n, err)
	}
	if err := vc.Close(); err != nil { // fasthttp ends the connection's loop
		t.Fatal(err)
	}
	if !vc.parkPending || !vc.park() { // its StateClosed hook
		t.Fatal("the connection was not parked")
	}
	select {
	case got := <-served:
		if !bytes.Equal(got, req) {
			t.Fatalf("served connection read %q, want the request", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the parked connection with a request waiting was not served")
	}
}

// TestParkingUnderLoad: viewers whose pauses straddle idle_park_after (parked, served, parked
// again, some requests arriving as their connection parks) all get every answer, on their own
// keep-alive connections.
func TestParkingUnderLoad(t *testing.T) {
	h := startEdge(t, objectOrigin(t), func(c *Config) {
		c.IdleParkAfter = 20 * time.Millisecond
		c.IdleTimeout = 400 * time.Millisecond // the sweep every 40 ms
	})
	path := "/obj/33/3000"
	want := randomBytes(3000, 33)
	errs := make(chan error, 16)
	var parkedOnce atomic.Bool
	var wg sync.WaitGroup
	for v := range 16 {
		wg.Go(func() {
			c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for i := range 30 {
				if h.srv.parker.parked() > 0 {
					parkedOnce.Store(true)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: edge\r\n\r\n", path); err != nil {
					errs <- fmt.Errorf("viewer %d request %d: %w", v, i, err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- fmt.Errorf("viewer %d request %d: %w", v, i, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
					errs <- fmt.Errorf("viewer %d request %d: %d, %d bytes, %v", v, i, resp.StatusCode, len(body), err)
					return
				}
				time.Sleep(time.Duration((v*7+i*13)%100) * time.Millisecond) //nolint:forbidigo // pauses around the park threshold are the test
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !parkedOnce.Load() {
		t.Error("no connection was ever parked: the test did not test parking")
	}
}
