// Package disktier is the edge's disk tier: a size-bounded directory of cached objects, one
// file per object, with an in-memory index rebuilt at start-up from the files' metadata.
//
// # Layout
//
// Dir holds a marker file (DISKTIER: format version and the per-directory hash seeds), a tmp/
// directory for fills in progress, and 256 shard directories 00…ff. An entry lives in
// Dir/ab/ab…, named by a 128-bit hash of its key (two seeded xxhash64; the seeds are random per
// directory so that clients cannot aim keys at one name). See format.go for the file format.
//
// # Budget
//
// MaxBytes bounds the sum of the sizes of the files in Dir: committed entries, fills in
// progress, entries deleted by DeleteMany whose files the background unlinker has not unlinked
// yet, and entries that were removed while a Handle (or a committed Writer) still holds their
// file open (such an unlinked file still takes disk space until its last descriptor is closed,
// so its bytes stay counted until then). The budget is enforced on the write path: a fill
// reserves budget before it writes (in steps of up to ReserveStep bytes), unlinking files still
// queued for the unlinker and then evicting older entries to make room, so the bound holds at
// every instant and under any concurrency. Bytes() reports the counted total; it is never above
// MaxBytes. Directories, the marker file, the deletion journal (32 bytes per key deleted by
// DeleteMany, emptied whenever the unlinker is idle) and file-system block rounding are not
// counted.
//
// # Eviction
//
// CLOCK (second chance): entries sit on a ring in insertion order (at start-up: by file
// modification time, oldest first); Get and Open set the entry's reference bit; the evictor's
// hand clears set bits and evicts the first entry whose bit is clear. Entries in use (open
// Handles, committed Writers still open) are skipped. This approximates LRU while letting Get
// run under a read lock.
//
// # Durability
//
// Commit does not fsync. After a crash, a file whose trailer or metadata did not reach the disk
// fails its trailer checksum or length check at start-up and is dropped; a file whose metadata
// survived but whose body did not fails the body checksum on its first Open and is dropped
// then. A cache may lose entries in a crash; it must never serve wrong bytes, and the checks
// give that without paying for fsync on every fill.
//
// Nor may it serve what was purged. DeleteMany leaves unlinking to a background goroutine, so
// it first appends the deleted files' names and inode numbers to a journal (Dir/DELETED) that
// the start-up scan applies: a deleted file that a crash left behind is removed, not served.
// See journal.go and unlink.go.
//
// # Concurrency
//
// All methods are safe for concurrent use. Lock order (outer first):
//
//	Writer.mu → Store.lifeMu (shared) → journal.mu → stripes[i] → Store.mu
//
// lifeMu is held shared by every operation that adds bytes to Dir, renames or removes files in
// it (Write, Commit, UpdateMeta, Delete, DeleteMany, eviction, each batch of the background
// unlinker), and exclusively by Close, which therefore waits for them. (The unlinker takes it
// before it takes a batch from its queue, never while it holds one, because a fill may wait in
// reserve, holding lifeMu shared, for that batch.) journal.mu serialises the deletion journal's
// writes and truncations; it is never held together with a stripe. A stripe (one per first
// hash byte) serialises the changes to the files and entries of that shard: held exclusively to
// rename a file into place, unlink it, rewrite its metadata or take entries out of the index
// (DeleteMany takes each stripe its keys touch once), and shared by Open from its index lookup
// until it has opened and measured the file, so that the file it opens is the one the index
// described. mu guards the index (map, B-tree, CLOCK ring, unlink queue) and the byte
// accounting; no file I/O happens under it. Budget reservation (which may evict, or unlink
// queued files) never happens while a stripe is held. Concurrent blocking file operations of Open, the body
// verification and ReadAt are bounded by Config.MaxConcurrentReads.
package disktier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/google/btree"

	"github.com/duetcdn/duet/edge/object"
)

