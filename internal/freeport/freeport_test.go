package freeport

import (
	"net"
	"testing"
)

// TestListen: the listener is usable, on the asked host, below the ephemeral range, and two
// listeners held at once get different ports.
func TestListen(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		l, err := Listen("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		a := l.Addr().(*net.TCPAddr)
		if !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("listening on %v, want 127.0.0.1", a)
		}
		if a.Port < low || a.Port >= low+count {
			t.Fatalf("port %d outside %d-%d", a.Port, low, low+count-1)
		}
		if seen[a.Port] {
			t.Fatalf("port %d handed out twice while held", a.Port)
		}
		seen[a.Port] = true
		c, err := net.Dial("tcp", a.String())
		if err != nil {
			t.Fatalf("dial %v: %v", a, err)
		}
		_ = c.Close()
	}
}
