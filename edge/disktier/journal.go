package disktier

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Deletion journal. DeleteMany takes entries out of the index at once but leaves their files to
// the background unlinker (see unlink.go). Until a file is unlinked, a restart would find it in
// its shard, load it and serve it again: a purge that was acknowledged would be undone. So,
// before DeleteMany returns, it appends one record per removed entry to Dir/DELETED:
//
//	hash   [16]byte        the file's name (the key's hash)
//	ino    uint64 LE       the file's inode number; 0 when unknown, which matches any file
//	check  uint64 LE       xxhash64 of the 24 bytes before
//
// The start-up scan drops a file whose name and inode match a record. A file with the name of a
// record but another inode is a later commit of the same key (Commit renames a new inode over
// the name), which must survive. A false match (an inode number reused by a later commit of the
// same key while the record was still in the journal) only costs a cache miss. Once the scan
// has applied the journal, Open removes it.
//
// While the store runs, the unlinker truncates the journal whenever nothing is pending: no
// entry waits in the unlink queue or is being unlinked, and no DeleteMany is between its first
// removal and the write of its records. Every file the journal names has then lost its name.
// Close drains the queue and removes the journal.
//
// No fsync. What kill -9 (or a panic, or the OOM killer) can interrupt is covered: a write(2)
// that returned is in the page cache and survives the process. A write cut short by the crash
// leaves a partial record at the tail, of a DeleteMany that had not returned: the scan ignores
// it (the purge had not been acknowledged, and the records before it are whole). After a power
// loss or a kernel crash the journal's tail may be lost like any unsynced write; the unlinks
// the synchronous path used to do were not synced either. A whole record whose checksum does
// not match, or a journal that cannot be read, means the journal is damaged in a way that cannot
// be bounded: the scan then drops every entry (a cold cache, never a purged object served).
//
// If the journal cannot be written (open or write error), DeleteMany falls back to unlinking
// before it returns, which needs no journal.
const (
	journalName   = "DELETED"
	journalRecord = 32
)

// journal is the append side of the deletion journal.
type journal struct {
	mu       sync.Mutex
	path     string
	f        *os.File // opened on first use
	broken   bool     // cannot be written: DeleteMany unlinks before returning
	size     int64    // bytes of whole records in the file
	inflight int      // DeleteMany calls between their first removal and their records
	buf      []byte
}

// begin is called by DeleteMany before it removes anything from the index, so that the
// journal is not truncated before its records are written.
func (j *journal) begin() {
	j.mu.Lock()
	j.inflight++
	j.mu.Unlock()
}

// record appends the records of entries removed from the index by the DeleteMany that called
// begin. It reports false when they could not be written: the caller must then unlink the files
// before it returns.
func (j *journal) record(s *Store, es []*entry) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.inflight--
	if len(es) == 0 {
		return true
	}
	if j.broken {
		return false
	}
	if j.f == nil {
		// O_TRUNC: the records a previous process left were applied by the start-up scan.
		f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			s.log.Error("open deletion journal; deletes will be synchronous", "path", j.path, "error", err)
			j.broken = true
			return false
		}
		j.f, j.size = f, 0
	}
	buf := j.buf[:0]
	for _, e := range es {
		buf = appendJournalRecord(buf, e.hash, e.ino)
	}
	_, err := j.f.Write(buf)
	if cap(buf) <= 1<<20 {
		j.buf = buf[:0]
	} else {
		j.buf = nil
	}
	if err != nil {
		// A partial record would misalign every record after it: cut back to the whole ones.
		s.log.Error("write deletion journal; unlinking synchronously", "path", j.path, "error", err)
		if terr := j.f.Truncate(j.size); terr != nil {
			s.log.Error("truncate deletion journal; deletes will be synchronous", "path", j.path, "error", terr)
			_ = j.f.Close()
			j.f = nil
			j.broken = true
		}
		return false
	}
	j.size += int64(len(buf))
	return true
}

// compact empties the journal when nothing is pending; idle is called with j.mu held and
// reports whether no file awaits unlinking.
func (j *journal) compact(s *Store, idle func() bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil || j.size == 0 || j.inflight > 0 || !idle() {
		return
	}
	if err := j.f.Truncate(0); err != nil {
		// The stale records only cost misses after a restart; keep appending after them.
		s.log.Error("truncate deletion journal", "path", j.path, "error", err)
		return
	}
	j.size = 0
}

// close closes the journal for good; with remove (after a drain, when compact emptied it) the
// file is removed too.
func (j *journal) close(s *Store, remove bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		_ = j.f.Close()
		j.f = nil
		if remove && j.size == 0 {
			if err := os.Remove(j.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Error("remove deletion journal", "path", j.path, "error", err)
			}
		}
	}
	j.broken = true
}

func appendJournalRecord(b []byte, h [16]byte, ino uint64) []byte {
	start := len(b)
	b = append(b, h[:]...)
	b = binary.LittleEndian.AppendUint64(b, ino)
	return binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b[start:]))
}

// journalReplay is what the start-up scan learns from a previous process's journal.
type journalReplay struct {
	deleted map[[16]byte][]uint64 // hash → inode numbers of deleted files
	all     bool                  // the journal is damaged: drop every file
	found   bool                  // there was a journal
}

// matches reports whether the file named h with inode ino was deleted before the restart.
func (r *journalReplay) matches(h [16]byte, ino uint64) bool {
	if r.all {
		return true
	}
	for _, i := range r.deleted[h] {
		if i == 0 || ino == 0 || i == ino {
			return true
		}
	}
	return false
}

// readJournal reads the journal a previous process left in Dir, if any.
func (s *Store) readJournal() journalReplay {
	p := filepath.Join(s.dir, journalName)
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return journalReplay{}
	case err != nil:
		s.log.Error("deletion journal unreadable: dropping every entry", "path", p, "error", err)
		return journalReplay{all: true, found: true}
	}
	whole := len(b) / journalRecord * journalRecord
	if whole != len(b) {
		// The tail of a write cut by a crash: its DeleteMany had not returned.
		s.log.Info("deletion journal ends in a partial record, ignored", "path", p, "bytes", len(b)-whole)
	}
	r := journalReplay{deleted: make(map[[16]byte][]uint64, whole/journalRecord), found: true}
	for off := 0; off < whole; off += journalRecord {
		rec := b[off : off+journalRecord]
		if xxhash.Sum64(rec[:24]) != binary.LittleEndian.Uint64(rec[24:]) {
			s.log.Error("deletion journal damaged: dropping every entry", "path", p, "offset", off)
			return journalReplay{all: true, found: true}
		}
		var h [16]byte
		copy(h[:], rec[:16])
		r.deleted[h] = append(r.deleted[h], binary.LittleEndian.Uint64(rec[16:24]))
	}
	return r
}