const (
	// MaxObjectFraction: an object whose file (body+meta+trailer) is larger than
	// MaxBytes/MaxObjectFraction is refused with ErrTooLarge, so that one object can never
	// flush most of the cache.
	MaxObjectFraction = 8
	// ReserveStep is the largest step in which a fill reserves budget ahead of its writes. The
	// step is smaller for small budgets: a quarter of the largest object, at least 4 KiB.
	ReserveStep = 1 << 20
	// DefaultMaxConcurrentReads is the default of Config.MaxConcurrentReads.
	DefaultMaxConcurrentReads = 64

	shards     = 256
	tmpDirName = "tmp"
	markerName = "DISKTIER"
)

// Config configures a Store. The zero value of each optional field selects its default.
type Config struct {
	// Dir is the root directory; created if missing. It must be empty or a directory this
	// package created: Open refuses a non-empty directory without its marker file, because it
	// deletes whatever it does not recognise inside its shard directories.
	Dir string
	// MaxBytes is the hard budget, in bytes, for the sum of the file sizes (body+meta+trailer)
	// of committed entries, in-flight fills and removed-but-still-open entries. Required, > 0.
	MaxBytes int64
	// MaxConcurrentReads bounds the concurrent blocking file operations of Open (open, fstat,
	// body verification), Handle.ReadAt and Writer.ReadAt, each of which pins an OS thread; it
	// is also the parallelism of the start-up scan. Default DefaultMaxConcurrentReads.
	MaxConcurrentReads int
	// Logger receives start-up, corruption and error reports. Default: discard.
	Logger *slog.Logger
	// OnEvict, when set, is called with no lock held when an entry leaves the tier because the
	// tier chose to drop it: evicted to make room, or displaced by a different key with the same
	// hash. It is not called for Delete, for a Commit replacing the same key, or for corrupt
	// entries (Open reports those as ErrCorrupt).
	OnEvict func(key string)
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	Entries  int   // committed entries in the index
	Bytes    int64 // everything counted against the budget (= Bytes())
	MaxBytes int64
	// ReservedBytes is the part of Bytes held by fills in progress; PinnedBytes the part held
	// by removed entries whose files are still open.
	ReservedBytes int64
	PinnedBytes   int64
	// Unlinking counts the entries removed by DeleteMany whose files the background unlinker
	// has not unlinked yet, and UnlinkingBytes their part of Bytes.
	Unlinking      int
	UnlinkingBytes int64

	Hits, Misses uint64 // Get and Open lookups
	Commits      uint64
	Evictions    uint64
	EvictedBytes uint64
	Collisions   uint64 // entries displaced by another key with the same 128-bit hash
	Corrupt      uint64 // corrupt, truncated or vanished files found by Open
	Verified     uint64 // bodies checksummed on first Open
	NoSpace      uint64 // fills refused with ErrNoSpace
	TooLarge     uint64 // fills refused with ErrTooLarge

	// Start-up scan.
	RebuildFiles   int           // entries loaded
	RebuildDropped int           // invalid files, stray files and temp files removed
	RebuildDeleted int           // files of entries deleted before the restart (deletion journal)
	RebuildTime    time.Duration // time to scan Dir and build the index
}

// entry is one committed object.
type entry struct {
	key  string
	hash [16]byte
	ino  uint64 // its file's inode number (0: unknown); set before it is indexed

	// Guarded by Store.mu.
	meta       object.Meta
	gen        uint64 // bumped by each UpdateMeta, so a Handle can tell its Meta is out of date
	size       int64  // the file's size: body + meta + trailer
	prev, next *entry // CLOCK ring
	evicting   bool   // picked by an evictor that has not settled it yet
	unlinked   bool   // its file has no name in Dir any more (or no longer counts as having one)
	pinned     bool   // unlinked while open: size counted in Store.pinned
	released   bool   // size given back to the budget

	ref      atomic.Bool  // CLOCK reference bit, set by Get and Open
	verified atomic.Bool  // body checksum checked, or written by this process
	refs     atomic.Int32 // open Handles and committed Writers holding the file open
	gone     atomic.Bool  // removed from the index (set under mu)
}

