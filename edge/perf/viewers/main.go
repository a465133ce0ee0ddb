// Command viewers measures how fast a server sends one large object to several viewers at once:
// N connections each GET the whole object at the same moment and read it to the end (into a
// 1 MiB buffer, discarded), and it reports the bytes of all of them over the time from the
// first request to the last byte, for each round. For edge/perf/conns.sh ("big": a 200 MiB
// object from the edge's disk tier against nginx's proxy_cache); docs/performance.md has the
// figures.
//
//	go run ./edge/perf/viewers -url http://127.0.0.1:18084/obj/200m -n 8 -rounds 3
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	u := flag.String("url", "", "the object, http://loopback-host:port/path")
	n := flag.Int("n", 8, "viewers at once (1..256)")
	rounds := flag.Int("rounds", 1, "rounds (1..100), one line each")
	flag.Parse()
	if err := run(*u, *n, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "viewers:", err)
		os.Exit(2)
	}
}

func run(raw string, n, rounds int) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port/path", raw)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return fmt.Errorf("-url %q: %w (write host:port)", raw, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: only loopback addresses are measured", raw)
	}
	if n < 1 || n > 256 || rounds < 1 || rounds > 100 {
		return errors.New("-n must be 1..256 and -rounds 1..100")
	}
	for r := range rounds {
		start := time.Now()
		var total int64
		var mu sync.Mutex
		var first error
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				got, err := get(u.Host, u.RequestURI())
				mu.Lock()
				defer mu.Unlock()
				total += got
				if err != nil && first == nil {
					first = err
				}
			})
		}
		wg.Wait()
		if first != nil {
			return fmt.Errorf("round %d: %w", r+1, first)
		}
		el := time.Since(start)
		fmt.Printf("%d %d %.3f %.1f\n", r+1, total, el.Seconds(), float64(total)/el.Seconds()/(1<<20))
	}
	return nil
}

// get fetches path from addr once over a new connection and returns the body bytes read.
func get(addr, path string) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	length := int64(-1)
	status := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("read header: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if status == "" {
			status = line
			continue
		}
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if !strings.Contains(status, " 200 ") || length < 0 {
		return 0, fmt.Errorf("answer %q (Content-Length %d): want 200 with a length", status, length)
	}
	// The bytes read with the header, then straight from the socket into a 1 MiB buffer: one
	// read per MiB at most, and no copy in this process.
	got, err := br.Discard(int(min(int64(br.Buffered()), length)))
	buf := make([]byte, 1<<20)
	total := int64(got)
	for err == nil && total < length {
		var m int
		m, err = c.Read(buf[:min(int64(len(buf)), length-total)])
		total += int64(m)
	}
	if errors.Is(err, io.EOF) && total < length {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return total, fmt.Errorf("body (%d of %d bytes): %w", total, length, err)
	}
	return total, nil
}
