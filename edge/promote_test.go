package edge

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestDiskHitBurstReadsOnce: viewers arriving together on an object that is only on disk (a
// fill has just committed it, or memory dropped it) must not each read it into memory. One
// viewer copies it up; the others are served from the file. Before, the second wave of a
// flash crowd on a fresh 2 MiB segment allocated 2 MiB per viewer (2 GB for a thousand) and
// waited on the collector for a second.
func TestDiskHitBurstReadsOnce(t *testing.T) {
	const size = 2 << 20
	uri := fmt.Sprintf("/obj/5/%d", size)
	want := randomBytes(size, 5)
	h := startEdge(t, objectOrigin(t), func(c *Config) { c.Memory.MaxObjectBytes = 4 << 20 })
	if resp, got := h.get(uri); resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("fill: %d, %d bytes", resp.StatusCode, len(got))
	}
	h.waitCached(uri)
	if _, ok := h.srv.store.mem.Get(uri); ok {
		t.Fatal("a fill put its body in memory: this test needs the object on disk only")
	}

	const viewers = 200
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: viewers, DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)
	// Open the viewers' connections first, so that they ask together.
	var wg sync.WaitGroup
	for range viewers {
		wg.Go(func() {
			if resp, err := client.Get(h.url + "/obj/6/16"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()

	bufs := make([][]byte, viewers)
	for i := range bufs {
		bufs[i] = make([]byte, 64<<10)
	}
	copies := h.srv.store.copies.Load()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	gate := make(chan struct{})
	errs := make(chan error, viewers)
	for i := range viewers {
		wg.Go(func() {
			buf := bufs[i]
			<-gate
			resp, err := client.Get(h.url + uri)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var sum int
			for off := 0; ; {
				n, err := resp.Body.Read(buf)
				if n > 0 && !bytes.Equal(buf[:n], want[off:off+n]) {
					errs <- fmt.Errorf("wrong bytes at %d", off)
					return
				}
				off += n
				sum = off
				if err == io.EOF {
					break
				}
				if err != nil {
					errs <- err
					return
				}
			}
			if resp.StatusCode != http.StatusOK || sum != size {
				errs <- fmt.Errorf("%d, %d of %d bytes", resp.StatusCode, sum, size)
			}
		})
	}
	close(gate)
	wg.Wait()
	runtime.ReadMemStats(&after)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One copy into memory, and room for the clients' and the server's per-request garbage.
	const budget = size + 4<<20
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > budget {
		t.Fatalf("%d viewers together on a disk-only %d MiB object allocated %d MiB, want at most %d MiB: "+
			"each read its own copy into memory", viewers, size>>20, alloc>>20, budget>>20)
	}
	if n := h.srv.store.copies.Load() - copies; n != 1 {
		t.Fatalf("%d viewers together on a disk-only object read it into memory %d times, want once", viewers, n)
	}
	if _, ok := h.srv.store.mem.Get(uri); !ok {
		t.Fatal("the burst left the object out of memory")
	}
}

// TestCopyOvertakenByPurgeIsDropped: a purge (or a soft purge, which updates the metadata) that
// lands while a disk hit is being copied into memory wins: the copy does not stay in memory,
// and the next viewer gets what the purge left, not the old object.
func TestCopyOvertakenByPurgeIsDropped(t *testing.T) {
	for _, c := range []struct {
		name  string
		purge func(st *store, key string) error
		want  string // the next viewer's Cache-Status forward reason
	}{
		{"purge", func(st *store, key string) error { st.remove(key); return nil }, "fwd=uri-miss"},
		{"soft purge", func(st *store, key string) error {
			m, _ := st.disk.Get(key)
			m.FreshFor = 0 // stale from now on: the next viewer must revalidate
			m.StaleWhileRevalidate, m.StaleIfError = 0, 0
			return st.updateMeta(m)
		}, "fwd=stale"},
	} {
		t.Run(c.name, func(t *testing.T) {
			const size = 4096
			uri := fmt.Sprintf("/obj/7/%d", size)
			h := startEdge(t, objectOrigin(t), nil)
			h.get(uri)
			h.waitCached(uri)
			st := h.srv.store
			dh, err := st.disk.Open(uri) // a viewer's disk hit, about to be copied into memory
			if err != nil {
				t.Fatal(err)
			}
			if err := c.purge(st, uri); err != nil {
				t.Fatal(err)
			}
			e, ok := st.copyUp(uri, dh)
			if !ok || !bytes.Equal(e.body, randomBytes(size, 7)) {
				t.Fatal("the viewer who opened the file before the purge did not get its bytes")
			}
			if m, ok := st.mem.Get(uri); ok {
				t.Fatalf("the copy overtaken by the %s stayed in memory (fresh for %v)", c.name, m.Meta.FreshFor)
			}
			resp, _ := h.get(uri)
			if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, c.want) {
				t.Fatalf("after the %s: Cache-Status %q (X-Cache %s), want %s", c.name, cs, resp.Header.Get("X-Cache"), c.want)
			}
		})
	}
}