// Store is the disk tier. See the package documentation.
type Store struct {
	dir       string
	tmpDir    string
	log       *slog.Logger
	onEvict   func(string)
	max       int64
	maxObject int64
	step      int64
	seed      [2]uint64
	sem       chan struct{} // bounds concurrent blocking reads
	bufs      sync.Pool     // *[]byte verification buffers

	lifeMu sync.RWMutex // see the package documentation
	closed atomic.Bool  // set under lifeMu held exclusively

	stripes [shards]sync.RWMutex

	mu        sync.RWMutex
	cond      *sync.Cond            // on mu; signalled when bytes are freed or an eviction settles
	byHash    map[[16]byte]*entry   // guarded by mu
	byKey     *btree.BTreeG[*entry] // guarded by mu; ordered by key
	hand      *entry                // guarded by mu; CLOCK hand, nil when empty
	used      int64                 // guarded by mu; committed + reserved + pinned + unlinking bytes
	reserved  int64                 // guarded by mu; held by fills
	pinned    int64                 // guarded by mu; removed entries still open
	evictingN int                   // guarded by mu; entries picked by evictors, not settled
	rebuild   struct {
		files, dropped, deleted int
		took                    time.Duration
		journal                 journalReplay // the previous process's deletion journal, for load
	} // written once by Open

	// Deleted entries whose files await the unlinker (unlink.go).
	unlinkQ     []*entry // guarded by mu; FIFO from unlinkHead
	unlinkHead  int      // guarded by mu
	unlinkingN  int      // guarded by mu; entries popped from the queue, not settled
	unlinkBytes int64    // guarded by mu; sizes of the queued and popped entries
	ul          unlinker
	jr          journal

	hits, misses, commits, evictions, evictedBytes, collisions atomic.Uint64
	corrupt, verifiedN, noSpace, tooLarge                      atomic.Uint64
}

// Open validates cfg, opens (or creates) the directory, removes left-over temp files, and
// rebuilds the index by reading every file's trailer and metadata (not the body) in parallel.
// Invalid files are deleted and logged. If the files exceed MaxBytes, entries are evicted down
// to it. The context bounds the start-up scan.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("open disk tier: Dir is required")
	case cfg.MaxBytes <= 0:
		return nil, fmt.Errorf("open disk tier %s: MaxBytes must be > 0, got %d", cfg.Dir, cfg.MaxBytes)
	case cfg.MaxConcurrentReads < 0:
		return nil, fmt.Errorf("open disk tier %s: MaxConcurrentReads must be >= 0, got %d", cfg.Dir, cfg.MaxConcurrentReads)
	}
	if cfg.MaxConcurrentReads == 0 {
		cfg.MaxConcurrentReads = DefaultMaxConcurrentReads
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		dir:       filepath.Clean(cfg.Dir),
		log:       cfg.Logger.With("component", "disktier"),
		onEvict:   cfg.OnEvict,
		max:       cfg.MaxBytes,
		maxObject: max(cfg.MaxBytes/MaxObjectFraction, 1),
		sem:       make(chan struct{}, cfg.MaxConcurrentReads),
		byHash:    make(map[[16]byte]*entry),
		byKey:     btree.NewG(32, func(a, b *entry) bool { return a.key < b.key }),
	}
	s.step = min(ReserveStep, max(s.maxObject/4, 4096))
	s.tmpDir = filepath.Join(s.dir, tmpDirName)
	s.jr.path = filepath.Join(s.dir, journalName)
	s.cond = sync.NewCond(&s.mu)
	s.bufs.New = func() any { b := make([]byte, 256<<10); return &b }
	if err := s.prepareDir(); err != nil {
		return nil, fmt.Errorf("open disk tier %s: %w", s.dir, err)
	}
	if err := s.load(ctx, cfg.MaxConcurrentReads); err != nil {
		return nil, fmt.Errorf("open disk tier %s: %w", s.dir, err)
	}
	var evicted []string
	s.lifeMu.RLock()
	err := s.reserve(0, &evicted)
	s.lifeMu.RUnlock()
	s.notifyEvicted(evicted)
	if err != nil {
		return nil, fmt.Errorf("open disk tier %s: evict down to budget: %w", s.dir, err)
	}
	s.startUnlinker()
	s.log.Info("disk tier open", "dir", s.dir, "entries", s.Len(), "bytes", s.Bytes(),
		"max_bytes", s.max, "evicted", len(evicted), "dropped", s.rebuild.dropped,
		"deleted", s.rebuild.deleted, "took", s.rebuild.took)
	return s, nil
}

