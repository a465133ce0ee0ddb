package edge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// primedLoggedEdge is primedEdge with the access log on, written to a file.
func primedLoggedEdge(tb testing.TB, uri string) (*harness, *bufio.Writer) {
	file := filepath.Join(tb.TempDir(), "access.log")
	h := startEdge(tb, objectOrigin(tb), func(c *Config) {
		c.Memory.MaxObjectBytes = 1 << 20
		c.AccessLog.Sink, c.AccessLog.File = "file", file
	})
	resp, _ := h.get(uri)
	if resp.StatusCode != 200 {
		tb.Fatalf("prime %s: %d", uri, resp.StatusCode)
	}
	h.waitCached(uri)
	return h, bufio.NewWriterSize(io.Discard, 64<<10)
}

// BenchmarkHitLogging is BenchmarkHit's 1 KiB memory hit with the access log off and on (JSON
// lines to a file): the log must cost the hit path no allocation and little time. ns/op is the
// time a hit takes on the request's goroutine; the log's writer goroutine formats and writes
// the lines meanwhile on another core (with GOMAXPROCS ≥ 2). dropped/op and written/op show
// that every line was written, not dropped: a dropping log would be cheap for the wrong reason.
// req-cpu-ns/op is the CPU time the request goroutine used per hit (its thread's CPU clock),
// which a busy machine does not inflate the way it does ns/op; cpu-ns/op is the whole
// process's, the writer's formatting and write(2) included.
func BenchmarkHitLogging(b *testing.B) {
	benchHitLogging(b, func(b *testing.B, h *harness, ctx *fasthttp.RequestCtx, w *bufio.Writer) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0, ok := threadCPU()
		for b.Loop() {
			if err := serveOnce(h.srv, ctx, w); err != nil {
				b.Fatal(err)
			}
		}
		if t1, ok1 := threadCPU(); ok && ok1 {
			b.ReportMetric(float64(t1-t0)/float64(b.N), "req-cpu-ns/op")
		}
	})
}

