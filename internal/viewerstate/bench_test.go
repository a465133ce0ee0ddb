package viewerstate_test

import (
	"fmt"
	"testing"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/viewerstate"
)

// BenchmarkStore measures reads and writes per second against one region's store (real
// embedded NATS on loopback, 1,000 viewers, run in parallel).
func BenchmarkStore(b *testing.B) {
	srv := startServer(b, natsserver.Config{Region: "A"})
	r := openStore(b, "A", srv, []string{"A", "B"}, bus.ConnConfig{})
	const viewers = 1000
	ids := make([]string, viewers)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench%027d", i)
		if _, err := r.store.PutTitle(b.Context(), ids[i], "film", viewerstate.TitleUpdate{Position: ptr(1.0)}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("write", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if _, err := r.store.PutTitle(b.Context(), ids[i%viewers], "film", viewerstate.TitleUpdate{Position: ptr(float64(i))}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	})
	b.Run("read", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if _, err := r.store.Title(b.Context(), ids[i%viewers], "film"); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
	})
}