// Close marks the store closed after waiting for in-flight operations that change Dir, then
// lets the background unlinker unlink every file DeleteMany left to it and waits for it.
// Afterwards lookups miss and changes fail with ErrClosed. Open Handles stay readable. It is
// idempotent and safe on a nil Store.
func (s *Store) Close() error {
	if s == nil {
		return nil
	}
	s.lifeMu.Lock()
	s.closed.Store(true)
	s.lifeMu.Unlock()
	s.stopUnlinker(false)
	return nil
}

// hashKey is the 128-bit hash that names the key's file.
func (s *Store) hashKey(key string) (h [16]byte) {
	var d xxhash.Digest
	d.ResetWithSeed(s.seed[0])
	_, _ = d.WriteString(key)
	a := d.Sum64()
	d.ResetWithSeed(s.seed[1])
	_, _ = d.WriteString(key)
	b := d.Sum64()
	for i := range 8 {
		h[i] = byte(a >> (56 - 8*i))
		h[8+i] = byte(b >> (56 - 8*i))
	}
	return h
}

// path is the file of hash h.
func (s *Store) path(h [16]byte) string {
	const hexdig = "0123456789abcdef"
	buf := make([]byte, 0, len(s.dir)+4+hashHexLen)
	buf = append(buf, s.dir...)
	buf = append(buf, os.PathSeparator, hexdig[h[0]>>4], hexdig[h[0]&15], os.PathSeparator)
	for _, c := range h {
		buf = append(buf, hexdig[c>>4], hexdig[c&15])
	}
	return string(buf)
}

func (s *Store) stripe(h [16]byte) *sync.RWMutex { return &s.stripes[h[0]] }

// Get returns the key's metadata from the index, without I/O, and counts an access. The
// returned Meta shares its slices with the index: treat it as read-only.
func (s *Store) Get(key string) (object.Meta, bool) {
	if s == nil || s.closed.Load() {
		return object.Meta{}, false
	}
	h := s.hashKey(key)
	s.mu.RLock()
	e := s.byHash[h]
	if e == nil || e.key != key {
		s.mu.RUnlock()
		s.misses.Add(1)
		return object.Meta{}, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	m := e.meta
	s.mu.RUnlock()
	s.hits.Add(1)
	return m, true
}

// Touch counts an access to key without returning anything: for callers that served the key
// from a copy elsewhere (the memory tier) and must keep CLOCK from taking it for cold.
func (s *Store) Touch(key string) {
	if s == nil || s.closed.Load() {
		return
	}
	h := s.hashKey(key)
	s.mu.RLock()
	if e := s.byHash[h]; e != nil && e.key == key && !e.ref.Load() {
		e.ref.Store(true)
	}
	s.mu.RUnlock()
}

// Delete removes the key's entry and unlinks its file before it returns (synchronously, unlike
// DeleteMany: it costs one unlink(2) but needs no journal record); open Handles keep reading
// the old file. It reports whether there was an entry.
func (s *Store) Delete(key string) bool {
	if s == nil {
		return false
	}
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.closed.Load() {
		return false
	}
	h := s.hashKey(key)
	st := s.stripe(h)
	st.Lock()
	defer st.Unlock()
	s.mu.RLock()
	e := s.byHash[h]
	s.mu.RUnlock()
	if e == nil || e.key != key {
		return false
	}
	return s.dropHeld(e)
}

// Len is the number of committed entries.
func (s *Store) Len() int {
	if s == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byHash)
}

