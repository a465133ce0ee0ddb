package disktier

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/duetcdn/duet/edge/object"
)

// Writer streams one fill into a temp file in Dir/tmp while any number of readers read back
// what has been written. Write, Commit and Abort are for the one goroutine that fills; ReadAt
// and Written may be called from any goroutine at any time.
//
// Lifecycle: Create → Write… → Commit (or Abort). After Commit the entry is in the index and
// ReadAt keeps working on the committed file until Abort, which after Commit only releases the
// Writer's descriptor (the entry stays). Always call Abort once no reader needs the Writer any
// more; a Writer that is garbage collected without it is aborted by a cleanup, later.
type Writer struct {
	fl *fill
	// cleanup aborts the fill if the Writer is dropped without Abort.
	cleanup runtime.Cleanup
}

// fill is the state of a Writer, apart from the Writer so that its cleanup can reach it.
type fill struct {
	s    *Store
	key  string
	hash [16]byte
	f    *os.File
	tmp  string

	written atomic.Int64 // body bytes written (and readable)

	mu       sync.Mutex // guards the fields below; serialises Write, Commit and Abort
	digest   xxhash.Digest
	reserved int64 // budget held for the temp file
	state    fillState
	err      error  // why the fill failed (stateFailed)
	e        *entry // the committed entry, held open through f (stateCommitted)
}

type fillState int

const (
	stateWriting   fillState = iota
	stateFailed              // not cached; f still readable until Abort
	stateCommitted           // in the index; f still readable until Abort
	stateDone                // aborted: f closed, nothing held
)

// Create starts a fill for key.
func (s *Store) Create(key string) (*Writer, error) {
	if s == nil || s.closed.Load() {
		return nil, fmt.Errorf("create %s: %w", key, ErrClosed)
	}
	f, err := os.CreateTemp(s.tmpDir, "fill-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", key, err)
	}
	fl := &fill{s: s, key: key, hash: s.hashKey(key), f: f, tmp: f.Name()}
	fl.digest.Reset()
	w := &Writer{fl: fl}
	w.cleanup = runtime.AddCleanup(w, (*fill).abandon, fl)
	return w, nil
}

// Write appends body bytes. It reserves budget ahead of the bytes, evicting older entries; if
// no room can be made it fails with ErrNoSpace, and with ErrTooLarge once the body exceeds the
// object limit. After an error the fill will not be cached, but what was written stays readable
// until Abort.
func (w *Writer) Write(p []byte) (int, error) {
	var evicted []string
	n, err := w.fl.write(p, &evicted)
	w.fl.s.notifyEvicted(evicted)
	runtime.KeepAlive(w)
	return n, err
}

func (fl *fill) write(p []byte, evicted *[]string) (int, error) {
	s := fl.s
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if err := fl.usableLocked("write"); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.closed.Load() {
		return 0, fl.failLocked("write", ErrClosed)
	}
	need := fl.written.Load() + int64(len(p))
	if need+trailerSize > s.maxObject {
		s.tooLarge.Add(1)
		return 0, fl.failLocked("write", fmt.Errorf("body passes %d bytes (MaxBytes/%d): %w", s.maxObject, MaxObjectFraction, ErrTooLarge))
	}
	if need > fl.reserved {
		grow := (need - fl.reserved + s.step - 1) / s.step * s.step
		grow = min(grow, s.maxObject-fl.reserved) // still >= need-reserved
		if err := s.reserve(grow, evicted); err != nil {
			s.noSpace.Add(1)
			return 0, fl.failLocked("write", err)
		}
		fl.reserved += grow
	}
	n, err := fl.f.Write(p)
	_, _ = fl.digest.Write(p[:n])
	fl.written.Add(int64(n))
	if err != nil {
		return n, fl.failLocked("write", err)
	}
	return n, nil
}

// usableLocked reports why the fill cannot take more bytes.
func (fl *fill) usableLocked(op string) error {
	switch fl.state {
	case stateWriting:
		return nil
	case stateFailed:
		return fl.err
	default:
		return fmt.Errorf("%s %s: %w", op, fl.key, ErrClosed)
	}
}

// failLocked ends the fill with err; the temp file stays readable until Abort.
func (fl *fill) failLocked(op string, err error) error {
	fl.state = stateFailed
	fl.err = fmt.Errorf("%s %s: %w", op, fl.key, err)
	return fl.err
}

// ReadAt reads body bytes written so far, like os.File.ReadAt: a read that reaches past what
// has been written returns the bytes there are and io.EOF. It keeps working after Commit, until
// Abort, after which it fails with ErrClosed.
func (w *Writer) ReadAt(p []byte, off int64) (int, error) {
	fl := w.fl
	n, err := readBody(fl.s, fl.f, p, off, fl.written.Load())
	if errors.Is(err, os.ErrClosed) {
		err = fmt.Errorf("read %s: %w", fl.key, ErrClosed)
	}
	runtime.KeepAlive(w)
	return n, err
}

// Written is the number of body bytes written so far.
func (w *Writer) Written() int64 {
	n := w.fl.written.Load()
	runtime.KeepAlive(w)
	return n
}

// Commit stores the fill under its key with metadata m. It sets m.Key, m.Size and m.Checksum
// from the Writer (ignoring the caller's values), appends the metadata and trailer, renames the
// file into place (atomically replacing an older version of the key; readers of the older
// version keep their file), and indexes it. A file larger than MaxBytes/MaxObjectFraction is
// refused with ErrTooLarge. On any error nothing is stored. There is no fsync: see the package
// documentation.
func (w *Writer) Commit(m object.Meta) error {
	var evicted []string
	err := w.fl.commit(m, &evicted)
	w.fl.s.notifyEvicted(evicted)
	runtime.KeepAlive(w)
	return err
}

