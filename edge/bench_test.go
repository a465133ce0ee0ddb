package edge

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// handlerCtx builds a reusable request context for in-process handler calls.
func handlerCtx(uri string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.SetMethod(fasthttp.MethodGet)
	return &ctx
}

// serveOnce runs the handler and writes the whole response (body included) to w.
func serveOnce(s *Server, ctx *fasthttp.RequestCtx, w *bufio.Writer) error {
	ctx.Response.Reset()
	s.handle(ctx)
	err := ctx.Response.Write(w)
	_ = w.Flush()
	return err
}

// primedEdge returns an edge whose cache holds uri, and a context to request it.
func primedEdge(tb testing.TB, uri string) (*harness, *fasthttp.RequestCtx, *bufio.Writer) {
	h := startEdge(tb, objectOrigin(tb), func(c *Config) { c.Memory.MaxObjectBytes = 1 << 20 })
	resp, _ := h.get(uri)
	if resp.StatusCode != 200 {
		tb.Fatalf("prime %s: %d", uri, resp.StatusCode)
	}
	h.waitCached(uri)
	ctx := handlerCtx(uri)
	w := bufio.NewWriterSize(io.Discard, 64<<10)
	if err := serveOnce(h.srv, ctx, w); err != nil || ctx.Response.StatusCode() != 200 {
		tb.Fatalf("serve %s: %d %v", uri, ctx.Response.StatusCode(), err)
	}
	if x := string(ctx.Response.Header.Peek("X-Cache")); x != "HIT" {
		tb.Fatalf("%s is not a hit: %s", uri, x)
	}
	return h, ctx, w
}

// BenchmarkHit measures the edge's hit path in process (handler plus response writing), from
// the memory tier and from the disk tier, by object size.
func BenchmarkHit(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{
		{"memory/1KiB", 1 << 10}, {"memory/64KiB", 64 << 10}, {"disk/2MiB", 2 << 20},
	} {
		b.Run(c.name, func(b *testing.B) {
			uri := "/obj/7/" + strconv.Itoa(c.size)
			h, ctx, w := primedEdge(b, uri)
			b.SetBytes(int64(c.size))
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

// BenchmarkHitSigned is BenchmarkHit's memory/1KiB with a token to check, in the path and in
// the query: the difference is the token check's cost per hit.
func BenchmarkHitSigned(b *testing.B) {
	for _, c := range []struct {
		name  string
		query bool
	}{{"memory/1KiB/path-token", false}, {"memory/1KiB/query-token", true}} {
		b.Run(c.name, func(b *testing.B) {
			h, w, uri := primedSignedEdge(b, "/obj/7/1024", c.query)
			ctx := handlerCtx(uri)
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := serveOnce(h.srv, ctx, w); err != nil {
					b.Fatal(err)
				}
			}
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("%d", ctx.Response.StatusCode())
			}
		})
	}
}

// BenchmarkHitParallel is the memory hit path from every core at once.
func BenchmarkHitParallel(b *testing.B) {
	uri := "/obj/8/1024"
	h, _, _ := primedEdge(b, uri)
	b.ReportAllocs()
	b.SetBytes(1024)
	b.RunParallel(func(pb *testing.PB) {
		ctx := handlerCtx(uri)
		w := bufio.NewWriterSize(io.Discard, 64<<10)
		for pb.Next() {
			if err := serveOnce(h.srv, ctx, w); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestMemoryHitAllocations guards the hit path's allocation budget: a memory hit must not
// allocate (a regression shows up here, not as a slower benchmark on a noisy machine).
func TestMemoryHitAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	uri := "/obj/9/1024"
	h, ctx, w := primedEdge(t, uri)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := serveOnce(h.srv, ctx, w); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("memory hit: %.1f allocs", allocs)
	if allocs > 0 {
		t.Fatalf("a memory hit allocates %.1f times per request, want 0", allocs)
	}
}