// Bytes is the number of bytes counted against the budget: committed entries, reservations of
// fills in progress, and removed entries still open. It is never above MaxBytes.
func (s *Store) Bytes() int64 {
	if s == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.used
}

// Keys calls fn with the metadata of every entry whose key starts with prefix, in key order,
// until fn returns false. It costs what it visits: it walks the ordered index from prefix in
// batches, and calls fn with no lock held, so fn may call any method of the Store (Delete, for
// a purge). Entries added or removed during the walk may or may not be visited.
func (s *Store) Keys(prefix string, fn func(object.Meta) bool) {
	if s == nil || s.closed.Load() {
		return
	}
	const batch = 64
	buf := make([]object.Meta, 0, batch)
	pivot := &entry{key: prefix}
	after := false // skip pivot.key itself: it was visited in the previous batch
	for {
		buf = buf[:0]
		s.mu.RLock()
		s.byKey.AscendGreaterOrEqual(pivot, func(e *entry) bool {
			if after && e.key == pivot.key {
				return true
			}
			if !strings.HasPrefix(e.key, prefix) {
				return false
			}
			buf = append(buf, e.meta)
			return len(buf) < batch
		})
		s.mu.RUnlock()
		for i := range buf {
			if !fn(buf[i]) {
				return
			}
		}
		if len(buf) < batch {
			return
		}
		pivot = &entry{key: buf[len(buf)-1].Key}
		after = true
	}
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	s.mu.RLock()
	st := Stats{
		Entries:        len(s.byHash),
		Bytes:          s.used,
		ReservedBytes:  s.reserved,
		PinnedBytes:    s.pinned,
		Unlinking:      len(s.unlinkQ) - s.unlinkHead + s.unlinkingN,
		UnlinkingBytes: s.unlinkBytes,
	}
	s.mu.RUnlock()
	st.MaxBytes = s.max
	st.Hits, st.Misses = s.hits.Load(), s.misses.Load()
	st.Commits = s.commits.Load()
	st.Evictions, st.EvictedBytes = s.evictions.Load(), s.evictedBytes.Load()
	st.Collisions = s.collisions.Load()
	st.Corrupt, st.Verified = s.corrupt.Load(), s.verifiedN.Load()
	st.NoSpace, st.TooLarge = s.noSpace.Load(), s.tooLarge.Load()
	st.RebuildFiles, st.RebuildDropped, st.RebuildTime = s.rebuild.files, s.rebuild.dropped, s.rebuild.took
	st.RebuildDeleted = s.rebuild.deleted
	return st
}

// --- index, CLOCK ring and accounting (all *Locked methods need mu held exclusively) ---

// insertLocked adds e to the index, behind the CLOCK hand (so it is examined last).
func (s *Store) insertLocked(e *entry) {
	s.byHash[e.hash] = e
	s.byKey.ReplaceOrInsert(e)
	if s.hand == nil {
		e.prev, e.next = e, e
		s.hand = e
		return
	}
	e.next = s.hand
	e.prev = s.hand.prev
	s.hand.prev.next = e
	s.hand.prev = e
}

// removeLocked takes e out of the index. Its bytes stay counted until its file is gone.
func (s *Store) removeLocked(e *entry) {
	delete(s.byHash, e.hash)
	s.byKey.Delete(e)
	if e.next == e {
		s.hand = nil
	} else {
		if s.hand == e {
			s.hand = e.next
		}
		e.prev.next = e.next
		e.next.prev = e.prev
	}
	e.prev, e.next = nil, nil
	e.gone.Store(true)
}

// unlinkedLocked records that e's file has lost its name: its bytes are released now, or when
// the last descriptor on it is closed.
func (s *Store) unlinkedLocked(e *entry) {
	e.unlinked = true
	if e.refs.Load() == 0 {
		s.releaseLocked(e)
		return
	}
	e.pinned = true
	s.pinned += e.size
}

