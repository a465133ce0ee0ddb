package disktier

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/duetcdn/duet/edge/object"
)

// Handle is an open entry. Its file stays readable until Close, even if the entry is deleted,
// evicted or replaced meanwhile (the file is only ever unlinked or renamed over, never written
// in place, except for its metadata past the body).
type Handle struct {
	// Meta is the entry's metadata as of Open.
	Meta object.Meta

	s      *Store
	f      *os.File
	e      *entry
	gen    uint64 // e.gen as of Open
	closed atomic.Bool
}

// Current reports whether the Handle still shows its key's entry as it is: not deleted, evicted
// or replaced by a newer fill since Open, and its metadata not updated (revalidated, soft
// purged). A copy made from a Handle that is no longer current must not be kept: the purge or
// update that overtook it has already been applied to the other tiers.
func (h *Handle) Current() bool {
	s := h.s
	if s.closed.Load() {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byHash[h.e.hash] == h.e && h.e.gen == h.gen
}

// UsedBit is the entry's CLOCK reference bit. A memory copy made from this Handle keeps it, so
// that a memory hit can mark the disk entry used with one atomic load instead of a hashed,
// locked lookup (Store.Touch). Setting it on an entry that has since left the index is harmless.
func (h *Handle) UsedBit() *atomic.Bool { return &h.e.ref }

// File returns the open file; the body is bytes [0, Meta.Size) of it. It is for sendfile and
// stays valid until Close. Seek on it only if nobody else reads through the same Handle.
func (h *Handle) File() *os.File { return h.f }

// ReadAt reads body bytes: a read that reaches past the body returns the bytes there are and
// io.EOF.
func (h *Handle) ReadAt(p []byte, off int64) (int, error) {
	n, err := readBody(h.s, h.f, p, off, h.Meta.Size)
	if errors.Is(err, os.ErrClosed) {
		err = fmt.Errorf("read %s: %w", h.Meta.Key, ErrClosed)
	}
	return n, err
}

// Close closes the file. Idempotent and nil-safe.
func (h *Handle) Close() error {
	if h == nil || h.closed.Swap(true) {
		return nil
	}
	err := h.f.Close()
	h.s.unref(h.e)
	return err
}

// Open opens the key's entry for reading and counts an access. It fails with ErrNotFound when
// there is none, and with ErrCorrupt (after removing the entry) when the file is missing, does
// not have the indexed length, or, on the first Open since start-up, its body does not match
// Meta.Checksum. Bodies committed by this process are trusted.
func (s *Store) Open(key string) (*Handle, error) {
	if s == nil || s.closed.Load() {
		return nil, fmt.Errorf("open %s: %w", key, ErrClosed)
	}
	h := s.hashKey(key)
	s.sem <- struct{}{}
	defer func() { <-s.sem }()

	st := s.stripe(h)
	st.RLock()
	s.mu.RLock()
	e := s.byHash[h]
	if e == nil || e.key != key {
		s.mu.RUnlock()
		st.RUnlock()
		s.misses.Add(1)
		return nil, fmt.Errorf("open %s: %w", key, ErrNotFound)
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	e.refs.Add(1)
	meta, size, gen := e.meta, e.size, e.gen
	s.mu.RUnlock()
	f, fsize, _, _, err := openFile(s.path(h))
	st.RUnlock()

	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.unref(e)
		return nil, s.corruptEntry(e, "file vanished")
	case err != nil:
		s.unref(e)
		return nil, fmt.Errorf("open %s: %w", key, err)
	case fsize != size:
		_ = f.Close()
		s.unref(e)
		return nil, s.corruptEntry(e, fmt.Sprintf("file is %d bytes, index says %d", fsize, size))
	}
	if !e.verified.Load() {
		if err := s.verify(f, meta.Size, meta.Checksum); err != nil {
			_ = f.Close()
			s.unref(e)
			return nil, s.corruptEntry(e, err.Error())
		}
		e.verified.Store(true)
		s.verifiedN.Add(1)
	}
	s.hits.Add(1)
	return &Handle{Meta: meta, s: s, f: f, e: e, gen: gen}, nil
}

// verify checks that f holds size body bytes whose xxhash64 is want.
func (s *Store) verify(f *os.File, size int64, want uint64) error {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	var d xxhash.Digest
	d.Reset()
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		_, _ = d.Write(buf[:n])
		off += int64(n)
		if err != nil && (err != io.EOF || off < size) {
			return fmt.Errorf("read body at %d of %d: %w", off, size, err)
		}
	}
	if got := d.Sum64(); got != want {
		return fmt.Errorf("body checksum %016x, meta says %016x", got, want)
	}
	return nil
}

