package edge

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/origin"
)

// slowReader releases a body in steps, so that "bytes before the fill completes" is observable.
type slowReader struct {
	r     io.ReadCloser
	step  int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause) //nolint:forbidigo // paces a deliberately slow origin body
	if len(p) > s.step {
		p = p[:s.step]
	}
	return s.r.Read(p)
}
func (s *slowReader) Close() error { return s.r.Close() }

// TestCollapsedColdObject: 200 viewers ask for one cold 8 MiB object at once. Exactly one GET
// reaches MinIO, all 200 get identical bytes, and they receive their first bytes while the fill
// is still running (read-while-write), not after it.
func TestCollapsedColdObject(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(8<<20, 11)
	env.put(t, "cold/8m.mp4", body, "max-age=600", nil)
	co := newCounting(env.origin)
	// 8 MiB in 256 KiB steps 20 ms apart: the fill takes about 640 ms.
	co.slowBody = func(r io.ReadCloser) io.ReadCloser {
		return &slowReader{r: r, step: 256 << 10, pause: 20 * time.Millisecond}
	}
	h := startEdge(t, co, func(c *Config) { c.Memory.MaxObjectBytes = 16 << 20 })

	const viewers = 200
	var wg sync.WaitGroup
	sums := make([][32]byte, viewers)
	firstByte := make([]time.Time, viewers)
	errs := make(chan error, viewers)
	start := make(chan struct{})
	for i := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := h.client.Get(h.url + "/cold/8m.mp4")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var one [1]byte
			if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
				errs <- err
				return
			}
			firstByte[i] = time.Now()
			hsh := sha256.New()
			hsh.Write(one[:])
			if _, err := io.Copy(hsh, resp.Body); err != nil {
				errs <- err
				return
			}
			copy(sums[i][:], hsh.Sum(nil))
		}()
	}
	close(start)
	wg.Wait()
	fillDone := time.Now()
	close(errs)
	for err := range errs {
		t.Fatalf("viewer: %v", err)
	}
	want := sha256.Sum256(body)
	for i, s := range sums {
		if s != want {
			t.Fatalf("viewer %d got different bytes", i)
		}
	}
	if n := co.fetches("/cold/8m.mp4"); n != 1 {
		t.Fatalf("origin GETs: %d, want exactly 1", n)
	}
	early := 0
	for _, fb := range firstByte {
		if fillDone.Sub(fb) > 200*time.Millisecond {
			early++
		}
	}
	if early < viewers*9/10 {
		t.Fatalf("only %d of %d viewers had bytes well before the fill completed", early, viewers)
	}
	if c := testutilCounter(t, h, "duet_edge_collapsed_requests_total"); c < viewers-1 {
		t.Errorf("collapsed_requests_total = %v, want >= %d", c, viewers-1)
	}
}

// TestOriginCutMidBody: when the origin cuts a body, every viewer waiting on that fill sees a
// failed transfer (never a short 200), and nothing is cached.
func TestOriginCutMidBody(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		w.WriteHeader(200)
		if n == 1 {
			w.Write(bytes.Repeat([]byte("x"), 300<<10))
			w.(http.Flusher).Flush()
			<-release
			panic(http.ErrAbortHandler) // cut the connection mid-body
		}
		w.Write(bytes.Repeat([]byte("y"), 1<<20))
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, o, nil)
	const viewers = 20
	var wg sync.WaitGroup
	results := make(chan error, viewers)
	for range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.client.Get(h.url + "/cut.bin")
			if err != nil {
				results <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && len(b) < 1<<20 {
				err = errors.New("short body without an error")
			}
			if err == nil {
				err = errors.New("complete body")
			}
			results <- err
		}()
	}
	// Let every viewer join the fill before the cut.
	testenv.Eventually(t, 10*time.Second, func() bool {
		return testutilCounter(t, h, "duet_edge_collapsed_requests_total") >= viewers-1
	}, "viewers never joined the fill")
	close(release)
	wg.Wait()
	close(results)
	for err := range results {
		if err.Error() == "complete body" || err.Error() == "short body without an error" {
			t.Fatalf("a viewer got %v", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("origin calls %d, want 1", n)
	}
	if _, ok := h.srv.store.peek("/cut.bin"); ok {
		t.Fatal("a cut body was cached")
	}
	resp, got := h.get("/cut.bin")
	expect(t, resp, 200, "MISS")
	if len(got) != 1<<20 || got[0] != 'y' {
		t.Fatal("refetch after the cut failed")
	}
}
