package geoip

import "sync/atomic"

// cacheSlots is the size of the offset cache: a power of two, large enough
// that the few hundred records of a Country database rarely collide.
const cacheSlots = 4096

// offsetCache maps a record's data-section offset to its decoded Location. It
// is direct-mapped and lock-free: a slot holds one immutable entry, replaced
// whole on a miss. Different addresses in one network share a record, so a
// Country database's lookups are nearly all hits; a City database's are hits
// for the busy networks.
type offsetCache struct {
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	off uintptr
	loc Location
	ok  bool
}

func slot(off uintptr) uintptr {
	return uintptr((uint64(off) * 0x9E3779B97F4A7C15) >> (64 - 12))
}

func (c *offsetCache) get(off uintptr) *cacheEntry {
	if e := c.slots[slot(off)].Load(); e != nil && e.off == off {
		return e
	}
	return nil
}

func (c *offsetCache) put(e *cacheEntry) {
	c.slots[slot(e.off)].Store(e)
}
