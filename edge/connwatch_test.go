package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/s3conf"
)

// watchEdge starts an edge with short viewer timeouts in front of an origin serving body.
func watchEdge(t *testing.T, body []byte) *harness {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return startEdge(t, o, func(c *Config) {
		c.ReadTimeout, c.IdleTimeout = 400*time.Millisecond, 2*time.Second
		c.Memory.MaxObjectBytes = 32 << 20
	})
}

// closedWithin reports whether the edge closes c within d, reading (and discarding) whatever
// the edge sends meanwhile.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // EOF or reset: the edge closed it
}

func TestViewerTimeouts(t *testing.T) {
	t.Parallel()
	h := watchEdge(t, randomBytes(1000, 7))
	addr := strings.TrimPrefix(h.url, "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("silent connection", func(t *testing.T) {
		c := dial()
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("a connection that never sent a byte was still open after 5s (read_timeout 400ms)")
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		// A request whose headers trickle in, one byte every 100 ms, never completes: the edge
		// must drop it although bytes keep arriving.
		c := dial()
		if _, err := io.WriteString(c, "GET /obj HTTP/1.1\r\nHost: edge\r\n"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			for time.Since(start) < 5*time.Second {
				if _, err := c.Write([]byte("X")); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond) //nolint:forbidigo // the slowloris trickle: a byte every 100 ms
			}
		}()
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("a request trickling in was still open after 5s (read_timeout 400ms)")
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("closed after %v, before read_timeout", d)
		}
		<-closed
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial()
		br := bufio.NewReader(c)
		for i := range 3 {
			// Requests 200 ms apart, each gap far shorter than idle_timeout: the connection stays.
			if _, err := io.WriteString(c, "GET /obj HTTP/1.1\r\nHost: edge\r\n\r\n"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d on a kept-alive connection: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			time.Sleep(200 * time.Millisecond) //nolint:forbidigo // a gap between keep-alive requests, far shorter than idle_timeout
		}
		start := time.Now()
		if !closedWithin(c, 10*time.Second) {
			t.Fatal("an idle keep-alive connection was still open after 10s (idle_timeout 2s)")
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("idle connection closed after %v, before idle_timeout", d)
		}
	})

	// duet_edge_viewer_timeouts_total counts them.
	if n := h.srv.watch.closed.Load(); n < 3 {
		t.Errorf("%d connections counted as timed out, want at least 3", n)
	}
}

// TestSlowViewerGetsTheWholeObject: the timeouts bound requests, not answers: a viewer that
// reads a large object for far longer than both timeouts gets every byte.
func TestSlowViewerGetsTheWholeObject(t *testing.T) {
	t.Parallel()
	body := randomBytes(24<<20, 8)
	h := watchEdge(t, body)
	h.get("/big") // cached now
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: edge\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	chunk := make([]byte, 512<<10)
	for {
		n, err := io.ReadFull(resp.Body, chunk)
		got.Write(chunk[:n])
		if err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) //nolint:forbidigo // about 5 MB/s: 24 MiB take about 5 s
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("read in %v: too fast to outlast the timeouts", d)
	}
	if !bytes.Equal(got.Bytes(), body) {
		t.Fatalf("slow viewer got %d of %d bytes (or other bytes)", got.Len(), len(body))
	}
}

