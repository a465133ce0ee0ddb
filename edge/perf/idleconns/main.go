//go:build linux

// Command idleconns measures what an idle keep-alive viewer connection costs a server in
// resident memory: it opens N connections to the server, sends one GET on each and reads the
// answer, keeps them all open and idle, and reports the growth of the server's RSS (VmRSS from
// /proc/PID/status, summed over the given processes: an nginx master and its workers) divided
// by N. With -gc it reads RSS again once the server had time to give idle connections' memory
// back (the edge parks them, see idle_park_after) and collected garbage twice: the figure a
// server that keeps thousands of idle viewers settles at. For edge/perf/conns.sh;
// docs/performance.md has the figures.
//
//	go run ./edge/perf/idleconns -addr 127.0.0.1:18084 -path /obj/1k -n 4000 -pids 1234
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "", "the server's host:port (loopback)")
	path := flag.String("path", "/obj/1k", "the object each connection asks for once")
	n := flag.Int("n", 4000, "idle connections to open (1..100000)")
	pids := flag.String("pids", "", "comma-separated pids whose VmRSS is summed (the server's processes)")
	settle := flag.Duration("settle", 2*time.Second, "how long the connections stay idle before RSS is read again")
	hold := flag.Duration("hold", 0, "how long to keep the connections open after the figures are out (to profile the server)")
	gc := flag.String("gc", "", "a URL that makes the server collect garbage (the edge's admin /debug/pprof/heap?gc=1, with $DUET_EDGE_ADMIN_TOKEN): "+
		"after -gc-after, it is asked twice (sync.Pool keeps objects for two collections) and RSS is read again")
	gcAfter := flag.Duration("gc-after", 15*time.Second, "how long the connections stay idle before -gc (the edge parks idle connections after idle_park_after, fasthttp's idle workers end after 10 s)")
	flag.Parse()
	if err := run(*addr, *path, *n, *pids, *settle, *hold, *gc, *gcAfter); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(2)
	}
}

func run(addr, path string, n int, pidList string, settle, hold time.Duration, gcURL string, gcAfter time.Duration) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w (write host:port)", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses are measured", addr)
	}
	if n < 1 || n > 100000 || settle < 0 || settle > time.Minute || hold < 0 || hold > 10*time.Minute ||
		gcAfter < 0 || gcAfter > 10*time.Minute {
		return errors.New("-n must be 1..100000, -settle up to 1m, -hold and -gc-after up to 10m")
	}
	var pids []int
	for _, f := range strings.Split(pidList, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 {
			return fmt.Errorf("-pids %q: want comma-separated process ids", pidList)
		}
		pids = append(pids, p)
	}
	// One request first, so that the object is cached and the server's per-request machinery
	// (pools, the entry) exists before the baseline.
	c, err := open(addr, path)
	if err != nil {
		return err
	}
	_ = c.Close()
	time.Sleep(settle) //nolint:forbidigo // the server settles (collections, idle workers): a time, not a condition
	before, err := rss(pids)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, n)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 64 { // 64 at a time: the listener's backlog is not what is measured
		wg.Go(func() {
			for i := range next {
				c, err := open(addr, path)
				if err != nil {
					select {
					case errs <- fmt.Errorf("connection %d: %w", i, err):
					default:
					}
					continue
				}
				conns[i] = c
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	select {
	case err := <-errs:
		return err
	default:
	}
	time.Sleep(settle) //nolint:forbidigo // as above
	after, err := rss(pids)
	if err != nil {
		return err
	}
	// Every connection must still be open: a server that closed idle ones saves nothing real.
	for i, c := range conns {
		if err := idle(c); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
	}
	line := fmt.Sprintf("%d %d %d %.0f", n, before, after, float64(after-before)*1024/float64(n))
	if gcURL != "" {
		time.Sleep(max(gcAfter-settle, 0)) //nolint:forbidigo // idle time is what is measured
		for range 2 {
			if err := collect(gcURL); err != nil {
				return err
			}
		}
		time.Sleep(3 * time.Second) //nolint:forbidigo // the runtime returns freed pages in the background
		for i, c := range conns {
			if err := idle(c); err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
		}
		gcd, err := rss(pids)
		if err != nil {
			return err
		}
		line += fmt.Sprintf(" %d %.0f", gcd, float64(gcd-before)*1024/float64(n))
	}
	fmt.Println(line)
	time.Sleep(hold) //nolint:forbidigo // the operator profiles the server meanwhile
	return nil
}

// open dials, sends one GET and reads the whole answer, leaving the connection idle.
func open(addr, path string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("send: %w", err)
	}
	br := bufio.NewReader(c)
	length := -1
	status := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("read header: %w", err)
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
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if !strings.Contains(status, " 200 ") || length < 0 {
		_ = c.Close()
		return nil, fmt.Errorf("answer %q (Content-Length %d): want 200 with a length", status, length)
	}
	if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("read body: %w", err)
	}
	if br.Buffered() > 0 {
		_ = c.Close()
		return nil, errors.New("bytes after the body")
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// idle checks, without waiting, that nothing arrived on c and that it is still open: a peek
// that would block.
func idle(c net.Conn) error {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var perr error
	if err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return err
	}
	switch {
	case errors.Is(perr, syscall.EAGAIN):
		return nil
	case perr != nil:
		return fmt.Errorf("not idle: %w", perr)
	case n == 0:
		return errors.New("closed by the server while idle")
	}
	return errors.New("bytes arrived on an idle connection")
}

// collect asks the server to collect garbage (GET u, with the edge's admin token if set).
func collect(u string) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("-gc %q: %w", u, err)
	}
	if tok := os.Getenv("DUET_EDGE_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("-gc: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("-gc %s: %s (the edge needs admin_token, given here as $DUET_EDGE_ADMIN_TOKEN)", u, resp.Status)
	}
	return nil
}

// rss sums VmRSS (KiB) over pids.
func rss(pids []int) (int64, error) {
	var sum int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			return 0, fmt.Errorf("read the RSS of %d: %w", p, err)
		}
		found := false
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("VmRSS of %d: %q", p, v)
				}
				sum += kib
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("no VmRSS for %d", p)
		}
	}
	return sum, nil
}
