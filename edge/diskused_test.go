package edge

import "testing"

// TestMemoryHitMarksDiskEntryUsed: a memory hit marks the disk entry its copy was read from as
// used (the bit disk's CLOCK reads), without looking the key up in the disk tier again.
func TestMemoryHitMarksDiskEntryUsed(t *testing.T) {
	const uri = "/obj/1/1024"
	h := startEdge(t, objectOrigin(t), nil)
	resp, _ := h.get(uri) // fill: to disk
	if resp.StatusCode != 200 {
		t.Fatalf("fill: %d", resp.StatusCode)
	}
	h.waitCached(uri)
	h.get(uri) // disk hit: the copy in memory keeps the disk entry's bit
	e, ok := h.srv.store.mem.Get(uri)
	if !ok || e.DiskUsed == nil {
		t.Fatalf("no memory copy holding its disk entry's bit (in memory: %v)", ok)
	}
	e.DiskUsed.Store(false) // as disk's CLOCK hand does when it passes
	resp, _ = h.get(uri)
	expect(t, resp, 200, "HIT")
	if !e.DiskUsed.Load() {
		t.Fatal("a memory hit did not mark its disk entry used: disk's CLOCK would evict the hottest object")
	}
}
