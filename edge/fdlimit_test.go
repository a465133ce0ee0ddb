package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/s3conf"
)

// TestEdgeProcessHelper is not a test: TestLowFileLimit runs the test binary as an edge process
// with it (DUET_EDGE_HELPER=1). It prints "edge <listen> <admin>" once serving and serves until
// killed; should Serve return, the process exits.
func TestEdgeProcessHelper(t *testing.T) {
	if os.Getenv("DUET_EDGE_HELPER") != "1" {
		t.Skip("the edge process of TestLowFileLimit")
	}
	cfg := testConfig(t)
	cfg.Origin = OriginConfig{Type: "http", Config: s3conf.Config{Endpoint: os.Getenv("DUET_EDGE_HELPER_ORIGIN")}, Timeout: 5 * time.Second}
	cfg.ReadTimeout, cfg.IdleTimeout = time.Minute, time.Minute // the idle flood stays open
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: cfg.Origin.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, Deps{Origin: o})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// DUET_EDGE_HELPER_FREE_FDS: take all descriptors but this many, as a busy disk tier or
	// other files would, so that accept runs out even below max_conns.
	var hog []*os.File
	if free, _ := strconv.Atoi(os.Getenv("DUET_EDGE_HELPER_FREE_FDS")); free > 0 {
		for range 1 << 16 {
			f, err := os.Open(os.DevNull)
			if err != nil {
				break
			}
			hog = append(hog, f)
		}
		for _, f := range hog[len(hog)-min(free, len(hog)):] {
			_ = f.Close()
		}
		hog = hog[:len(hog)-min(free, len(hog))]
	}
	fmt.Printf("edge %s %s %d %d\n", ln.Addr(), adm.Addr(), srv.MaxConns(), len(hog))
	err = srv.Serve(context.Background(), ln, adm)
	runtime.KeepAlive(hog) // else the collector closes the files
	fmt.Printf("edge stopped: %v\n", err)
	os.Exit(3)
}

// TestLowFileLimit: an edge process with `ulimit -n 256` (soft and hard) under 1,000 idle
// connections stays up, answers the connections over max_conns 503, and serves a fresh client
// within 1 s of the connections closing; when descriptors run out anyway (taken by other files),
// accept errors are counted on /metrics and retried. On 718ea16 the edge's Serve returned on
// EMFILE and the process exited.
func TestLowFileLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs bash's ulimit and Linux descriptor accounting")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") }))
	defer o.Close()
	for _, tc := range []struct {
		name     string
		freeFDs  int
		emfileOK bool // accept must have failed with EMFILE
	}{
		{name: "derived max_conns"},
		{name: "descriptors taken elsewhere", freeFDs: 24, emfileOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edge := startLimitedEdge(t, o.URL, tc.freeFDs)
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			if code, body := fetch(t, client, edge.url+"/a"); code != 200 || body != "hello" {
				t.Fatalf("before the flood: %d %q", code, body)
			}

			// 1,000 idle connections, opened at once.
			conns := make([]net.Conn, 1000)
			var wg sync.WaitGroup
			for i := range conns {
				wg.Go(func() {
					c, err := net.DialTimeout("tcp", edge.addr, 5*time.Second)
					if err == nil {
						conns[i] = c
					}
				})
			}
			wg.Wait()
			opened := 0
			for _, c := range conns {
				if c != nil {
					opened++
				}
			}
			// Let the edge accept what it can (and, on 718ea16, fail).
			time.Sleep(time.Second) //nolint:forbidigo // watching for an exit that must not happen
			if edge.exited() {
				t.Fatalf("the edge exited under %d connections: %s", opened, edge.output())
			}

			for _, c := range conns {
				if c != nil {
					_ = c.Close()
				}
			}
			closed := time.Now()
			fresh := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			code, body := fetch(t, fresh, edge.url+"/a")
			if code != 200 || body != "hello" {
				t.Fatalf("fresh client %v after the connections closed: %d %q; edge: %s", time.Since(closed), code, body, edge.output())
			}
			t.Logf("%d connections opened; max_conns %d; fresh client served %v after they closed",
				opened, edge.maxConns, time.Since(closed).Round(time.Millisecond))

			_, metrics := fetch(t, client, edge.admin+"/metrics")
			lines := grepLines(metrics, "duet_edge_accept_errors_total{")
			if !strings.Contains(lines, `reason="emfile"`) {
				t.Fatalf("/metrics has no accept error counter:\n%s", lines)
			}
			if tc.emfileOK && strings.Contains(lines, `duet_edge_accept_errors_total{reason="emfile"} 0`) {
				t.Fatalf("descriptors ran out but no EMFILE was counted:\n%s", lines)
			}
			t.Logf("%s", lines)
		})
	}
}

// fetch GETs url; an error is status 0 with the error as body.
func fetch(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

type limitedEdge struct {
	url, addr, admin string
	maxConns         int
	cmd              *exec.Cmd
	done             chan struct{}
	mu               sync.Mutex
	out              strings.Builder
}

func (e *limitedEdge) exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

func (e *limitedEdge) output() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out.String()
}

// startLimitedEdge runs the test binary's TestEdgeProcessHelper under `ulimit -n 256`.
func startLimitedEdge(t *testing.T, originURL string, freeFDs int) *limitedEdge {
	t.Helper()
	cmd := exec.Command("bash", "-c", `ulimit -n 256 && exec "$0" "$@"`, os.Args[0],
		"-test.run=^TestEdgeProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUET_EDGE_HELPER=1", "DUET_EDGE_HELPER_ORIGIN="+originURL,
		"DUET_EDGE_HELPER_FREE_FDS="+strconv.Itoa(freeFDs), "TMPDIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &limitedEdge{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			e.mu.Lock()
			e.out.WriteString(line + "\n")
			e.mu.Unlock()
			if strings.HasPrefix(line, "edge 127.0.0.1:") {
				ready <- line
			}
		}
		_ = cmd.Wait()
		close(e.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-e.done
	})
	select {
	case line := <-ready:
		var hogged int
		if _, err := fmt.Sscanf(line, "edge %s %s %d %d", &e.addr, &e.admin, &e.maxConns, &hogged); err != nil {
			t.Fatalf("edge process said %q: %v", line, err)
		}
		e.url, e.admin = "http://"+e.addr, "http://"+e.admin
	case <-e.done:
		t.Fatalf("edge process exited: %s", e.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("edge process not serving after 30s: %s", e.output())
	}
	return e
}
