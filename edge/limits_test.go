package edge

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/origin"
)

func TestConnBudget(t *testing.T) {
	for _, tc := range []struct {
		limit       uint64
		originConns int
		configured  int
		want        int
		clamped     bool
	}{
		{limit: 1 << 20, originConns: 256, want: derivedMaxConnsCap},                                         // plenty: the old default
		{limit: 20000, originConns: 256, want: (20000 - 64 - 256) / 2},                                       // half of what is left
		{limit: 4096, originConns: 512, want: (4096 - 64 - 512) / 2},                                         // two origins
		{limit: 256, originConns: 256, want: 64},                                                             // floor: a quarter of the limit
		{limit: 20000, originConns: 256, configured: 5000, want: 5000},                                       // an operator's value that fits
		{limit: 256, originConns: 256, configured: 65536, want: 64, clamped: true},                           // one that does not
		{limit: 0, originConns: 256, want: derivedMaxConnsCap},                                               // no known limit
		{limit: 0, originConns: 256, configured: 200000, want: 200000},                                       // no known limit, set
		{limit: 1 << 62, originConns: 256, configured: 1 << 20, want: 1 << 20},                               // unlimited
		{limit: 2, originConns: 256, want: 1},                                                                // absurd, still positive
		{limit: 1 << 20, originConns: 256, configured: derivedMaxConnsCap * 4, want: derivedMaxConnsCap * 4}, // set above the cap
	} {
		got, clamped := effectiveMaxConns(tc.configured, connBudget(tc.limit, tc.originConns))
		if got != tc.want || clamped != tc.clamped {
			t.Errorf("limit %d, origins %d, max_conns %d: got %d (clamped %v), want %d (%v)",
				tc.limit, tc.originConns, tc.configured, got, clamped, tc.want, tc.clamped)
		}
	}
	cfg := DefaultConfig()
	cfg.Origin.Fallbacks = OriginList{{Name: "b", MaxConns: 100}, {Name: "c"}}
	if got := cfg.originConns(); got != 256+100+256 {
		t.Errorf("originConns = %d, want %d", got, 256+100+256)
	}
}

// startLimitsEdge is an edge in front of an HTTP origin that answers "hello" to everything,
// with a long read timeout, so that an answer that waits for it shows.
func startLimitsEdge(t *testing.T, mutate func(*Config)) (*harness, string) {
	t.Helper()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(o.Close)
	ho, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: o.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, ho, func(c *Config) {
		c.ReadTimeout = 30 * time.Second
		if mutate != nil {
			mutate(c)
		}
	})
	return h, strings.TrimPrefix(h.url, "http://")
}

// rawAnswer is what the edge answered to raw request bytes on a new connection.
type rawAnswer struct {
	status int
	body   string
	after  time.Duration // from the request's last byte to the answer's end
	// closed is the read error after the answer: io.EOF for an orderly close, nil when the
	// connection stayed open.
	closed error
}

// rawExchange writes req and reads one answer; with halfClose it shuts the connection for
// writing after req (the viewer sent all it will). A connection that gives no answer within 10 s
// fails the test.
func rawExchange(t *testing.T, addr, req string, halfClose ...bool) rawAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write %.40q: %v", req, err)
	}
	if len(halfClose) > 0 && halfClose[0] {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	start := time.Now()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%.60q: no answer after %v: %v", req, time.Since(start).Round(time.Millisecond), err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%.60q: answer %d, body: %v", req, resp.StatusCode, err)
	}
	a := rawAnswer{status: resp.StatusCode, body: string(b), after: time.Since(start)}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := br.ReadByte(); err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			a.closed = err
		}
	}
	return a
}

// TestLongHeadersWithinLimit: a 12 KiB header (a signed URL's token, a big cookie) is served.
// On 718ea16 the limit was fasthttp's 4 KiB read buffer: 431, or a reset.
func TestLongHeadersWithinLimit(t *testing.T) {
	h, _ := startLimitsEdge(t, nil)
	token := strings.Repeat("t", 12<<10)
	resp, body := h.get("/signed.ts?token="+token[:2<<10], "X-Signature", token)
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("12 KiB header: %d %q", resp.StatusCode, body)
	}
}

