// Package memtier is the edge's memory tier: whole small objects kept in RAM under a hard byte
// budget, with ristretto's TinyLFU admission deciding which objects earn a place.
package memtier

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/duetcdn/duet/edge/object"
)

// entryOverhead is what one entry costs beyond its body and key: the Meta, its header fields and
// ristretto's own bookkeeping. Counting it keeps the budget honest for many small objects
// (ristretto's internal cost is switched off because it would not count our Meta).
const entryOverhead = 512

// Entry is one object held in memory. It is immutable once stored, but for Prepared.
type Entry struct {
	Meta object.Meta
	Body []byte
	// DiskUsed, when set, is the reference bit of the disk entry this copy was read from
	// (disktier.Handle.UsedBit): a memory hit sets it so disk's CLOCK sees the object as hot.
	DiskUsed *atomic.Bool
	// Prepared is the serving layer's cache of what it derives from Meta for every hit (the
	// edge keeps the rendered response header there): made on the first hit, kept as long as
	// the entry. Meta is immutable, so it never goes stale.
	Prepared atomic.Value
}

// Config sizes the tier.
type Config struct {
	// MaxBytes is the hard budget for bodies, keys and per-entry overhead. Required.
	MaxBytes int64
	// MaxObjectBytes is the largest body kept in memory; larger objects live on disk only.
	// Zero means MaxBytes/64.
	MaxObjectBytes int64
	// ExpectedObjectBytes sizes ristretto's frequency counters (10 per expected entry), and so
	// TinyLFU's window: the sketch halves every NumCounters accesses. Zero means 8 KiB, smaller
	// than a typical segment on purpose: a longer window tells a popular object from a one-hit
	// wonder better (Zipf 0.9, memory at 5 % of a catalogue of 64 KiB objects: 64 KiB → 54.2 %,
	// 8 KiB → 58 % hits, LRU 47.7 %), for about 3 bytes of sketch per counter.
	ExpectedObjectBytes int64
	// OnEvict is called when the tier drops an entry to make room. Optional.
	OnEvict func(key string)
}

// Tier is safe for concurrent use.
type Tier struct {
	c         *ristretto.Cache[string, *Entry]
	maxObj    int64
	items     atomic.Int64 // approximate: kept on Set, Del and eviction
	evictions atomic.Int64
}

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("memtier: invalid config")

// New builds a tier.
func New(cfg Config) (*Tier, error) {
	switch {
	case cfg.MaxBytes <= 0:
		return nil, fmt.Errorf("%w: max bytes must be positive", ErrConfig)
	case cfg.MaxObjectBytes < 0 || cfg.MaxObjectBytes > cfg.MaxBytes:
		return nil, fmt.Errorf("%w: max object bytes must be between 0 and max bytes", ErrConfig)
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = cfg.MaxBytes / 64
	}
	if cfg.ExpectedObjectBytes <= 0 {
		cfg.ExpectedObjectBytes = 8 << 10
	}
	counters := max(1024, 10*cfg.MaxBytes/cfg.ExpectedObjectBytes)
	rc := &ristretto.Config[string, *Entry]{
		NumCounters:        counters,
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
	}
	t := &Tier{maxObj: cfg.MaxObjectBytes}
	onEvict := cfg.OnEvict
	rc.OnEvict = func(it *ristretto.Item[*Entry]) {
		t.items.Add(-1)
		t.evictions.Add(1)
		if onEvict != nil && it.Value != nil {
			onEvict(it.Value.Meta.Key)
		}
	}
	c, err := ristretto.NewCache(rc)
	if err != nil {
		return nil, fmt.Errorf("memtier: %w", err)
	}
	t.c = c
	return t, nil
}

// Cost is what an entry counts against the budget.
func Cost(e *Entry) int64 {
	n := int64(len(e.Body)) + int64(len(e.Meta.Key)) + entryOverhead
	for _, f := range e.Meta.Header {
		n += int64(len(f.Name) + len(f.Value))
	}
	return n
}

// Fits tells whether an object of this size may live in memory at all.
func (t *Tier) Fits(size int64) bool { return t != nil && size <= t.maxObj }

// Get returns the entry for key.
func (t *Tier) Get(key string) (*Entry, bool) {
	if t == nil {
		return nil, false
	}
	e, ok := t.c.Get(key)
	// ristretto identifies keys by hash; comparing the stored key rules out a collision.
	if !ok || e.Meta.Key != key {
		return nil, false
	}
	return e, true
}

// Set offers an entry to the tier; admission may refuse it (false). Set waits until ristretto
// has applied the write, so that bytes queued in its buffers never pile up beyond the budget
// under a burst of fills (ristretto's Set is asynchronous).
func (t *Tier) Set(e *Entry) bool {
	if t == nil || int64(len(e.Body)) > t.maxObj {
		return false
	}
	had := t.has(e.Meta.Key)
	t.c.Set(e.Meta.Key, e, Cost(e))
	t.c.Wait()
	has := t.has(e.Meta.Key)
	switch {
	case has && !had:
		t.items.Add(1)
	case had && !has:
		t.items.Add(-1)
	}
	return has
}

// Del removes key.
func (t *Tier) Del(key string) {
	if t == nil {
		return
	}
	if t.has(key) {
		t.items.Add(-1)
	}
	t.c.Del(key)
}

// has tells whether key is held without counting an access: Get feeds TinyLFU's frequency
// sketch, and bookkeeping lookups must not (they made every offered object look requested
// three times, which let one-hit wonders past admission).
func (t *Tier) has(key string) bool {
	_, ok := t.c.GetTTL(key)
	return ok
}

// Len is the approximate number of entries held.
func (t *Tier) Len() int64 {
	if t == nil {
		return 0
	}
	return max(0, t.items.Load())
}

// Evictions counts the entries dropped to make room.
func (t *Tier) Evictions() int64 {
	if t == nil {
		return 0
	}
	return t.evictions.Load()
}

// Bytes is the cost currently held.
func (t *Tier) Bytes() int64 {
	if t == nil {
		return 0
	}
	return t.c.MaxCost() - t.c.RemainingCost()
}

// MaxBytes is the budget.
func (t *Tier) MaxBytes() int64 {
	if t == nil {
		return 0
	}
	return t.c.MaxCost()
}

// Close releases the tier; nil-safe and idempotent.
func (t *Tier) Close() {
	if t != nil {
		t.c.Close()
	}
}
