package edge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/duetcdn/duet/edge/object"
)

// While the edge cannot prove it has applied every purge (Server.untrusted), an entry may have
// been purged without the edge knowing. Asking the origin about every hit would be safe, but a
// region's loss would then double the survivors' origin load exactly when it matters: each hit
// of a hot set becomes a conditional request. Instead, an entry the origin confirmed (a fill or a
// 304) after trust was lost and less than the staleness bound ago is served as it is: it is as
// safe as a trusted cache.
//
// Why: a purge follows the change it announces (the new version is at the origin when the purge
// is accepted). An entry confirmed at time v reflects every purge accepted before v, so served
// until v+bound it is never older than a purge by more than the bound. A trusted edge gives the
// same: it has heard every region's tick within the bound, so a purge it has not applied is at
// most a bound old. Confirmations from before trust was lost do not count (the edge did not yet
// know it might be missing purges, and a restarted edge has not applied what it missed while it
// was down): the first hit of each entry after the loss asks the origin, the later ones within
// the bound do not, and concurrent requests for one entry share one conditional request (its
// flight; see fill). Soft-purged entries are stale whatever their confirmation time.
//
// An entry's confirmation time is its Meta.RequestTime: when the request of the exchange that
// stored it, or of the last 304 that refreshed it (merge304), was sent; earlier than the origin's
// answer, which errs on the safe side.

// trustState is when the cache last stopped being trusted and how long a confirmation counts.
type trustState struct {
	mu    sync.Mutex   // serialises SetCacheTrusted
	since atomic.Int64 // unix nanoseconds at which the edge last lost trust
	bound atomic.Int64 // the staleness bound as a time.Duration; 0: every hit asks the origin
}

// SetCacheTrusted tells the edge whether its cache reflects every purge. The purge consumer
// drives it. Losing trust starts a new period in which only entries the origin confirms from now
// on are served without asking it (see SetStalenessBound).
func (s *Server) SetCacheTrusted(trusted bool) {
	s.trust.mu.Lock()
	defer s.trust.mu.Unlock()
	if !trusted && !s.untrusted.Load() {
		// Before the flag: a request that sees the edge untrusted sees this time or a later one.
		s.trust.since.Store(s.now().UnixNano())
	}
	s.untrusted.Store(!trusted)
}

// SetStalenessBound is the purge consumer's staleness bound: while the cache is not trusted, an
// entry the origin confirmed since trust was lost, less than d ago, is served without asking the
// origin again; so each object costs the origin at most one conditional request per d. Zero (the
// default) makes every hit ask the origin while the cache is not trusted.
func (s *Server) SetStalenessBound(d time.Duration) { s.trust.bound.Store(int64(max(d, 0))) }

// confirmed reports whether an entry that is usable by its own freshness may be served without
// asking the origin: always while the cache is trusted; otherwise only when the origin
// confirmed it since trust was lost and less than the staleness bound before now.
func (s *Server) confirmed(m *object.Meta, now time.Time) bool {
	if !s.untrusted.Load() {
		return true
	}
	bound := time.Duration(s.trust.bound.Load())
	v := m.RequestTime
	return bound > 0 && !v.IsZero() && v.UnixNano() > s.trust.since.Load() && now.Sub(v) < bound
}
