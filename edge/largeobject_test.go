package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// genObject is a deterministic object of any size that costs next to nothing to produce: 64 KiB
// blocks, each a copy of one of 16 random blocks chosen by its index, with the index in its
// first 8 bytes, so that a block delivered at another offset (slices mixed up) changes the hash.
type genObject struct {
	size int64
	pool [16][]byte
}

const genBlock = 64 << 10

func newGenObject(size int64) *genObject {
	g := &genObject{size: size}
	for i := range g.pool {
		g.pool[i] = randomBytes(genBlock, byte(100+i))
	}
	return g
}

func (g *genObject) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) && off < g.size {
		b, in := off/genBlock, off%genBlock
		src := g.pool[(uint64(b)*0x9E3779B97F4A7C15)>>60]
		m := copy(p[n:], src[in:min(genBlock, in+g.size-off)])
		if in < 8 {
			var stamp [8]byte
			binary.BigEndian.PutUint64(stamp[:], uint64(b))
			copy(p[n:n+m], stamp[in:])
		}
		n += m
		off += int64(m)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// countingWriter counts the body bytes an origin handler writes.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// TestFiveGiBObject is acceptance line 2 of issue 12: a 5 GiB object is delivered whole, sha256
// equal, through an edge whose disk budget is 1 GiB, and a seek to its middle fetches only the
// slice it touches (origin bytes counted). It moves 5 GiB through the origin, the disk tier and
// the viewer connection, which takes well over a minute under -race on a small machine; -short
// skips it.
func TestFiveGiBObject(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 5 GiB")
	}
	const size = 5 << 30
	g := newGenObject(size)
	var originBytes atomic.Int64
	o := httpOriginFor(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"five"`)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "video/mp4")
		http.ServeContent(countingWriter{w, &originBytes}, r, "", time.Time{}, io.NewSectionReader(g, 0, size))
	})
	h := startEdge(t, o, func(c *Config) {
		c.Disk.MaxBytes = 1 << 30
		c.Memory = MemoryConfig{MaxBytes: 16 << 20, MaxObjectBytes: 1 << 20}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, ReadBufferSize: 1 << 20}}

	want := make(chan [32]byte, 1)
	go func() { // the expected hash, computed from the origin's generator alongside the download
		sh := sha256.New()
		_, _ = io.CopyBuffer(sh, io.NewSectionReader(g, 0, size), make([]byte, 1<<20))
		want <- [32]byte(sh.Sum(nil))
	}()
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/five.mp4", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sh := sha256.New()
	n, err := io.CopyBuffer(sh, resp.Body, make([]byte, 1<<20))
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n != size {
		t.Fatalf("GET: %d, %d of %d bytes, %v", resp.StatusCode, n, int64(size), err)
	}
	if got := [32]byte(sh.Sum(nil)); got != <-want {
		t.Fatal("sha256 of the delivered object differs from the origin's")
	}
	t.Logf("5 GiB delivered in %v; origin sent %d bytes", time.Since(start).Round(time.Second), originBytes.Load())
	if d := h.srv.store.disk.Stats(); d.Bytes > d.MaxBytes {
		t.Errorf("disk tier holds %d bytes of %d", d.Bytes, d.MaxBytes)
	}

	// A seek to the middle: only the slice holding the bytes is fetched (if it is not cached).
	h.flightsIdle()
	before := originBytes.Load()
	const at = 2684354560
	resp, body := h.get("/five.mp4", "Range", "bytes=2684354560-2684354659")
	exp := make([]byte, 100)
	_, _ = g.ReadAt(exp, at)
	if resp.StatusCode != 206 || !bytes.Equal(body, exp) {
		t.Fatalf("seek: %d, bytes equal %v", resp.StatusCode, bytes.Equal(body, exp))
	}
	h.flightsIdle()
	slice := int64(h.cfg.Cache.SliceBytes)
	t.Logf("the seek made the origin send %d bytes", originBytes.Load()-before)
	if got := originBytes.Load() - before; got > slice {
		t.Errorf("a 100-byte seek made the origin send %d bytes, more than the one %d-byte slice it touches", got, slice)
	}
}
