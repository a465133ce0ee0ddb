// Command cpureq measures what a server's process spends per request at a fixed request rate:
// the CPU time (user and system, from /proc/PID/stat) over the requests answered. At a rate
// the machine can sustain, the figure does not depend on how the scheduler shares saturated
// cores between the server and the load generator, which makes wrk's req/s swing by ±15 % on a
// shared two-core machine; small differences between two builds show up in a few runs.
//
// Requests are GET over keep-alive connections (bare sockets: the client allocates nothing per
// request), paced evenly per connection; with -mix, /obj/z/0 to /obj/z/999 with Zipf (s = 1)
// popularity as peers.sh's mix (zipf.lua), otherwise -path.
//
//	go run ./edge/perf/cpureq -addr 127.0.0.1:18084 -pid $(pgrep -f 'duet edge') -rate 15000 -mix
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "the server's host:port (loopback)")
	pid := flag.Int("pid", 0, "the server's process id")
	rate := flag.Int("rate", 15000, "requests per second, all connections together")
	conns := flag.Int("conns", 32, "keep-alive connections")
	duration := flag.Duration("duration", 8*time.Second, "how long to measure (at most 1m)")
	path := flag.String("path", "/obj/1k", "the path asked for")
	mix := flag.Bool("mix", false, "ask for /obj/z/0 to /obj/z/999 with Zipf popularity instead of -path")
	flag.Parse()
	if err := run(*addr, *pid, *rate, *conns, *duration, *path, *mix); err != nil {
		fmt.Fprintln(os.Stderr, "cpureq:", err)
		os.Exit(2)
	}
}

func run(addr string, pid, rate, conns int, duration time.Duration, path string, mix bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses take load from this tool", addr)
	}
	switch {
	case pid <= 0:
		return errors.New("-pid: the server's process id is needed")
	case rate < 1 || conns < 1 || rate < conns:
		return errors.New("-rate and -conns must be positive, and -rate at least -conns")
	case duration <= 0 || duration > time.Minute:
		return errors.New("-duration must be between 0 and 1m")
	}
	cpu0, err := processCPU(pid)
	if err != nil {
		return err
	}
	var done atomic.Int64
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	every := time.Duration(float64(time.Second) * float64(conns) / float64(rate))
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := load(addr, start, every, duration, path, mix, uint64(c), &done); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	cpu1, err := processCPU(pid)
	if err != nil {
		return err
	}
	n := done.Load()
	if n == 0 {
		return errors.New("no request was answered")
	}
	fmt.Printf("requests %d rate %.0f/s cpu %.2f µs/request\n", n, float64(n)/elapsed.Seconds(),
		float64((cpu1-cpu0).Microseconds())/float64(n))
	return nil
}

// load asks on one connection, one request every `every`, until duration has passed.
func load(addr string, start time.Time, every, duration time.Duration, path string, mix bool, seed uint64, done *atomic.Int64) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	z := newZipf(1000)
	reqs := make(map[int][]byte)
	req := func(n int) []byte {
		if b, ok := reqs[n]; ok {
			return b
		}
		p := path
		if n >= 0 {
			p = "/obj/z/" + strconv.Itoa(n)
		}
		b := []byte("GET " + p + " HTTP/1.1\r\nHost: cpureq\r\n\r\n")
		reqs[n] = b
		return b
	}
	next := start.Add(time.Duration(rng.Int64N(int64(every))))
	for time.Since(start) < duration {
		if d := time.Until(next); d > 0 {
			time.Sleep(d) //nolint:forbidigo // the pacing is the point: one request every `every`
		}
		next = next.Add(every)
		n := -1
		if mix {
			n = z.draw(rng)
		}
		if _, err := conn.Write(req(n)); err != nil {
			return err
		}
		if err := readResponse(r); err != nil {
			return err
		}
		done.Add(1)
	}
	return nil
}

// readResponse reads one 200 response with a Content-Length, body included.
func readResponse(r *bufio.Reader) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q: the objects must be there (peers.sh up)", line)
	}
	n := -1
	for {
		if line, err = r.ReadSlice('\n'); err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return fmt.Errorf("content length %q", v)
			}
		}
	}
	if n < 0 {
		return errors.New("a response without Content-Length")
	}
	_, err = r.Discard(n)
	return err
}

// zipf draws 0..n-1 with popularity 1/(i+1), as zipf.lua does.
type zipf struct{ cdf []float64 }

func newZipf(n int) zipf {
	cdf, total := make([]float64, n), 0.0
	for i := range cdf {
		total += 1 / float64(i+1)
		cdf[i] = total
	}
	for i := range cdf {
		cdf[i] /= total
	}
	return zipf{cdf}
}

func (z zipf) draw(rng *rand.Rand) int {
	u, lo, hi := rng.Float64(), 0, len(z.cdf)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if z.cdf[mid] < u {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// processCPU is the process's user and system time so far.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading the server's CPU time: %w", err)
	}
	// The fields after the command's closing parenthesis: state is the first, utime the 12th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}