// TestOversizedRequestAnswered: a request line or header block over max_header_bytes is
// answered 414 or 431 with the reason, and the connection closes in order (no reset, which made
// the viewer lose the answer). The limit is configurable.
func TestOversizedRequestAnswered(t *testing.T) {
	h, addr := startLimitsEdge(t, nil)
	bigHeader := "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n"
	bigLine := "GET /" + strings.Repeat("a", 20<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	manyHeaders := "GET /a HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: yes\r\n", 2000) + "\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"large header", bigHeader, http.StatusRequestHeaderFieldsTooLarge},
		{"many headers", manyHeaders, http.StatusRequestHeaderFieldsTooLarge},
		{"long request line", bigLine, http.StatusRequestURITooLong},
	} {
		a := rawExchange(t, addr, tc.req)
		if a.status != tc.status || !strings.Contains(a.body, "max_header_bytes") {
			t.Errorf("%s: %d %q, want %d with the reason", tc.name, a.status, a.body, tc.status)
		}
		if a.closed != io.EOF {
			t.Errorf("%s: after the answer %v, want an orderly close (EOF)", tc.name, a.closed)
		}
	}
	_ = h

	// Raised, the same headers are served; the path and query stay within the cache key's
	// 8 KiB (414 too).
	_, addr = startLimitsEdge(t, func(c *Config) { c.MaxHeaderBytes = 64 << 10 })
	for _, req := range []string{bigHeader, manyHeaders} {
		if a := rawExchange(t, addr, req); a.status != 200 {
			t.Errorf("max_header_bytes 64KiB, %.30q: %d %q", req, a.status, a.body)
		}
	}
	if a := rawExchange(t, addr, bigLine); a.status != http.StatusRequestURITooLong || !strings.Contains(a.body, "8192") {
		t.Errorf("max_header_bytes 64KiB, 20 KiB path: %d %q, want 414 (the cache key's limit)", a.status, a.body)
	}
}

