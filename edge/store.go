package edge

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/duetcdn/duet/edge/disktier"
	"github.com/duetcdn/duet/edge/memtier"
	"github.com/duetcdn/duet/edge/object"
)

// Key suffixes. A NUL byte never appears in a normalised path, so these cannot collide with a
// request's own key, and a purge of key K reaches everything stored under K + "\x00".
const (
	variantSep = "\x00v\x00"
	sliceSep   = "\x00s\x00"
)

func variantKey(primary, values string) string { return primary + variantSep + values }
func sliceKey(primary string, i int64) string {
	return primary + sliceSep + strconv.FormatInt(i, 10)
}

// primaryOf strips a variant or slice suffix.
func primaryOf(key string) string {
	if i := strings.IndexByte(key, 0); i >= 0 {
		return key[:i]
	}
	return key
}

// store is the two tiers seen as one cache. The disk tier is the authority on what is cached:
// an object enters the memory tier only after it was committed to disk, and leaves it when disk
// evicts it, so that the disk index alone answers purges by key, prefix and tag.
type store struct {
	mem  *memtier.Tier
	disk *disktier.Store
	log  *slog.Logger

	// copying holds the keys of disk hits being read into memory: one copy per key at a
	// time, so a burst of viewers on an object that is only on disk (the second wave of a
	// flash crowd, once the fill has committed) costs one object-sized buffer, not one each.
	copying sync.Map // key → struct{}
	copies  atomic.Uint64

	// sliceAbove is the size above which an object is cached as slices (Server.sliceAbove).
	sliceAbove int64

	mu sync.RWMutex
	// vary is the Vary index: primary key → the request headers its responses vary on, and the
	// variants stored under it. An entry lives while a variant is stored or a fill is about to
	// store one, and no longer: the map is bounded by what the tiers hold. Guarded by mu.
	vary    map[string]*varyEntry
	tags    map[string]map[string]struct{} // surrogate key → cache keys; guarded by mu
	keyTags map[string][]string            // cache key → its surrogate keys, to unindex on removal; guarded by mu
	// sliced holds the primary keys of objects too large to store whole, so that their requests
	// go to the slices at once instead of asking the origin for the whole object first. Rebuilt
	// at start from the slices on disk; a key leaves it when its entries are removed (purge,
	// new version). Guarded by mu.
	sliced map[string]struct{}
}

// maxSlicedKeys bounds store.sliced; past it, the set starts over (the cost is one origin
// request per large object, answered by switching to slices again).
const maxSlicedKeys = 100_000

func newStore(mem *memtier.Tier, disk *disktier.Store, log *slog.Logger, sliceAbove int64) *store {
	st := &store{
		mem: mem, disk: disk, log: log, sliceAbove: sliceAbove,
		vary: map[string]*varyEntry{}, tags: map[string]map[string]struct{}{}, keyTags: map[string][]string{},
		sliced: map[string]struct{}{},
	}
	// A restarted edge rebuilds its secondary indexes from the disk tier's metadata.
	disk.Keys("", func(m object.Meta) bool {
		st.index(&m)
		return true
	})
	return st
}

// varyEntry is one primary key's line in the Vary index.
type varyEntry struct {
	names []string
	// stored holds the variant keys the tiers hold; pending counts fills that will store one
	// (their viewers look the variant up before it is committed).
	stored  map[string]struct{}
	pending int
}

// index records an entry's vary headers and surrogate keys. A new version of a key replaces the
// old one's surrogate keys, also when it has none: a tag purge must not reach an entry that no
// longer carries the tag.
func (st *store) index(m *object.Meta) {
	if m.Total > st.sliceAbove && strings.Contains(m.Key, sliceSep) {
		st.markSliced(primaryOf(m.Key))
	}
	names := varyNames(m.Header)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.unindexTagsLocked(m.Key)
	if len(m.Tags) > 0 {
		for _, t := range m.Tags {
			set := st.tags[t]
			if set == nil {
				set = map[string]struct{}{}
				st.tags[t] = set
			}
			set[m.Key] = struct{}{}
		}
		st.keyTags[m.Key] = m.Tags
	}
	if len(names) > 0 && !slices.Contains(names, "*") && strings.Contains(m.Key, variantSep) {
		v := st.varyLocked(primaryOf(m.Key), names)
		v.stored[m.Key] = struct{}{}
	}
}

