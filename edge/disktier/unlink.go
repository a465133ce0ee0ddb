package disktier

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
)

// Batch deletion and the background unlinker.
//
// DeleteMany removes entries from the index (Get and Open miss from then on) and appends them to
// the unlink queue; their files keep their names, and their bytes stay counted, until the
// unlinker has unlinked them. The unlinker is one goroutine owned by the Store, started by Open
// and stopped by Close, which lets it drain the queue first.
//
// The file of a queued entry may meanwhile have been renamed over by a later Commit of the same
// key (the rename unlinks the old inode: it keeps taking space only while a descriptor holds
// it), so the unlinker must not remove whatever bears the name now. It takes the entry's stripe,
// which serialises it with Commit's rename-and-index, and looks the hash up in the index: if an
// entry is there, the name belongs to it (an entry reaches the index only through a rename onto
// the name while the stripe is held, after our entry left it), so the old file already lost its
// name and the unlinker only settles the accounting. If no entry is there, whatever bears the
// name belongs to a removed entry (ours, or a later one also deleted), and unlinking it is
// right.
//
// Budget: a queued entry's size stays in used until it is settled (released, or pinned while a
// Handle holds the file), so Bytes() and the bytes on disk stay within MaxBytes. A fill that
// needs room while deletions are queued unlinks queued files itself (reserve), before it evicts
// anything live, and waits for the batches the unlinker is working on before it gives up with
// ErrNoSpace.
//
// Crash safety: see journal.go.
const (
	unlinkBatch = 64 // entries the unlinker takes from the queue at a time
	helpBatch   = 8  // entries a fill short of room unlinks at a time
)

// unlinker is the state of the background unlinker; the queue itself is guarded by Store.mu.
type unlinker struct {
	kick     chan struct{} // capacity 1: there is work
	quit     chan struct{} // closed by stop
	done     chan struct{} // closed when the goroutine has returned
	stopOnce sync.Once
	halt     atomic.Bool // stop without draining (a simulated crash, for tests)
	paused   atomic.Bool // tests: leave the queue alone until resumed (Close still drains)
}

// DeleteMany removes the keys' entries from the tier and reports how many of the keys had one.
// When it returns, Get and Open miss every key, and a restart (even after kill -9) will not
// find them again. Open Handles keep reading their files. The files are unlinked by a
// background goroutine; until then their bytes keep counting against MaxBytes (Stats reports
// them as Unlinking). It takes each stripe and the index lock once per stripe that the keys
// touch and writes the deletion journal once, instead of one lock round trip and one unlink(2)
// per key; a key that appears twice is counted once.
func (s *Store) DeleteMany(keys []string) int {
	if s == nil || len(keys) == 0 {
		return 0
	}
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.closed.Load() {
		return 0
	}
	// Bucket the keys by stripe (counting sort on the first hash byte).
	hashes := make([][16]byte, len(keys))
	var start [shards + 1]int32
	for i, k := range keys {
		hashes[i] = s.hashKey(k)
		start[int(hashes[i][0])+1]++
	}
	for b := 1; b <= shards; b++ {
		start[b] += start[b-1]
	}
	order := make([]int32, len(keys))
	next := start
	for i := range keys {
		b := hashes[i][0]
		order[next[b]] = int32(i)
		next[b]++
	}

	s.jr.begin()
	removed := make([]*entry, 0, len(keys))
	for b := range shards {
		group := order[start[b]:start[b+1]]
		if len(group) == 0 {
			continue
		}
		st := &s.stripes[b]
		st.Lock()
		s.mu.Lock()
		first := len(removed)
		for _, i := range group {
			e := s.byHash[hashes[i]]
			if e == nil || e.key != keys[i] {
				continue
			}
			s.removeLocked(e)
			s.unlinkBytes += e.size
			removed = append(removed, e)
		}
		s.unlinkQ = append(s.unlinkQ, removed[first:]...)
		s.mu.Unlock()
		st.Unlock()
	}
	if s.jr.record(s, removed) {
		s.kickUnlinker()
	} else {
		s.drainUnlinks()
	}
	return len(removed)
}

// startUnlinker starts the background unlinker; Open calls it once the index is built.
func (s *Store) startUnlinker() {
	s.ul.kick = make(chan struct{}, 1)
	s.ul.quit = make(chan struct{})
	s.ul.done = make(chan struct{})
	go s.runUnlinker()
}

// stopUnlinker stops the background unlinker and waits for it: after draining the queue, or,
// with halt, at once, leaving the queue and the journal as a crash would.
func (s *Store) stopUnlinker(halt bool) {
	if s.ul.quit == nil {
		return
	}
	s.ul.stopOnce.Do(func() {
		s.ul.halt.Store(halt)
		close(s.ul.quit)
	})
	<-s.ul.done
}