// corruptEntry removes e, logs why, and returns the error for Open.
func (s *Store) corruptEntry(e *entry, why string) error {
	s.lifeMu.RLock()
	if !s.closed.Load() {
		st := s.stripe(e.hash)
		st.Lock()
		s.dropHeld(e)
		st.Unlock()
	}
	s.lifeMu.RUnlock()
	s.corrupt.Add(1)
	s.log.Warn("corrupt cache file removed", "cache_key", e.key, "path", s.path(e.hash), "reason", why)
	return fmt.Errorf("open %s: %s: %w", e.key, why, ErrCorrupt)
}

// UpdateMeta replaces the metadata of the key's entry (revalidation, soft purge) in place: it
// truncates the file to the body and appends the new metadata and trailer. The body, Size and
// Checksum are kept (m's are ignored), and readers of the body are unaffected. It fails with
// ErrNotFound when the key has no entry (or the entry was replaced meanwhile).
func (s *Store) UpdateMeta(key string, m object.Meta) error {
	if s == nil {
		return fmt.Errorf("update meta %s: %w", key, ErrClosed)
	}
	var evicted []string
	err := s.updateMeta(key, m, &evicted)
	s.notifyEvicted(evicted)
	if err != nil {
		return fmt.Errorf("update meta %s: %w", key, err)
	}
	return nil
}

func (s *Store) updateMeta(key string, m object.Meta, evicted *[]string) error {
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	h := s.hashKey(key)
	for {
		s.mu.RLock()
		e := s.byHash[h]
		if e == nil || e.key != key {
			s.mu.RUnlock()
			return ErrNotFound
		}
		body, sum, cur := e.meta.Size, e.meta.Checksum, e.size
		s.mu.RUnlock()

		m.Key, m.Size, m.Checksum = key, body, sum
		tail, metaLen, err := encodeEntry(&m)
		if err != nil {
			return err
		}
		meta, err := decodeMeta(tail[:metaLen])
		if err != nil {
			return err
		}
		size := body + int64(len(tail))
		var res int64
		if grow := size - cur; grow > 0 {
			if err := s.reserve(grow, evicted); err != nil {
				return err
			}
			res = grow
		}

		st := s.stripe(h)
		st.Lock()
		s.mu.Lock()
		if s.byHash[h] != e {
			s.mu.Unlock()
			st.Unlock()
			s.unreserve(res)
			return ErrNotFound
		}
		if e.size != cur { // another UpdateMeta got in between: start again
			s.mu.Unlock()
			st.Unlock()
			s.unreserve(res)
			continue
		}
		s.mu.Unlock()

		err = rewriteTail(s.path(h), body, tail)
		if err != nil {
			ok := s.dropHeld(e)
			st.Unlock()
			s.unreserve(res)
			if ok {
				s.log.Error("rewrite cache file metadata; entry removed", "cache_key", key, "error", err)
			}
			return err
		}
		s.mu.Lock()
		e.meta = meta
		e.gen++
		e.size = size
		s.used += size - cur - res
		s.reserved -= res
		s.cond.Broadcast()
		s.mu.Unlock()
		st.Unlock()
		return nil
	}
}

// rewriteTail truncates the file at p to body bytes and appends tail.
func rewriteTail(p string, body int64, tail []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(body); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.WriteAt(tail, body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