// varyLocked returns the primary key's Vary entry, created when missing, with names as the
// headers its responses now vary on. st.mu held.
func (st *store) varyLocked(primary string, names []string) *varyEntry {
	v := st.vary[primary]
	if v == nil {
		v = &varyEntry{stored: map[string]struct{}{}}
		st.vary[primary] = v
	}
	v.names = names
	return v
}

// beginVary records, before a fill stores it, that the primary key's responses vary on names,
// so that the fill's viewers find the variant they share. done ends the fill's hold: the
// entry goes when no variant was stored.
func (st *store) beginVary(primary string, names []string) (done func()) {
	st.mu.Lock()
	st.varyLocked(primary, names).pending++
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		if v := st.vary[primary]; v != nil {
			v.pending--
			st.dropVaryIfEmptyLocked(primary, v)
		}
		st.mu.Unlock()
	}
}

func (st *store) dropVaryIfEmptyLocked(primary string, v *varyEntry) {
	if len(v.stored) == 0 && v.pending <= 0 {
		delete(st.vary, primary)
	}
}

// forgetVary is for a response without Vary for the primary key: lookups go to the primary
// key again, and the variants stored under it, which no lookup reaches any more, are removed.
func (st *store) forgetVary(primary string) {
	if st.varyOf(primary) == nil { // the common case, under the shared lock only
		return
	}
	st.mu.Lock()
	v := st.vary[primary]
	delete(st.vary, primary)
	st.mu.Unlock()
	if v == nil {
		return
	}
	if keys := st.keysWithPrefix(primary + variantSep); len(keys) > 0 {
		st.removeMany(keys)
	}
}

// varyLen is the number of primary keys in the Vary index.
func (st *store) varyLen() int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.vary)
}

// unindexLocked takes a removed key out of the secondary indexes. st.mu held.
func (st *store) unindexLocked(key string) {
	if i := strings.Index(key, variantSep); i >= 0 {
		if v := st.vary[key[:i]]; v != nil {
			delete(v.stored, key)
			st.dropVaryIfEmptyLocked(key[:i], v)
		}
	}
	st.unindexTagsLocked(key)
}

func (st *store) unindexTagsLocked(key string) {
	for _, t := range st.keyTags[key] {
		if set := st.tags[t]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(st.tags, t)
			}
		}
	}
	delete(st.keyTags, key)
}

// evicted is the disk tier's eviction callback.
func (st *store) evicted(key string) {
	st.mem.Del(key)
	st.mu.Lock()
	st.unindexLocked(key)
	st.mu.Unlock()
}

// markSliced records that primary's object is stored as slices.
func (st *store) markSliced(primary string) {
	st.mu.Lock()
	if _, ok := st.sliced[primary]; !ok {
		if len(st.sliced) >= maxSlicedKeys {
			clear(st.sliced)
		}
		st.sliced[strings.Clone(primary)] = struct{}{}
	}
	st.mu.Unlock()
}

func (st *store) unmarkSliced(primary string) {
	st.mu.Lock()
	delete(st.sliced, primary)
	st.mu.Unlock()
}

// isSliced reports whether primary's object is stored as slices.
func (st *store) isSliced(primary string) bool {
	st.mu.RLock()
	_, ok := st.sliced[primary]
	st.mu.RUnlock()
	return ok
}

// varyOf returns the headers the primary key's responses vary on, if any.
func (st *store) varyOf(primary string) []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if v := st.vary[primary]; v != nil {
		return v.names
	}
	return nil
}

