package edge

// MemoryLimit is the Go memory limit (runtime/debug.SetMemoryLimit, or GOMEMLIMIT) that keeps
// the edge process within 1.1 × memory.max_bytes + 64 MiB of RSS: the memory tier's budget plus
// a tenth for what it does not count (ristretto's sketch, the disk index, connection buffers),
// plus 32 MiB, leaving the rest of the 64 MiB to what the Go runtime does not manage (the
// binary's text and data). Without a limit the collector lets the heap grow to twice the live
// bytes (GOGC=100): a full memory tier under churn then doubles the RSS (docs/performance.md).
// The process owner sets it (one edge per process): `duet edge` when GOMEMLIMIT is unset.
func (c *Config) MemoryLimit() int64 {
	return int64(c.Memory.MaxBytes)*11/10 + 32<<20
}