func (s *Store) releaseLocked(e *entry) {
	if e.released {
		return
	}
	e.released = true
	s.used -= e.size
	if e.pinned {
		s.pinned -= e.size
	}
	s.cond.Broadcast()
}

// unref drops one descriptor's hold on e.
func (s *Store) unref(e *entry) {
	if e.refs.Add(-1) == 0 && e.gone.Load() {
		s.mu.Lock()
		if e.unlinked {
			s.releaseLocked(e)
		}
		s.mu.Unlock()
	}
}

// victimLocked advances the CLOCK hand to the next entry to evict and marks it; nil when every
// entry is in use or already being evicted.
func (s *Store) victimLocked() *entry {
	for n := 2*len(s.byHash) + 1; n > 0 && s.hand != nil; n-- {
		e := s.hand
		s.hand = e.next
		if e.evicting || e.refs.Load() > 0 {
			continue
		}
		if e.ref.Load() {
			e.ref.Store(false)
			continue
		}
		e.evicting = true
		s.evictingN++
		return e
	}
	return nil
}

// reserve counts n more bytes against the budget, making room until they fit: first by
// unlinking files of deleted entries still queued for the unlinker (garbage goes before anything
// live), then by evicting entries. It returns ErrNoSpace when nothing more can be freed. The
// caller holds lifeMu shared and no stripe; the keys of evicted entries are appended to evicted,
// for notifyEvicted once no lock is held.
func (s *Store) reserve(n int64, evicted *[]string) error {
	s.mu.Lock()
	for s.used+n > s.max {
		if batch := s.popUnlinksLocked(helpBatch); len(batch) > 0 {
			s.mu.Unlock()
			s.unlinkEntries(batch)
			s.mu.Lock()
			continue
		}
		if s.unlinkingN > 0 {
			// Deleted files are being unlinked (a batch takes about a millisecond).
			s.cond.Wait()
			continue
		}
		e := s.victimLocked()
		if e == nil {
			if s.evictingN > 0 {
				// Other evictions are settling and may free enough.
				s.cond.Wait()
				continue
			}
			s.mu.Unlock()
			return ErrNoSpace
		}
		s.mu.Unlock()
		if s.evict(e) {
			*evicted = append(*evicted, e.key)
		}
		s.mu.Lock()
	}
	s.used += n
	s.reserved += n
	s.mu.Unlock()
	return nil
}

// unreserve gives back n reserved bytes.
func (s *Store) unreserve(n int64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.used -= n
	s.reserved -= n
	s.cond.Broadcast()
	s.mu.Unlock()
}

// evict removes a victim picked by victimLocked, unless something else removed it first.
func (s *Store) evict(e *entry) bool {
	st := s.stripe(e.hash)
	st.Lock()
	ok := s.dropHeld(e)
	st.Unlock()
	s.mu.Lock()
	e.evicting = false
	s.evictingN--
	size := e.size
	s.cond.Broadcast()
	s.mu.Unlock()
	if ok {
		s.evictions.Add(1)
		s.evictedBytes.Add(uint64(size))
	}
	return ok
}

// dropHeld removes e from the index, if it is still there, and unlinks its file. The caller
// holds e's stripe exclusively and not mu.
func (s *Store) dropHeld(e *entry) bool {
	s.mu.Lock()
	if s.byHash[e.hash] != e {
		s.mu.Unlock()
		return false
	}
	s.removeLocked(e)
	s.mu.Unlock()
	if err := os.Remove(s.path(e.hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The file may still take space that is no longer counted; nothing better to do.
		s.log.Error("remove cache file", "cache_key", e.key, "error", err)
	}
	s.mu.Lock()
	s.unlinkedLocked(e)
	s.mu.Unlock()
	return true
}

// notifyEvicted calls OnEvict; no lock may be held.
func (s *Store) notifyEvicted(keys []string) {
	if s.onEvict == nil {
		return
	}
	for _, k := range keys {
		s.onEvict(k)
	}
}
