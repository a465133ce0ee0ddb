package viewerstate

import (
	"cmp"
	"sync"
	"time"
)

// Stamp is a hybrid logical clock timestamp: the writer's wall clock in milliseconds, a counter
// that orders writes within one millisecond (or while the wall clock lags behind a stamp already
// seen), and the region that wrote. Stamps order every write totally: by Wall, then Logical,
// then Region (the deterministic tie-break between regions).
type Stamp struct {
	Wall    int64  `json:"w"`
	Logical uint32 `json:"l,omitempty"`
	Region  string `json:"r"`
}

// Compare orders stamps: -1 when s is older than o, 0 when equal, +1 when newer.
func (s Stamp) Compare(o Stamp) int {
	if c := cmp.Compare(s.Wall, o.Wall); c != 0 {
		return c
	}
	if c := cmp.Compare(s.Logical, o.Logical); c != 0 {
		return c
	}
	return cmp.Compare(s.Region, o.Region)
}

// IsZero reports whether s is the zero stamp (older than any write).
func (s Stamp) IsZero() bool { return s == Stamp{} }

// Time is the stamp's wall clock part.
func (s Stamp) Time() time.Time { return time.UnixMilli(s.Wall).UTC() }

// maxDrift bounds how far ahead of the local clock an observed stamp may move the clock: a
// region with a clock far in the future must not drag every other region's stamps along.
const maxDrift = time.Minute

// Clock is one region's hybrid logical clock. Now never returns a stamp older than one it
// returned or observed (up to maxDrift ahead of the wall clock), so a write made after reading a
// state is newer than everything in that state, whatever the regions' wall clocks say.
type Clock struct {
	region string
	now    func() time.Time

	mu      sync.Mutex // guards wall and logical
	wall    int64
	logical uint32
}

// NewClock returns region's clock; now nil means time.Now.
func NewClock(region string, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{region: region, now: now}
}

// Now returns a new stamp, newer than every stamp returned or observed before.
func (c *Clock) Now() Stamp {
	pt := c.now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.wall {
		c.wall, c.logical = pt, 0
	} else {
		c.logical++
	}
	return Stamp{Wall: c.wall, Logical: c.logical, Region: c.region}
}

// Observe takes in a stamp read from the state, so that the next Now is newer. A stamp more than
// maxDrift ahead of the local wall clock moves the clock only that far.
func (c *Clock) Observe(s Stamp) {
	limit := c.now().Add(maxDrift).UnixMilli()
	wall, logical := s.Wall, s.Logical
	if wall > limit {
		wall, logical = limit, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall > c.wall || wall == c.wall && logical > c.logical {
		c.wall, c.logical = wall, logical
	}
}