func (fl *fill) commit(m object.Meta, evicted *[]string) error {
	s := fl.s
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if err := fl.usableLocked("commit"); err != nil {
		return err
	}
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.closed.Load() {
		return fl.failLocked("commit", ErrClosed)
	}
	body := fl.written.Load()
	m.Key, m.Size, m.Checksum = fl.key, body, fl.digest.Sum64()
	tail, metaLen, err := encodeEntry(&m)
	if err != nil {
		s.tooLarge.Add(1)
		return fl.failLocked("commit", err)
	}
	size := body + int64(len(tail))
	if size > s.maxObject {
		s.tooLarge.Add(1)
		return fl.failLocked("commit", fmt.Errorf("file of %d bytes passes %d (MaxBytes/%d): %w", size, s.maxObject, MaxObjectFraction, ErrTooLarge))
	}
	if extra := size - fl.reserved; extra > 0 {
		if err := s.reserve(extra, evicted); err != nil {
			s.noSpace.Add(1)
			return fl.failLocked("commit", err)
		}
		fl.reserved += extra
	}
	if _, err := fl.f.WriteAt(tail, body); err != nil {
		return fl.failLocked("commit", err)
	}
	// Index what a restart would read back, in a private copy.
	meta, err := decodeMeta(tail[:metaLen])
	if err != nil {
		return fl.failLocked("commit", err)
	}
	// The inode number identifies this version of the key in the deletion journal; without it
	// (0) a journal record matches any file of the name, which is only conservative.
	var ino uint64
	if fi, err := fl.f.Stat(); err == nil {
		ino = fileIno(fi)
	}
	e := &entry{key: fl.key, hash: fl.hash, ino: ino, meta: meta, size: size}
	e.verified.Store(true)
	e.refs.Store(1) // f stays open for ReadAt

	st := s.stripe(fl.hash)
	st.Lock()
	if err := os.Rename(fl.tmp, s.path(fl.hash)); err != nil {
		st.Unlock()
		return fl.failLocked("commit", err)
	}
	s.mu.Lock()
	if old := s.byHash[fl.hash]; old != nil {
		s.removeLocked(old)
		s.unlinkedLocked(old) // the rename replaced its file
		if old.key != fl.key {
			s.collisions.Add(1)
			*evicted = append(*evicted, old.key)
			s.log.Warn("hash collision: entry displaced", "cache_key", old.key, "by", fl.key)
		}
	}
	s.insertLocked(e)
	s.used += size - fl.reserved
	s.reserved -= fl.reserved
	s.cond.Broadcast()
	s.mu.Unlock()
	st.Unlock()

	fl.reserved = 0
	fl.state = stateCommitted
	fl.e = e
	s.commits.Add(1)
	return nil
}

// Abort discards the fill: it closes and removes the temp file and gives its budget back.
// After Commit it only closes the Writer's descriptor (the entry stays). Idempotent.
func (w *Writer) Abort() {
	w.cleanup.Stop()
	w.fl.abort()
	runtime.KeepAlive(w)
}

func (fl *fill) abort() {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	switch fl.state {
	case stateWriting, stateFailed:
		_ = fl.f.Close()
		if err := os.Remove(fl.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			fl.s.log.Error("remove temp file", "path", fl.tmp, "error", err)
		}
		fl.s.unreserve(fl.reserved)
		fl.reserved = 0
	case stateCommitted:
		_ = fl.f.Close()
		fl.s.unref(fl.e)
		fl.e = nil
	case stateDone:
		return
	}
	fl.state = stateDone
}

// abandon is the cleanup of a Writer dropped without Abort.
func (fl *fill) abandon() {
	fl.mu.Lock()
	leaked := fl.state != stateDone
	fl.mu.Unlock()
	if leaked {
		fl.s.log.Warn("disk tier writer dropped without Abort", "cache_key", fl.key)
		fl.abort()
	}
}

// readBody reads [off, off+len(p)) clipped to [0, end) from f, bounded by the store's read
// semaphore, with os.File.ReadAt's io.EOF semantics.
func readBody(s *Store, f *os.File, p []byte, off, end int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= end {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	clipped := false
	if rem := end - off; int64(len(p)) > rem {
		p = p[:rem]
		clipped = true
	}
	s.sem <- struct{}{}
	n, err := f.ReadAt(p, off)
	<-s.sem
	if err == nil && clipped {
		err = io.EOF
	}
	return n, err
}

// Reopen opens the fill's file a second time, with a file offset of its own, for a reader that
// sends the written bytes with sendfile while the fill goes on (read-while-write without a copy
// through user space). It works on Linux, through /proc/self/fd, which still names the file
// after Commit has renamed it; elsewhere it fails and callers read through ReadAt. The caller
// closes the file, and reads no further than Written.
func (w *Writer) Reopen() (*os.File, error) {
	fl := w.fl
	defer runtime.KeepAlive(w)
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("reopen %s: not supported on %s", fl.key, runtime.GOOS)
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.state == stateDone {
		return nil, fmt.Errorf("reopen %s: %w", fl.key, ErrClosed)
	}
	f, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(fl.f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", fl.key, err)
	}
	return f, nil
}