// TestConnWatchNeverClosesEarly: a sweeper held up for longer than the timeout must not count
// the hold-up against a connection that arrived during it. The sweeper's clock is a test clock:
// the timings are exact, whatever the machine's load.
func TestConnWatchNeverClosesEarly(t *testing.T) {
	t.Parallel()
	clk := newClock()
	w := newConnWatch(200*time.Millisecond, time.Hour, clk.Now)
	server, client := net.Pipe()
	defer client.Close()
	clk.Advance(250 * time.Millisecond) // the sweeper is late: sweep 0 began 250 ms ago
	w.connState(server, fasthttp.StateNew)
	w.sweepOnce()
	if w.closed.Load() != 0 {
		t.Fatal("a connection that arrived just now was closed by a late sweep")
	}
	clk.Advance(100 * time.Millisecond)
	w.sweepOnce()
	if w.closed.Load() != 0 {
		t.Fatal("closed 100 ms after the late sweep, with a 200 ms read timeout")
	}
	clk.Advance(99 * time.Millisecond)
	w.sweepOnce()
	if w.closed.Load() != 0 {
		t.Fatal("closed 199 ms after the late sweep, with a 200 ms read timeout")
	}
	clk.Advance(1 * time.Millisecond)
	w.sweepOnce()
	if w.closed.Load() != 1 {
		t.Fatal("not closed 200 ms after the late sweep (the latest the connection can have arrived), with a 200 ms read timeout")
	}
	if _, err := client.Write([]byte("x")); err == nil {
		t.Fatal("the closed connection still accepts writes")
	}
}

// TestConnWatchIdle: an idle keep-alive connection is bounded by the idle timeout, counted
// from the sweep after it went idle; a connection whose answer is being written is not bounded.
func TestConnWatchIdle(t *testing.T) {
	t.Parallel()
	clk := newClock()
	w := newConnWatch(time.Second, 3*time.Second, clk.Now)
	idle, idleClient := net.Pipe()
	defer idleClient.Close()
	busy, busyClient := net.Pipe()
	defer busyClient.Close()
	for _, c := range []net.Conn{idle, busy} {
		w.connState(c, fasthttp.StateNew)
		w.connState(c, fasthttp.StateActive)
	}
	w.handling(busy)
	w.connState(idle, fasthttp.StateIdle) // noted during sweep 0
	clk.Advance(time.Second)
	w.sweepOnce() // sweep 1: the idle phase began before it
	clk.Advance(2*time.Second - time.Millisecond)
	w.sweepOnce()
	if w.closed.Load() != 0 {
		t.Fatal("an idle connection was closed before idle_timeout, or one that is being answered was closed")
	}
	clk.Advance(time.Hour)
	w.sweepOnce()
	if w.closed.Load() != 1 {
		t.Fatalf("%d connections closed an hour later, want the idle one only", w.closed.Load())
	}
	if _, err := idleClient.Write([]byte("x")); err == nil {
		t.Fatal("the idle connection is still open")
	}
}

// TestSlowOriginOutlastsReadTimeout: a forwarded request whose origin answers after longer
// than the read timeout is answered, not cut: the read timeout ends when the request is read.
func TestSlowOriginOutlastsReadTimeout(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(time.Second) //nolint:forbidigo // a deliberately slow origin
		_, _ = io.WriteString(w, "created")
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, func(c *Config) { c.ReadTimeout, c.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond })
	resp, body := h.do(http.MethodPost, "/upload")
	if resp.StatusCode != http.StatusOK || string(body) != "created" {
		t.Fatalf("POST through a 1 s origin with a 300 ms read timeout: %d %q", resp.StatusCode, body)
	}
}

// TestViewerTimeoutsConfig: a zero or negative timeout is refused with a message naming the
// settings, instead of an edge that never closes idle connections.
func TestViewerTimeoutsConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		read, idle time.Duration
		ok         bool
	}{
		{30 * time.Second, time.Minute, true},
		{time.Millisecond, time.Millisecond, true},
		{0, time.Minute, false},
		{30 * time.Second, -time.Second, false},
	} {
		cfg := DefaultConfig()
		cfg.Origin = OriginConfig{Type: "http", Config: s3conf.Config{Endpoint: "http://o"}, Timeout: time.Second}
		cfg.ReadTimeout, cfg.IdleTimeout = c.read, c.idle
		err := cfg.Validate()
		if (err == nil) != c.ok || (err != nil && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "read_timeout and idle_timeout"))) {
			t.Errorf("read_timeout %v idle_timeout %v: err %v, want ok=%v", c.read, c.idle, err, c.ok)
		}
	}
}
