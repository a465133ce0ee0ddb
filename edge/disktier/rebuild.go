package disktier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sync/errgroup"
)

// markerPrefix starts the marker file; the format version and the two hash seeds follow.
const markerPrefix = "duet-disktier"

// prepareDir creates Dir, reads or writes its marker, and creates tmp/ and the shard
// directories.
func (s *Store) prepareDir() error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	marker := filepath.Join(s.dir, markerName)
	b, err := os.ReadFile(marker)
	switch {
	case err == nil:
		if s.seed, err = parseMarker(string(b)); err != nil {
			return fmt.Errorf("marker %s: %w", marker, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		ents, err := os.ReadDir(s.dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.Name() != "lost+found" {
				return fmt.Errorf("directory is not empty and has no %s marker (found %q): refusing to use it", markerName, e.Name())
			}
		}
		s.seed = [2]uint64{rand.Uint64(), rand.Uint64()}
		tmp := marker + ".new"
		content := fmt.Sprintf("%s %d %016x %016x\n", markerPrefix, formatVersion, s.seed[0], s.seed[1])
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, marker); err != nil {
			return err
		}
	default:
		return err
	}
	if err := os.Mkdir(s.tmpDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	for i := range shards {
		if err := os.Mkdir(s.shardDir(i), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

func parseMarker(text string) (seed [2]uint64, err error) {
	f := strings.Fields(text)
	if len(f) != 4 || f[0] != markerPrefix {
		return seed, errors.New("not a disk tier marker")
	}
	if f[1] != strconv.Itoa(formatVersion) {
		return seed, fmt.Errorf("format version %s, this build reads %d", f[1], formatVersion)
	}
	for i := range seed {
		if seed[i], err = strconv.ParseUint(f[2+i], 16, 64); err != nil {
			return seed, fmt.Errorf("bad seed: %w", err)
		}
	}
	return seed, nil
}

func (s *Store) shardDir(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("%02x", i))
}

// loaded is an entry found by the start-up scan.
type loaded struct {
	e     *entry
	mtime int64
}

// load removes left-over temp files and scans the shard directories in parallel, reading each
// file's trailer and metadata but not its body, then builds the index. Entries join the CLOCK
// ring oldest (by modification time) first, so they are the first eviction candidates.
func (s *Store) load(ctx context.Context, workers int) error {
	start := time.Now()
	dropped := s.cleanTmp()
	s.rebuild.journal = s.readJournal()

	var (
		found   [shards][]loaded
		drops   [shards]int
		deleted [shards]int
		next    atomic.Int32
		g, gctx = errgroup.WithContext(ctx)
	)
	for range min(workers, shards) {
		g.Go(func() error {
			buf := make([]byte, 4096)
			for {
				i := int(next.Add(1)) - 1
				if i >= shards {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				var err error
				if found[i], drops[i], deleted[i], err = s.scanShard(i, buf); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("scan: %w", err)
	}

	n, nDeleted := 0, 0
	for i := range found {
		n += len(found[i])
		dropped += drops[i]
		nDeleted += deleted[i]
	}
	if s.rebuild.journal.found {
		// Applied: every file it names is gone (or was a later commit and stays).
		if err := os.Remove(s.jr.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("remove deletion journal", "path", s.jr.path, "error", err)
		}
		s.log.Info("deletion journal applied", "files_deleted", nDeleted)
	}
	s.rebuild.journal = journalReplay{}
	all := make([]loaded, 0, n)
	for i := range found {
		all = append(all, found[i]...)
	}
	slices.SortFunc(all, func(a, b loaded) int { return cmp.Compare(a.mtime, b.mtime) })
	s.mu.Lock()
	for _, l := range all {
		s.insertLocked(l.e)
		s.used += l.e.size
	}
	s.mu.Unlock()
	s.rebuild.files = len(all)
	s.rebuild.dropped = dropped
	s.rebuild.deleted = nDeleted
	s.rebuild.took = time.Since(start)
	return nil
}

// cleanTmp removes everything in tmp/: fills that a previous process did not finish.
func (s *Store) cleanTmp() int {
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		s.log.Error("read temp directory", "path", s.tmpDir, "error", err)
		return 0
	}
	for _, e := range ents {
		p := filepath.Join(s.tmpDir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			s.log.Error("remove stale temp file", "path", p, "error", err)
			continue
		}
		s.log.Info("removed stale temp file", "path", p)
	}
	return len(ents)
}

// scanShard loads the entries of shard directory i, removes the files that are not valid
// entries of that shard (dropped), and removes the files of entries deleted before the restart
// whose unlink had not run (deleted; see journal.go).
func (s *Store) scanShard(i int, buf []byte) (out []loaded, dropped, deleted int, err error) {
	dir := s.shardDir(i)
	d, err := os.Open(dir)
	if err != nil {
		return nil, 0, 0, err
	}
	ents, err := d.ReadDir(-1) // unsorted, unlike os.ReadDir
	_ = d.Close()
	if err != nil {
		return nil, 0, 0, err
	}
	out = make([]loaded, 0, len(ents))
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		h, ok := parseHashName(de.Name())
		if !ok || int(h[0]) != i || !de.Type().IsRegular() {
			s.dropFile(p, errors.New("not a cache file name"))
			dropped++
			continue
		}
		e, mtime, err := s.loadFile(p, h, buf)
		if err != nil {
			s.dropFile(p, err)
			dropped++
			continue
		}
		if s.rebuild.journal.matches(h, e.ino) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				// Not indexed, so not served by this process; a later restart would find it
				// again without a journal record. Nothing better to do.
				s.log.Error("remove deleted cache file", "path", p, "error", err)
			}
			deleted++
			continue
		}
		out = append(out, loaded{e: e, mtime: mtime})
	}
	return out, dropped, deleted, nil
}

func (s *Store) dropFile(p string, why error) {
	if err := os.RemoveAll(p); err != nil {
		s.log.Error("remove invalid cache file", "path", p, "reason", why.Error(), "error", err)
		return
	}
	s.log.Warn("removed invalid cache file", "path", p, "reason", why.Error())
}

// loadFile reads one file's trailer and metadata (one read for both when they fit in buf) and
// checks them against the file's length and name.
func (s *Store) loadFile(p string, h [16]byte, buf []byte) (*entry, int64, error) {
	f, size, mtime, ino, err := openFile(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if size < trailerSize {
		return nil, 0, fmt.Errorf("%w: file of %d bytes", errTrailer, size)
	}
	n := min(size, int64(len(buf)))
	if _, err := f.ReadAt(buf[:n], size-n); err != nil {
		return nil, 0, fmt.Errorf("read trailer: %w", err)
	}
	metaLen, sum, err := parseTrailer(buf[n-trailerSize : n])
	if err != nil {
		return nil, 0, err
	}
	if metaLen+trailerSize > size {
		return nil, 0, fmt.Errorf("%w: meta length %d in a file of %d bytes", errTrailer, metaLen, size)
	}
	var mb []byte
	if metaLen+trailerSize <= n {
		mb = buf[n-trailerSize-metaLen : n-trailerSize]
	} else {
		mb = make([]byte, metaLen)
		if _, err := f.ReadAt(mb, size-trailerSize-metaLen); err != nil {
			return nil, 0, fmt.Errorf("read meta: %w", err)
		}
	}
	if xxhash.Sum64(mb) != sum {
		return nil, 0, errors.New("meta checksum mismatch")
	}
	m, err := decodeMeta(mb)
	if err != nil {
		return nil, 0, err
	}
	if body := size - trailerSize - metaLen; m.Size != body {
		return nil, 0, fmt.Errorf("body is %d bytes, meta says %d", body, m.Size)
	}
	if s.hashKey(m.Key) != h {
		return nil, 0, errors.New("file name is not the hash of the stored key")
	}
	return &entry{key: m.Key, hash: h, ino: ino, meta: m, size: size}, mtime, nil
}
