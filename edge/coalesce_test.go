package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tcpPair returns a viewerConn over the server side of a loopback TCP connection and the
// client side.
func tcpPair(t *testing.T) (*viewerConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return newViewerConn(server, 16<<10, make(chan struct{}, 1)), client
}

func readN(t *testing.T, c net.Conn, n int, within time.Duration) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes within %v: %v", n, within, err)
	}
	return b
}

// TestCoalescedWrites: bytes written through a viewerConn arrive complete and in order, whether
// a held buffer-sized write is followed by another write, by nothing (it goes out on its own
// within the hold delay: a response must never wait for the next one), by a sendfile from a
// file, or by the connection's close.
func TestCoalescedWrites(t *testing.T) {
	block := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

	t.Run("followed by a write", func(t *testing.T) {
		vc, client := tcpPair(t)
		a, b := block('a', viewerWriteBuffer), block('b', 12<<10)
		if n, err := vc.Write(a); n != len(a) || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
		if n, err := vc.Write(b); n != len(b) || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
		if got := readN(t, client, len(a)+len(b), 5*time.Second); !bytes.Equal(got, append(a, b...)) {
			t.Fatal("bytes out of order or changed")
		}
	})
	t.Run("alone", func(t *testing.T) {
		vc, client := tcpPair(t)
		a := block('a', viewerWriteBuffer)
		if _, err := vc.Write(a); err != nil {
			t.Fatal(err)
		}
		// The hold delay is a millisecond: a second is generous even on a loaded machine.
		if got := readN(t, client, len(a), time.Second); !bytes.Equal(got, a) {
			t.Fatal("held write changed")
		}
	})
	t.Run("followed by a file", func(t *testing.T) {
		vc, client := tcpPair(t)
		a, f := block('a', viewerWriteBuffer), block('f', 64<<10)
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, f, 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		if _, err := vc.Write(a); err != nil {
			t.Fatal(err)
		}
		if n, err := vc.ReadFrom(file); n != int64(len(f)) || err != nil {
			t.Fatalf("ReadFrom: %d %v", n, err)
		}
		if got := readN(t, client, len(a)+len(f), 5*time.Second); !bytes.Equal(got, append(a, f...)) {
			t.Fatal("bytes out of order or changed")
		}
	})
	t.Run("followed by close", func(t *testing.T) {
		vc, client := tcpPair(t)
		a := block('a', viewerWriteBuffer)
		if _, err := vc.Write(a); err != nil {
			t.Fatal(err)
		}
		if err := vc.Close(); err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(client)
		if err != nil || !bytes.Equal(got, a) {
			t.Fatalf("after close: %d bytes, %v; want the held %d", len(got), err, len(a))
		}
	})
}

// TestLargeMemoryHitsPipelined: memory hits larger than the write buffer go out from the entry
// itself (hitBody: header held, body written through), and pipelined requests mixing them with
// ranges, small hits and HEADs each get their own complete, correct answer, in order.
func TestLargeMemoryHitsPipelined(t *testing.T) {
	h := startEdge(t, objectOrigin(t), func(c *Config) { c.Memory.MaxObjectBytes = 1 << 20 })
	big, small := "/obj/21/65536", "/obj/22/1000"
	for _, p := range []string{big, small} {
		if resp, _ := h.get(p); resp.StatusCode != 200 {
			t.Fatalf("prime %s: %d", p, resp.StatusCode)
		}
		h.waitCached(p)
	}
	bigBody, smallBody := randomBytes(65536, 21), randomBytes(1000, 22)
	type want struct {
		method, path, rng string
		status            int
		body              []byte
	}
	wants := []want{
		{"GET", big, "", 200, bigBody},
		{"GET", small, "", 200, smallBody},
		{"GET", big, "bytes=100-60000", 206, bigBody[100:60001]},
		{"HEAD", big, "", 200, nil},
		{"GET", big, "", 200, bigBody},
		{"GET", big, "bytes=0-4095", 206, bigBody[:4096]},
		{"GET", big, "", 200, bigBody},
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reqs bytes.Buffer
	for _, w := range wants {
		fmt.Fprintf(&reqs, "%s %s HTTP/1.1\r\nHost: edge\r\n", w.method, w.path)
		if w.rng != "" {
			fmt.Fprintf(&reqs, "Range: %s\r\n", w.rng)
		}
		reqs.WriteString("\r\n")
	}
	if _, err := c.Write(reqs.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, w := range wants {
		resp, err := http.ReadResponse(br, &http.Request{Method: w.method})
		if err != nil {
			t.Fatalf("answer %d (%s %s): %v", i, w.method, w.rng, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d body: %v", i, err)
		}
		if resp.StatusCode != w.status || !bytes.Equal(body, w.body) || resp.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("answer %d (%s %s %s): status %d, %d body bytes (want %d %d), X-Cache %q",
				i, w.method, w.path, w.rng, resp.StatusCode, len(body), w.status, len(w.body), resp.Header.Get("X-Cache"))
		}
		if w.method == "HEAD" && resp.ContentLength != int64(len(bigBody)) {
			t.Fatalf("HEAD Content-Length %d", resp.ContentLength)
		}
	}
}

// TestLargeMemoryHitsArmNoTimer: a memory hit over the write buffer holds its header for the
// body that follows in the same call, so it arms no hold timer (one per connection: thousands
// of connections make a timer heap every hit would walk), and a header whose body never comes
// still goes out when the connection turns idle.
func TestLargeMemoryHitsArmNoTimer(t *testing.T) {
	h := startEdge(t, objectOrigin(t), func(c *Config) { c.Memory.MaxObjectBytes = 1 << 20 })
	big := "/obj/23/65536"
	if resp, _ := h.get(big); resp.StatusCode != 200 {
		t.Fatalf("prime: %d", resp.StatusCode)
	}
	h.waitCached(big)
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	want := randomBytes(65536, 23)
	for i := range 3 {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: edge\r\n\r\n", big)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("hit %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(body, want) || resp.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("hit %d: %d bytes, %v, X-Cache %q", i, len(body), err, resp.Header.Get("X-Cache"))
		}
	}
	var hits *viewerConn // this connection's server side (the priming miss came on another)
	h.srv.watch.conns.Range(func(k, _ any) bool {
		if vc, ok := k.(*viewerConn); ok && vc.RemoteAddr().String() == c.LocalAddr().String() {
			hits = vc
		}
		return true
	})
	if hits == nil {
		t.Fatal("the viewer connection is not watched")
	}
	hits.wmu.Lock()
	armed := hits.holdTimer != nil
	hits.wmu.Unlock()
	if armed {
		t.Fatal("a large memory hit armed the connection's hold timer")
	}

	// A header held for a body that never comes goes out at idle, not with the next response.
	vc, client := tcpPair(t)
	vc.holdNext = true
	header := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if n, err := vc.Write(header); n != len(header) || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	vc.idle()
	if got := readN(t, client, len(header), 5*time.Second); !bytes.Equal(got, header) {
		t.Fatal("held header changed")
	}
	if vc.holdNext {
		t.Fatal("idle left holdNext set: the next response's header would be held")
	}
}
