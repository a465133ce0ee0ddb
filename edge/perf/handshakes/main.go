// Command handshakes measures TLS handshakes per second against one server, full or resumed,
// for edge/perf/peers.sh (TLS=1): CLIENTS connections at a time dial, finish the handshake and
// close, for the given duration. Resumed handshakes share one client session cache, primed by a
// first full handshake, so every measured connection offers a ticket (TLS 1.3) or session
// (TLS 1.2) the server issued.
//
//	go run ./edge/perf/handshakes -addr 127.0.0.1:18084 -mode resumed -duration 5s
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "the server's host:port (loopback)")
	mode := flag.String("mode", "full", "full: a new session each time; resumed: resume one session")
	clients := flag.Int("clients", 8, "connections handshaking at a time")
	duration := flag.Duration("duration", 5*time.Second, "how long to measure (at most 1m)")
	pq := flag.Bool("pq", false, "offer the post-quantum hybrid X25519MLKEM768 first (default: X25519 only, as OpenSSL 3.0 clients such as wrk and the peers' own libraries do)")
	flag.Parse()
	if err := run(*addr, *mode, *clients, *duration, *pq); err != nil {
		fmt.Fprintln(os.Stderr, "handshakes:", err)
		os.Exit(2)
	}
}

func run(addr, mode string, clients int, d time.Duration, pq bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w (write host:port)", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses are measured", addr)
	}
	if clients < 1 || clients > 256 || d <= 0 || d > time.Minute {
		return errors.New("-clients must be 1..256 and -duration up to 1m")
	}
	//nolint:gosec // a benchmark against a self-signed loopback certificate
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: host, CurvePreferences: []tls.CurveID{tls.X25519}}
	if pq {
		cfg.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
	}
	switch mode {
	case "full":
		cfg.SessionTicketsDisabled = true
	case "resumed":
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		if _, err := handshake(context.Background(), addr, cfg); err != nil { // prime the cache
			return err
		}
	default:
		return fmt.Errorf("-mode %q: full or resumed", mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var done, resumed, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				r, err := handshake(ctx, addr, cfg)
				switch {
				case err != nil && ctx.Err() == nil:
					if failed.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "handshakes: first failure:", err)
					}
				case err == nil:
					done.Add(1)
					if r {
						resumed.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("%.0f handshakes/s (%d in %.1f s, %d resumed, %d failed)\n", float64(done.Load())/secs, done.Load(), secs, resumed.Load(), failed.Load())
	if mode == "resumed" && resumed.Load() < done.Load()*9/10 {
		return fmt.Errorf("only %d of %d handshakes resumed: the server does not resume sessions", resumed.Load(), done.Load())
	}
	return nil
}

// handshake dials addr, completes a TLS handshake and closes; it reports whether the session was
// resumed. With TLS 1.3 the ticket comes after the handshake, so a resuming client reads once
// (briefly) to take it in.
func handshake(ctx context.Context, addr string, cfg *tls.Config) (bool, error) {
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	tc := c.(*tls.Conn)
	if cfg.ClientSessionCache != nil {
		_ = tc.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		var b [1]byte
		_, _ = tc.Read(b[:]) // processes the NewSessionTicket message; the deadline ends it
	}
	return tc.ConnectionState().DidResume, nil
}
