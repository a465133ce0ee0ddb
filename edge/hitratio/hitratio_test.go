package hitratio

import (
	"testing"
)

// catalogue is the brief's workload: Zipf s=0.9 over 100,000 objects, memory at 5 % of the
// catalogue, disk at 20 %.
func catalogue(dir string) Config {
	return Config{
		Objects: 100_000, S: 0.9, Seed: 1,
		Requests: 1_000_000, Warmup: 200_000,
		ObjectBytes:    256 << 10, // a 2 s segment at ~1 Mbit/s
		MemoryFraction: 0.05, DiskFraction: 0.20,
		DiskDir: dir,
	}
}

// BenchmarkHitRatio prints the tiers' hit ratios next to LRU's and the static optimum (in
// percent) on the catalogue workload. One iteration is the whole trace (about 30 s: the disk
// tier writes a real file per miss).
func BenchmarkHitRatio(b *testing.B) {
	for b.Loop() {
		res, err := Run(b.Context(), catalogue(b.TempDir()))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(100*res.Memory, "mem_hit_%")
		b.ReportMetric(100*res.LRUMemory, "lru_mem_hit_%")
		b.ReportMetric(100*res.IdealMemory, "ideal_mem_hit_%")
		b.ReportMetric(100*res.MemoryDisk, "mem+disk_hit_%")
		b.ReportMetric(100*res.LRUDisk, "lru_disk_hit_%")
		b.ReportMetric(100*res.IdealDisk, "ideal_disk_hit_%")
		b.ReportMetric(100*float64(res.Admitted)/float64(max(1, res.Offered)), "mem_admit_%")
	}
}

// TestZipf checks the trace generator against its own distribution.
func TestZipf(t *testing.T) {
	t.Parallel()
	z, err := NewZipf(1000, 0.9, 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200_000
	top := 0
	for range n {
		if z.Next() < 10 {
			top++
		}
	}
	if got, want := float64(top)/n, z.TopShare(10); got < want-0.01 || got > want+0.01 {
		t.Errorf("top-10 share %.3f, want %.3f", got, want)
	}
	if _, err := NewZipf(10, 0, 1); err == nil {
		t.Error("s = 0 accepted")
	}
}

func TestLRU(t *testing.T) {
	t.Parallel()
	c := NewLRU(3)
	for _, k := range []string{"a", "b", "c"} {
		c.Add(k, 1)
	}
	c.Get("a")     // a is now the most recent
	c.Add("d", 1)  // evicts b
	c.Add("e", 10) // larger than the cache: not stored
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true, "e": false} {
		if c.Get(k) != want {
			t.Errorf("Get(%s) = %v, want %v", k, !want, want)
		}
	}
}