// lookupKey is the key a request reads: the primary key, or a variant of it.
func (st *store) lookupKey(primary string, reqHeader func(string) string) string {
	names := st.varyOf(primary)
	if len(names) == 0 {
		return primary
	}
	return variantKey(primary, varyValues(names, reqHeader))
}

// entry is a cached object found in a tier.
type entry struct {
	meta *object.Meta
	body []byte           // memory tier (or a small disk object read into memory)
	mem  *memtier.Entry   // the memory tier's entry meta and body belong to, if any
	file *disktier.Handle // disk tier; closed by whoever serves it
	tier string
}

// close releases a disk entry's file; once only, by whoever does not hand it on.
func (e entry) close() {
	if e.file != nil {
		_ = e.file.Close()
	}
}

// peek finds an entry's metadata without opening anything.
func (st *store) peek(key string) (*object.Meta, bool) {
	if e, ok := st.mem.Get(key); ok {
		return &e.Meta, true
	}
	if m, ok := st.disk.Get(key); ok {
		return &m, true
	}
	return nil, false
}

// open finds an entry and makes its body readable. Small disk objects are read into memory
// and offered to the memory tier (whose admission policy decides); large ones stay on disk and
// are served with sendfile.
func (st *store) open(key string) (entry, bool) {
	if e, ok := st.mem.Get(key); ok {
		// The disk entry is the authority (its eviction drops the memory copy): without this
		// touch the hottest objects, always served from memory, look cold to disk's CLOCK and
		// are evicted from both tiers (hit ratio, memory+disk: 67.0 % → 71.2 %, see
		// docs/performance.md). A copy read from disk holds the entry's bit: no second lookup.
		if u := e.DiskUsed; u != nil {
			if !u.Load() { // read first: a hot object's bit is already set, keep its cache line shared
				u.Store(true)
			}
		} else {
			st.disk.Touch(key)
		}
		return entry{meta: &e.Meta, body: e.Body, mem: e, tier: "memory"}, true
	}
	h, err := st.disk.Open(key)
	if err != nil {
		if !errors.Is(err, disktier.ErrNotFound) {
			st.log.LogAttrs(context.Background(), slog.LevelWarn, "disk tier entry unusable, refetching",
				slog.String("cache_key", key), slog.String("error", err.Error()))
			st.mem.Del(key)
		}
		return entry{}, false
	}
	if st.mem.Fits(h.Meta.Size) {
		if _, busy := st.copying.LoadOrStore(key, struct{}{}); !busy {
			defer st.copying.Delete(key)
			if e, ok := st.mem.Get(key); ok { // copied while this viewer opened the file
				_ = h.Close()
				return entry{meta: &e.Meta, body: e.Body, mem: e, tier: "memory"}, true
			}
			return st.copyUp(key, h)
		}
		// Another viewer is copying it: this one is served from the file, as a large object is.
	}
	return entry{meta: &h.Meta, file: h, tier: "disk"}, true
}

// copyUp reads a disk hit into memory, offers it to the memory tier, and closes h.
func (st *store) copyUp(key string, h *disktier.Handle) (entry, bool) {
	defer h.Close()
	m := h.Meta
	body := make([]byte, m.Size)
	if _, err := h.ReadAt(body, 0); err != nil && m.Size > 0 {
		st.log.LogAttrs(context.Background(), slog.LevelWarn, "disk read failed", slog.String("cache_key", key), slog.String("error", err.Error()))
		return entry{}, false
	}
	me := &memtier.Entry{Meta: m, Body: body, DiskUsed: h.UsedBit()}
	st.copies.Add(1)
	st.mem.Set(me)
	// A purge or a metadata update (revalidation, soft purge) that reached the disk tier while
	// the body was read has already been applied to memory, before this copy landed there:
	// take the copy back out. Checked after the Set, so that whichever comes last of the two
	// removes it. This viewer still gets the body it opened, as it would from the file.
	if !h.Current() {
		st.mem.Del(key)
	}
	return entry{meta: &me.Meta, body: body, tier: "disk"}, true
}

