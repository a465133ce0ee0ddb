// Package peers is an edge's view of the other edges of its region, for peer fill: which edges
// are alive (from the heartbeats every edge already publishes on NATS), which of them owns a
// cache key (rendezvous hashing of the key over the region's healthy edges, this one included),
// and which failed lately (a breaker, so that a dead owner costs one failed connection, not one
// per miss, until its heartbeats have stopped long enough for it to leave the set).
//
// A Set holds no goroutine and reads no clock: the owner feeds it heartbeats and passes the time,
// so tests drive it by hand.
package peers

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/rendezvous"
)

// ErrConfig is wrapped by New's errors.
var ErrConfig = errors.New("peers: invalid config")

// Config says who this edge is and how fast a peer is given up on.
type Config struct {
	// Self and Region name this edge and its region: heartbeats from other regions are ignored,
	// and this edge always takes part in the hashing (it owns its share of the keys).
	Self, Region string
	// HeartbeatInterval is how often edges announce themselves; MissedHeartbeats intervals
	// without one make a peer leave the set (as steering judges edges). Defaults 1s and 3.
	HeartbeatInterval time.Duration
	MissedHeartbeats  int
	// Cooldown is how long a peer that failed a request (no connection, no answer in time) is
	// left out of the hashing. Default 3s (three heartbeats: by then a dead peer has left).
	Cooldown time.Duration
}

// Peer is another edge of the region.
type Peer struct {
	// Name is its edge name; URL where it serves viewers (its heartbeat's URL), which is where
	// peer requests go.
	Name, URL string
}

// member is one edge the set knows.
type member struct {
	Peer
	hash     uint64
	lastSeen time.Time
	serving  bool
	// brokenUntil: the peer failed a request; it is left out of the hashing until then.
	brokenUntil time.Time
}

// Set is the region's edges as this edge sees them. Safe for concurrent use.
type Set struct {
	cfg      Config
	selfHash uint64

	mu      sync.RWMutex
	members map[string]*member // by name, this edge excluded; guarded by mu
}

// New returns a set that knows no peer yet.
func New(cfg Config) (*Set, error) {
	if err := errors.Join(bus.ValidName(cfg.Self), bus.ValidName(cfg.Region)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if cfg.HeartbeatInterval < 0 || cfg.MissedHeartbeats < 0 || cfg.Cooldown < 0 {
		return nil, fmt.Errorf("%w: heartbeat interval, missed heartbeats and cooldown must not be negative", ErrConfig)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.MissedHeartbeats == 0 {
		cfg.MissedHeartbeats = 3
	}
	if cfg.Cooldown == 0 {
		cfg.Cooldown = 3 * time.Second
	}
	return &Set{cfg: cfg, selfHash: rendezvous.Hash(cfg.Self), members: map[string]*member{}}, nil
}

// Subject is the NATS subject of the region's heartbeats, which the set is fed from.
func (s *Set) Subject() string { return bus.HealthSubject(s.cfg.Region, "*") }

// HandleHeartbeat reads one heartbeat message (JSON bus.Heartbeat) and observes it. A message
// that does not parse is ignored, with the error returned for the caller to log.
func (s *Set) HandleHeartbeat(data []byte, now time.Time) error {
	var hb bus.Heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		return fmt.Errorf("read heartbeat: %w", err)
	}
	s.Observe(hb, now)
	return nil
}

// Observe records a heartbeat: a peer of the region that serves takes part in the hashing from
// now on; one that drains leaves it at once. Heartbeats of other regions, of this edge, and
// without a URL are ignored.
func (s *Set) Observe(hb bus.Heartbeat, now time.Time) {
	if hb.Region != s.cfg.Region || hb.Edge == s.cfg.Self || hb.Edge == "" || hb.URL == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[hb.Edge]
	if !ok {
		m = &member{Peer: Peer{Name: hb.Edge}, hash: rendezvous.Hash(hb.Edge)}
		s.members[hb.Edge] = m
	}
	m.URL = hb.URL
	m.lastSeen = now
	m.serving = hb.State == bus.StateServing
	// Forget edges long gone, so that the set does not grow with every edge that ever ran.
	for name, o := range s.members {
		if now.Sub(o.lastSeen) > 100*s.cfg.HeartbeatInterval {
			delete(s.members, name)
		}
	}
}

// Failed leaves a peer out of the hashing for the cooldown: it refused a connection or did
// not answer in time. Its keys go to the next edge in rendezvous order meanwhile.
func (s *Set) Failed(name string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.members[name]; ok {
		m.brokenUntil = now.Add(s.cfg.Cooldown)
	}
}

// alive reports whether m takes part in the hashing at now. s.mu held.
func (s *Set) alive(m *member, now time.Time) bool {
	return m.serving && now.Sub(m.lastSeen) <= time.Duration(s.cfg.MissedHeartbeats)*s.cfg.HeartbeatInterval &&
		now.After(m.brokenUntil)
}

// Owner returns the peer that owns key: the highest rendezvous score among the alive peers and
// this edge. ok is false when this edge owns it (or knows no alive peer): fetch from the origin.
func (s *Set) Owner(key string, now time.Time) (Peer, bool) {
	kh := rendezvous.Hash(key)
	best := rendezvous.Score(kh, s.selfHash, 0, false)
	var owner *member
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.members {
		if !s.alive(m, now) {
			continue
		}
		sc := rendezvous.Score(kh, m.hash, 0, false)
		if sc > best || sc == best && owner != nil && m.Name < owner.Name {
			best, owner = sc, m
		}
	}
	if owner == nil {
		return Peer{}, false
	}
	return owner.Peer, true
}

// Alive lists the peers that take part in the hashing at now, for status and tests.
func (s *Set) Alive(now time.Time) []Peer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Peer
	for _, m := range s.members {
		if s.alive(m, now) {
			out = append(out, m.Peer)
		}
	}
	return out
}
