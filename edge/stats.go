package edge

import "github.com/duetcdn/duet/internal/cmcd"

// Stats is a snapshot of the edge's counters, for its heartbeat. Counters are cumulative since
// start; the heartbeat turns them into rates.
type Stats struct {
	Name, Region string
	Serving      bool // ready and not draining
	Trusted      bool // the cache reflects every purge
	Connections  int64
	Requests     uint64 // viewer requests answered
	Hits         uint64 // of which from cache (fresh, stale or revalidated)
	EgressBytes  int64  // body bytes sent
	MemoryBytes  int64
	DiskBytes    int64
	// OriginFetches and OriginFailures (connection errors, timeouts, 5xx) count origin requests.
	OriginFetches, OriginFailures uint64
	// QoE is what the players' CMCD reports say of the last 30 s; nil when none reported.
	QoE *cmcd.Summary
}

// Stats returns the current snapshot.
func (s *Server) Stats() Stats {
	return Stats{
		Name: s.cfg.Name, Region: s.cfg.Region,
		Serving:     s.Ready(),
		Trusted:     s.CacheTrusted(),
		Connections: int64(s.viewer.GetOpenConnectionsCount()),
		Requests:    s.m.nRequests.Load(),
		Hits:        s.m.nHits.Load(),
		EgressBytes: s.m.nEgress.Load(),
		MemoryBytes: s.store.mem.Bytes(),
		DiskBytes:   s.store.disk.Bytes(),

		OriginFetches:  s.m.nOriginFetches.Load(),
		OriginFailures: s.m.nOriginFailures.Load(),
		QoE:            s.qoe.Summary(s.now()),
	}
}
