package edge

import (
	"bufio"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
)

// peerFillOn turns peer fill on for an edge of BenchmarkHitPeerFill, with three peers known.
func peerFillOn(c *Config) {
	c.Name, c.Region = "e1", "r1"
	c.PeerFill = PeerFillConfig{Enabled: true, Secret: testPeerSecret, Timeout: time.Second, Cooldown: 3 * time.Second}
}

// BenchmarkHitPeerFill is BenchmarkHit's memory and disk hits with peer fill off and on (three
// alive peers): a hit never asks a peer, so peer fill must cost it nothing but the look for the
// peer header.
func BenchmarkHitPeerFill(b *testing.B) {
	for _, size := range []int{1 << 10, 2 << 20} {
		for _, on := range []bool{false, true} {
			name := "off"
			if on {
				name = "on"
			}
			b.Run(strconv.Itoa(size>>10)+"KiB/"+name, func(b *testing.B) {
				uri := "/obj/11/" + strconv.Itoa(size)
				mutate := func(c *Config) { c.Memory.MaxObjectBytes = 1 << 20 }
				if on {
					mutate = func(c *Config) { c.Memory.MaxObjectBytes = 1 << 20; peerFillOn(c) }
				}
				h := startEdge(b, objectOrigin(b), mutate)
				if on {
					for _, p := range []string{"e2", "e3", "e4"} {
						// Unreachable peers: a miss would fail over to the origin; a hit never asks.
						h.srv.Peers().Observe(bus.Heartbeat{Edge: p, Region: "r1", URL: "http://127.0.0.1:1", State: bus.StateServing}, time.Now())
					}
				}
				resp, _ := h.get(uri)
				if resp.StatusCode != 200 {
					b.Fatalf("prime %s: %d", uri, resp.StatusCode)
				}
				h.waitCached(uri)
				ctx := handlerCtx(uri)
				w := bufio.NewWriterSize(io.Discard, 64<<10)
				if err := serveOnce(h.srv, ctx, w); err != nil || string(ctx.Response.Header.Peek("X-Cache")) != "HIT" {
					b.Fatalf("serve %s: %s %v", uri, ctx.Response.Header.Peek("X-Cache"), err)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if err := serveOnce(h.srv, ctx, w); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