// committed is called after a fill's entry reached disk.
func (st *store) committed(m object.Meta, body []byte) {
	st.index(&m)
	if body != nil {
		st.mem.Set(&memtier.Entry{Meta: m, Body: body})
	} else {
		st.mem.Del(m.Key)
	}
}

// updateMeta replaces an entry's metadata (revalidation, soft purge) in both tiers.
func (st *store) updateMeta(m object.Meta) error {
	if err := st.disk.UpdateMeta(m.Key, m); err != nil {
		st.mem.Del(m.Key)
		return err
	}
	if e, ok := st.mem.Get(m.Key); ok {
		st.mem.Set(&memtier.Entry{Meta: m, Body: e.Body})
	}
	st.index(&m)
	return nil
}

// remove deletes one key from both tiers.
func (st *store) remove(key string) bool {
	ok := st.disk.Delete(key) // disk first, as in removeMany: no reader can then reload it into memory
	st.mem.Del(key)
	st.mu.Lock()
	st.unindexLocked(key)
	delete(st.sliced, primaryOf(key))
	st.mu.Unlock()
	return ok
}

// removeMany deletes keys from both tiers and reports how many the disk tier held. The disk
// tier goes first: once its index has dropped the keys, no reader can bring them back into the
// memory tier from disk. The tag index is updated under one lock for all the keys.
func (st *store) removeMany(keys []string) int {
	n := st.disk.DeleteMany(keys)
	for _, k := range keys {
		st.mem.Del(k)
	}
	st.mu.Lock()
	for _, k := range keys {
		st.unindexLocked(k)
		delete(st.sliced, primaryOf(k))
	}
	st.mu.Unlock()
	return n
}

// keysUnder lists the keys stored under a key (itself, its variants and slices).
func (st *store) keysUnder(key string) []string {
	var keys []string
	st.disk.Keys(key, func(m object.Meta) bool {
		if m.Key == key || strings.HasPrefix(m.Key, key+"\x00") {
			keys = append(keys, m.Key)
		}
		return true
	})
	return keys
}

// keysWithPrefix lists every key that starts with prefix, in order.
func (st *store) keysWithPrefix(prefix string) []string {
	var keys []string
	st.disk.Keys(prefix, func(m object.Meta) bool {
		keys = append(keys, m.Key)
		return true
	})
	return keys
}

// keysTagged lists the keys carrying a surrogate key.
func (st *store) keysTagged(tag string) []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	keys := make([]string, 0, len(st.tags[tag]))
	for k := range st.tags[tag] {
		keys = append(keys, k)
	}
	return keys
}

// varyNames returns the canonical header names a stored response varies on.
func varyNames(h []object.Field) []string {
	var names []string
	for _, f := range h {
		if f.Name != "Vary" {
			continue
		}
		for n := range strings.SplitSeq(f.Value, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, http.CanonicalHeaderKey(n))
			}
		}
	}
	return names
}

// varyValues builds the secondary key from the request's values of the vary headers.
// Accept-Encoding is reduced to the coding the edge would ask the origin for, so that the
// thousands of spellings browsers send share a handful of variants.
func varyValues(names []string, reqHeader func(string) string) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(0x1f)
		}
		v := reqHeader(n)
		if n == "Accept-Encoding" {
			v = normaliseAcceptEncoding(v)
		} else {
			v = strings.ToLower(strings.TrimSpace(v))
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(v)
	}
	return b.String()
}

// normaliseAcceptEncoding maps an Accept-Encoding value to "br", "gzip" or "identity".
func normaliseAcceptEncoding(v string) string {
	best := "identity"
	for part := range strings.SplitSeq(v, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
				continue
			}
		}
		switch name {
		case "br":
			return "br"
		case "gzip", "x-gzip":
			best = "gzip"
		}
	}
	return best
}