// BenchmarkHitLoggingParallel is BenchmarkHitLogging with a request loop on every core
// (b.RunParallel): the writer goroutine's formatting and write(2) now take CPU from the
// requests, so ns/op shows what the log costs a saturated edge in throughput (and cpu-ns/op
// what it costs in CPU, whatever else the machine runs).
func BenchmarkHitLoggingParallel(b *testing.B) {
	benchHitLogging(b, func(b *testing.B, h *harness, _ *fasthttp.RequestCtx, _ *bufio.Writer) {
		b.RunParallel(func(pb *testing.PB) {
			ctx, w := handlerCtx(hitLoggingURI), bufio.NewWriterSize(io.Discard, 64<<10)
			for pb.Next() {
				if err := serveOnce(h.srv, ctx, w); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkHitLoggingPairs is BenchmarkHitLogging's comparison made robust to a shared
// machine: two edges, the log off on one and writing to a file on the other, serve the same
// 1 KiB memory hit in alternating blocks of 1,000 from one locked thread, and the thread's CPU
// time is summed per edge. Whatever else the machine runs slows both alike, block by block;
// logged/off is the log's cost to a hit (the target: ≤ 1.05).
func BenchmarkHitLoggingPairs(b *testing.B) {
	const uri, block = hitLoggingURI, 1000
	off, _, w := primedEdge(b, uri)
	on, w2 := primedLoggedEdge(b, uri)
	hs := [2]*harness{off, on}
	ctxs := [2]*fasthttp.RequestCtx{handlerCtx(uri), handlerCtx(uri)}
	ws := [2]*bufio.Writer{w, w2}
	before := logCounts(b, on)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu [2]time.Duration
	var n [2]int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += block {
		k := min(block, b.N-i)
		v := (i / block) % 2
		t0, ok := threadCPU()
		for range k {
			if err := serveOnce(hs[v].srv, ctxs[v], ws[v]); err != nil {
				b.Fatal(err)
			}
		}
		t1, ok1 := threadCPU()
		if !ok || !ok1 {
			b.Skip("no thread CPU clock here")
		}
		cpu[v] += t1 - t0
		n[v] += k
	}
	b.StopTimer()
	_ = on.srv.alog.Close()
	after := logCounts(b, on)
	if n[0] == 0 || n[1] == 0 {
		return
	}
	offNs, onNs := float64(cpu[0])/float64(n[0]), float64(cpu[1])/float64(n[1])
	b.ReportMetric(offNs, "off-cpu-ns/hit")
	b.ReportMetric(onNs, "file-cpu-ns/hit")
	b.ReportMetric(onNs/offNs, "file/off")
	b.ReportMetric((after[1]-before[1])/float64(n[1]), "dropped/line")
}

// hitLoggingURI is the object BenchmarkHitLogging asks for: 1 KiB.
const hitLoggingURI = "/obj/10/1024"

func benchHitLogging(b *testing.B, loop func(*testing.B, *harness, *fasthttp.RequestCtx, *bufio.Writer)) {
	const uri = hitLoggingURI
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "file"
		}
		b.Run(name, func(b *testing.B) {
			var h *harness
			var w *bufio.Writer
			if on {
				h, w = primedLoggedEdge(b, uri)
			} else {
				h, _, w = primedEdge(b, uri)
			}
			ctx := handlerCtx(uri)
			var before [2]float64
			if on {
				before = logCounts(b, h)
			}
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			p0, ok := processCPU()
			loop(b, h, ctx, w)
			b.StopTimer()
			if on {
				_ = h.srv.alog.Close() // writes what is left: its cost is the hits'
			}
			if p1, ok1 := processCPU(); ok && ok1 {
				b.ReportMetric(float64(p1-p0)/float64(b.N), "cpu-ns/op")
			}
			if on {
				after := logCounts(b, h)
				b.ReportMetric((after[0]-before[0])/float64(b.N), "written/op")
				b.ReportMetric((after[1]-before[1])/float64(b.N), "dropped/op")
			}
		})
	}
}

// logCounts is the access log's written and dropped lines so far.
func logCounts(tb testing.TB, h *harness) (n [2]float64) {
	mfs, err := h.srv.gather.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "duet_access_log_lines_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch m.GetLabel()[0].GetValue() {
			case "written":
				n[0] = m.GetCounter().GetValue()
			case "dropped":
				n[1] = m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestMemoryHitAllocationsLogged: with the access log on, a memory hit still does not allocate.
func TestMemoryHitAllocationsLogged(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	const uri = "/obj/11/1024"
	h, w := primedLoggedEdge(t, uri)
	ctx := handlerCtx(uri)
	if err := serveOnce(h.srv, ctx, w); err != nil || ctx.Response.StatusCode() != 200 {
		t.Fatalf("serve: %d %v", ctx.Response.StatusCode(), err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := serveOnce(h.srv, ctx, w); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("memory hit with the access log on: %.1f allocs", allocs)
	if allocs > 0 {
		t.Fatalf("a logged memory hit allocates %.1f times per request, want 0", allocs)
	}
}

// BenchmarkHitLoggingLoopback is the same 1 KiB memory hit served as viewers get it: over
// loopback TCP, through the edge's own listener and fasthttp's connection loop, to 8 keep-alive
// clients (bare sockets that write a request and read its response: they allocate nothing, so
// allocs/op is the edge's). ns/op is the wall time per hit with the clients, the edge, and the
// log's writer sharing the machine's cores: the access log's whole cost to a saturated edge,
// writer included, where BenchmarkHitLogging shows the handler's share alone.
func BenchmarkHitLoggingLoopback(b *testing.B) {
	const uri, clients = hitLoggingURI, 8
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "file"
		}
		b.Run(name, func(b *testing.B) {
			var h *harness
			if on {
				h, _ = primedLoggedEdge(b, uri)
			} else {
				h, _, _ = primedEdge(b, uri)
			}
			addr := strings.TrimPrefix(h.url, "http://")
			conns := make([]*hitClient, clients)
			for i := range conns {
				c, err := dialHitClient(addr, uri)
				if err != nil {
					b.Fatal(err)
				}
				defer c.conn.Close()
				if err := c.hit(); err != nil { // the first read sizes the client's buffer
					b.Fatal(err)
				}
				conns[i] = c
			}
			var before [2]float64
			if on {
				before = logCounts(b, h)
			}
			var next atomic.Int64
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := c.hit(); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			if on {
				_ = h.srv.alog.Close()
				after := logCounts(b, h)
				b.ReportMetric((after[0]-before[0])/float64(b.N), "written/op")
				b.ReportMetric((after[1]-before[1])/float64(b.N), "dropped/op")
			}
		})
	}
}

// hitClient is a keep-alive HTTP/1.1 client of one URI that allocates nothing per request.
type hitClient struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
}

func dialHitClient(addr, uri string) (*hitClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &hitClient{conn: conn, r: bufio.NewReaderSize(conn, 16<<10),
		req: []byte("GET " + uri + " HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")}, nil
}

// hit sends the request and reads the whole response; it wants a 200 with a Content-Length.
func (c *hitClient) hit() error {
	if _, err := c.conn.Write(c.req); err != nil {
		return err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	n := -1
	for {
		line, err = c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n = 0
			for _, d := range bytes.TrimSpace(v) {
				n = n*10 + int(d-'0')
			}
		}
	}
	if n < 0 {
		return errors.New("a response without Content-Length")
	}
	_, err = c.r.Discard(n)
	return err
}
