package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

// faultyListener fails its next accepts with the errors queued in fail, then accepts from the
// real listener.
type faultyListener struct {
	net.Listener
	mu   sync.Mutex
	fail []error
}

func (l *faultyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.fail) > 0 {
		err := l.fail[0]
		l.fail = l.fail[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func (l *faultyListener) queue(errs ...error) {
	l.mu.Lock()
	l.fail = append(l.fail, errs...)
	l.mu.Unlock()
}

// acceptErr is what accept4 returning errno looks like through net.Listener.
func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

func TestViewerListenerRetriesAcceptErrors(t *testing.T) {
	real, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &faultyListener{Listener: real}
	fl.queue(acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE),
		acceptErr(syscall.ECONNABORTED), errors.New("something else"))
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accept_errors_total"}, []string{"reason"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(errs)
	vl := newViewerListener(fl, slog.New(slog.DiscardHandler), errs, 16<<10)

	go func() {
		if c, err := net.Dial("tcp", real.Addr().String()); err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	c, err := vl.Accept()
	if err != nil {
		t.Fatalf("accept returned %v: want a connection after the temporary errors", err)
	}
	_ = c.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	for reason, want := range map[string]float64{"emfile": 2, "enfile": 1, "econnaborted": 1, "other": 1, "enomem": 0} {
		if got[reason] != want {
			t.Errorf("accept errors %s = %v, want %v", reason, got[reason], want)
		}
	}

	// Closing the listener ends an Accept that is waiting out its backoff, with an error.
	fl.queue(acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE),
		acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE),
		acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE))
	done := make(chan error, 1)
	go func() { _, err := vl.Accept(); done <- err }()
	time.Sleep(100 * time.Millisecond)
	_ = vl.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "use of closed network connection") {
			t.Fatalf("accept after close: %v, want net.ErrClosed (fasthttp then ends Serve cleanly)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("accept did not return after close")
	}
}

// TestEdgeServesThroughAcceptErrors: an edge whose listener fails with EMFILE (and other accept
// errors) keeps serving, and counts them on /metrics. On 718ea16 fasthttp's Serve returned on the
// first one and the edge stopped.
func TestEdgeServesThroughAcceptErrors(t *testing.T) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") }))
	defer o.Close()
	ho, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: o.URL})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(t.Context(), testConfig(t), Deps{Origin: ho})
	if err != nil {
		t.Fatal(err)
	}
	real, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &faultyListener{Listener: real}
	fl.queue(acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, fl, adm) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge serve: %v", err)
		}
	}()
	testenv.Eventually(t, 5*time.Second, srv.Ready, "edge not ready")

	// A new connection per request: each accept meets the next queued error.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		fl.queue(acceptErr(syscall.EMFILE))
		resp, err := client.Get("http://" + real.Addr().String() + "/a")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("edge stopped on accept errors: %v", err)
	default:
	}
	var metrics string
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, err := client.Get("http://" + adm.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = grepLines(string(b), "accept_errors")
		if strings.Contains(metrics, `duet_edge_accept_errors_total{reason="emfile"} 5`) &&
			strings.Contains(metrics, `duet_edge_accept_errors_total{reason="enfile"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics does not count the accept errors:\n%s", metrics)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestViewerConnLineEndings follows header blocks through the reads that deliver them.
func TestViewerConnLineEndings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		err    error
		long   bool
		scan   bool // still within the header block after the last chunk
	}{
		{name: "crlf", chunks: []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}},
		{name: "split everywhere", chunks: []string{"GET / HTTP/1.1\r", "\n", "Host: x\r", "\n\r", "\n"}},
		{name: "leading empty line", chunks: []string{"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"}},
		{name: "unfinished", chunks: []string{"GET / HTTP/1.1\r\nHost: x\r\n"}, scan: true},
		{name: "body is not checked", chunks: []string{"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\na\nb", "\r\r\n"}},
		{name: "bare LF", chunks: []string{"GET / HTTP/1.1\nHost: x\n\n"}, err: errBareLF},
		{name: "bare LF after a header", chunks: []string{"GET / HTTP/1.1\r\nHost: x\n\r\n"}, err: errBareLF},
		{name: "bare LF at a read's start", chunks: []string{"GET / HTTP/1.1\r\nHost: x", "\n"}, err: errBareLF},
		{name: "bare CR", chunks: []string{"GET / HTTP/1.1\rHost: x\r\r"}, err: errBareCR},
		{name: "bare CR at a read's end", chunks: []string{"GET / HTTP/1.1\r", "Host"}, err: errBareCR},
		{name: "long request line", chunks: []string{"GET /" + strings.Repeat("a", 40), strings.Repeat("a", 40)}, long: true, scan: true},
		{name: "long header", chunks: []string{"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 80)}, scan: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newViewerConn(nil, 64, nil)
			var err error
			for _, ch := range tc.chunks {
				if err = c.check([]byte(ch)); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.err) || c.longLine != tc.long || tc.err == nil && c.scan != tc.scan {
				t.Fatalf("err %v long %v scan %v; want %v %v %v", err, c.longLine, c.scan, tc.err, tc.long, tc.scan)
			}
		})
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