func (s *Store) kickUnlinker() {
	select {
	case s.ul.kick <- struct{}{}:
	default:
	}
}

func (s *Store) runUnlinker() {
	defer close(s.ul.done)
	for {
		stopping := false
		select {
		case <-s.ul.kick:
		case <-s.ul.quit:
			stopping = true
		}
		if s.ul.halt.Load() {
			s.jr.close(s, false)
			return
		}
		if !stopping && s.ul.paused.Load() {
			continue
		}
		for {
			// lifeMu shared, like every change to Dir, so that Close (and tests holding the
			// directory still) wait for a batch in progress. It is taken before a batch is
			// popped, never while one is held: a fill waiting in reserve for our batch must not
			// wait for a Close that waits for it.
			s.lifeMu.RLock()
			s.mu.Lock()
			batch := s.popUnlinksLocked(unlinkBatch)
			s.mu.Unlock()
			if len(batch) > 0 {
				s.unlinkEntries(batch)
			}
			s.lifeMu.RUnlock()
			if len(batch) == 0 || s.ul.halt.Load() || !stopping && s.ul.paused.Load() {
				break
			}
		}
		if s.ul.halt.Load() {
			s.jr.close(s, false)
			return
		}
		s.jr.compact(s, s.unlinkIdle)
		if stopping {
			// Closed: no fill, DeleteMany or helper can queue or pop any more, so the queue
			// is empty and compact emptied the journal.
			s.jr.close(s, true)
			return
		}
	}
}

// unlinkIdle reports whether no file awaits unlinking.
func (s *Store) unlinkIdle() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.unlinkHead == len(s.unlinkQ) && s.unlinkingN == 0
}

// popUnlinksLocked takes up to n entries from the head of the unlink queue; the caller must
// unlinkEntries them. mu is held exclusively.
func (s *Store) popUnlinksLocked(n int) []*entry {
	q := s.unlinkQ[s.unlinkHead:]
	n = min(n, len(q))
	if n == 0 {
		return nil
	}
	batch := make([]*entry, n)
	copy(batch, q)
	clear(q[:n])
	s.unlinkHead += n
	switch rest := len(s.unlinkQ) - s.unlinkHead; {
	case rest == 0:
		if cap(s.unlinkQ) > 4096 {
			s.unlinkQ = nil
		} else {
			s.unlinkQ = s.unlinkQ[:0]
		}
		s.unlinkHead = 0
	case s.unlinkHead > 1024 && s.unlinkHead > rest:
		// Appends keep coming: move the rest to the front rather than grow forever.
		m := copy(s.unlinkQ, s.unlinkQ[s.unlinkHead:])
		clear(s.unlinkQ[m:])
		s.unlinkQ = s.unlinkQ[:m]
		s.unlinkHead = 0
	}
	s.unlinkingN += n
	return batch
}

// unlinkEntries unlinks the files of entries popped from the queue, unless a later commit of
// the key has taken the name (see the top of this file), and settles their bytes. The caller
// holds lifeMu shared and no stripe, not mu.
func (s *Store) unlinkEntries(batch []*entry) {
	for _, e := range batch {
		st := s.stripe(e.hash)
		st.Lock()
		s.mu.RLock()
		taken := s.byHash[e.hash] != nil
		s.mu.RUnlock()
		if !taken {
			if err := os.Remove(s.path(e.hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				// The file may still take space that is no longer counted; nothing better to do.
				s.log.Error("remove deleted cache file", "cache_key", e.key, "error", err)
			}
		}
		st.Unlock()
	}
	s.mu.Lock()
	for _, e := range batch {
		s.unlinkBytes -= e.size
		s.unlinkedLocked(e)
	}
	s.unlinkingN -= len(batch)
	idle := s.unlinkingN == 0 && s.unlinkHead == len(s.unlinkQ)
	s.cond.Broadcast()
	s.mu.Unlock()
	if idle {
		s.kickUnlinker() // to empty the journal
	}
}

// drainUnlinks unlinks every queued file, and waits for the batches others are unlinking,
// before it returns: DeleteMany's way when the journal cannot be written. The caller holds
// lifeMu shared and nothing else.
func (s *Store) drainUnlinks() {
	s.mu.Lock()
	for {
		if batch := s.popUnlinksLocked(unlinkBatch); len(batch) > 0 {
			s.mu.Unlock()
			s.unlinkEntries(batch)
			s.mu.Lock()
			continue
		}
		if s.unlinkingN == 0 {
			break
		}
		s.cond.Wait()
	}
	s.mu.Unlock()
}
