package edge

import (
	"bufio"
	"io"
	"path/filepath"
	"testing"
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
// lines to a file): the log must cost the hit path no allocation and little time.
func BenchmarkHitLogging(b *testing.B) {
	const uri = "/obj/10/1024"
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
			b.SetBytes(1024)
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
