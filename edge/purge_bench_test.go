package edge

import (
	"strconv"
	"testing"
	"time"

	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/internal/purgereq"
)

// fillTagged commits n small entries carrying tag straight into an edge's tiers.
func fillTagged(tb testing.TB, s *Server, n int, tag string) {
	tb.Helper()
	body := []byte("0123456789abcdef")
	for i := range n {
		key := "/tagged/" + strconv.Itoa(i) + ".ts"
		w, err := s.store.disk.Create(key)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			tb.Fatal(err)
		}
		m := object.Meta{Key: key, Status: 200, Tags: []string{tag}, FreshFor: time.Hour, ResponseTime: time.Now()}
		if err := w.Commit(m); err != nil {
			tb.Fatal(err)
		}
		w.Abort()
		got, _ := s.store.disk.Get(key)
		s.store.committed(got, body)
	}
}

// BenchmarkTagPurge100k: one tag purge covering 100,000 cached objects on one edge.
func BenchmarkTagPurge100k(b *testing.B) {
	const n = 100_000
	h := startEdge(b, objectOrigin(b), func(c *Config) { c.Disk.MaxBytes = 1 << 30; c.Memory.MaxBytes = 256 << 20 })
	for b.Loop() {
		b.StopTimer()
		fillTagged(b, h.srv, n, "show")
		b.StartTimer()
		res, err := h.srv.Purge(b.Context(), purgereq.Target{Tags: []string{"show"}})
		if err != nil || res.Entries != n {
			b.Fatalf("purged %d, %v", res.Entries, err)
		}
	}
	b.ReportMetric(float64(n), "objects/op")
}
