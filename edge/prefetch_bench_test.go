package edge

import (
	"bufio"
	"io"
	"testing"
)

// BenchmarkHitPrefetch is a memory hit on a segment of an indexed HLS playlist, prefetch off and
// on: with it on, each segment request looks its track up and checks that the next segments are
// cached (they are, here: the steady state of a viewer behind the prefetch).
func BenchmarkHitPrefetch(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			mo := newMediaOrigin(b, 16<<10, 0)
			h := startEdge(b, mo.httpOrigin(b), func(c *Config) { c.Prefetch.Enabled = on })
			segs := hlsSegments(vodSegments)
			if resp, _ := h.get("/vod/h/index.m3u8"); resp.StatusCode != 200 {
				b.Fatalf("playlist: %d", resp.StatusCode)
			}
			for _, s := range segs {
				h.get(s)
			}
			for _, s := range segs {
				h.waitCached(s)
			}
			uri := segs[5]
			ctx := handlerCtx(uri)
			w := bufio.NewWriterSize(io.Discard, 64<<10)
			for range 3 { // the disk hit copied up to memory
				if err := serveOnce(h.srv, ctx, w); err != nil || string(ctx.Response.Header.Peek("X-Cache")) != "HIT" {
					b.Fatalf("serve %s: %s %v", uri, ctx.Response.Header.Peek("X-Cache"), err)
				}
			}
			if on {
				h.srv.pf.mu.Lock()
				_, indexed := h.srv.pf.segs[uri]
				h.srv.pf.mu.Unlock()
				if !indexed {
					b.Fatal("the segment is not indexed: the benchmark would not measure prefetch's look-up")
				}
			}
			b.SetBytes(16 << 10)
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