// TestBareLFAnsweredAtOnce: a request with bare LF line endings is answered 400 at once; on
// 718ea16 it waited for the read timeout (30 s here) and was closed without an answer. Also on
// a keep-alive connection's second request.
func TestBareLFAnsweredAtOnce(t *testing.T) {
	_, addr := startLimitsEdge(t, nil)
	for _, req := range []string{
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET /a HTTP/1.1\r\nHost: x\n\r\n",
		"GET /a HTTP/1.1\rHost: x\r\r",
	} {
		a := rawExchange(t, addr, req)
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, "CRLF") || a.after > 5*time.Second {
			t.Errorf("%q: %d %q after %v, want 400 with the reason at once", req, a.status, a.body, a.after)
		}
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, req := range []string{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a HTTP/1.1\nHost: x\n\n"} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want := []int{200, 400}[i]; resp.StatusCode != want {
			t.Fatalf("keep-alive request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// TestMalformedRequestsAnswered: every malformed request gets a 4xx with a reason, promptly,
// never a hang or a reset; Transfer-Encoding with Content-Length (request smuggling) is refused.
func TestMalformedRequestsAnswered(t *testing.T) {
	_, addr := startLimitsEdge(t, nil)
	body16k := strings.Repeat("b", 16<<10)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"TE and CL", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL on GET", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"two lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"absurd length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
		{"negative length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"body over 64 MiB", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n" + body16k, 413},
		{"unknown coding", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
		{"NUL in a header", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n", 400},
		{"space before colon", "GET /a HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400},
		{"no host", "GET /a HTTP/1.1\r\n\r\n", 400},
		{"no version", "GET /a\r\nHost: x\r\n\r\n", 400},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400},
		{"bad method", "G@T /a HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bare LF in a complete block", "GET /a HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400},
		{"bare LF in a complete POST", "0000 /0 HTTP/1.1\r\nHost:000\nT 000000000000000:00000000\r\n\r\n", 400},
		{"space in a field name", "GET /a HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400},
		{"space in a forwarded field name", "POST /a HTTP/1.1\r\nHost: x\r\nX A: b\r\nContent-Length: 1\r\n\r\nz", 400},
		{"half-closed: chunked body cut short", "P / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 400},
		{"bad chunk", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 0},
	} {
		a := rawExchange(t, addr, tc.req, strings.HasPrefix(tc.name, "half-closed"))
		switch {
		case tc.status == 0 && (a.status < 400 || a.status > 599):
			t.Errorf("%s: %d %q, want an error", tc.name, a.status, a.body)
		case tc.status != 0 && a.status != tc.status:
			t.Errorf("%s: %d %q, want %d", tc.name, a.status, a.body, tc.status)
		case !strings.HasPrefix(a.body, "duet: "):
			t.Errorf("%s: %d %q, want the edge's reason", tc.name, a.status, a.body)
		case a.after > 5*time.Second:
			t.Errorf("%s: answered after %v", tc.name, a.after)
		}
	}
}

// TestChunkedBodyOverLimit: a chunked request body (no declared size) that outgrows 64 MiB is
// cut and answered 413; one within it reaches the origin whole.
func TestChunkedBodyOverLimit(t *testing.T) {
	var got atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		_, _ = io.WriteString(w, "stored")
	}))
	defer o.Close()
	ho, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: o.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := startEdge(t, ho, nil)
	post := func(size int64) (int, string) {
		req, err := http.NewRequest(http.MethodPost, h.url+"/up", io.LimitReader(zeros{}, size))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // chunked
		resp, err := h.client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(1 << 20); code != 200 || body != "stored" || got.Load() != 1<<20 {
		t.Fatalf("1 MiB chunked: %d %q, origin got %d bytes", code, body, got.Load())
	}
	if code, body := post(maxRequestBodyBytes + 1<<20); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("65 MiB chunked: %d %q, want 413", code, body)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestExpectContinueOverLimit: a viewer that announces a body over 64 MiB and waits for 100
// Continue gets 413 at once (on 718ea16: 100 Continue, then the edge read 8 KiB of it before
// anything else); one within the limit gets its 100 and is forwarded.
func TestExpectContinueOverLimit(t *testing.T) {
	_, addr := startLimitsEdge(t, nil)
	a := rawExchange(t, addr, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n")
	if a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 GiB body announced: %d %q, want 413", a.status, a.body)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("5 bytes announced: %v %v, want 100 Continue", resp, err)
	}
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "hello" {
		t.Fatalf("after 100 Continue: %d %q", resp.StatusCode, b)
	}
}

// TestRequestFramingCheckOff: with check_request_framing off, fasthttp gets the bare TCP socket
// (so that it sends a memory hit's header and body with one writev), oversized headers are
// still answered 431 with the reason, and ordinary requests are served.
func TestRequestFramingCheckOff(t *testing.T) {
	var conns sync.Map // connection type names seen by the handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(ts.Close)
	o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.CheckRequestFraming = false
	h := startEdgeConfig(t, o, cfg, func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			conns.Store(fmt.Sprintf("%T", ctx.Conn()), true)
			next(ctx)
		}
	})
	resp, body := h.get("/a")
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	seen := 0
	conns.Range(func(k, _ any) bool {
		seen++
		if k != "*net.TCPConn" {
			t.Errorf("the handler saw a %s, want the bare *net.TCPConn", k)
		}
		return true
	})
	if seen == 0 {
		t.Fatal("the handler saw no connection")
	}
	a := rawExchange(t, strings.TrimPrefix(h.url, "http://"), "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 20<<10)+"\r\n\r\n")
	if a.status != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(a.body, "max_header_bytes") {
		t.Errorf("large header: %d %q, want 431 with the reason", a.status, a.body)
	}
}
