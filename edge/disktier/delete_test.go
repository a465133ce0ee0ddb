package disktier

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duetcdn/duet/edge/object"
)

// --- helpers for DeleteMany and the background unlinker ---

// pauseUnlinker keeps the background unlinker off the queue (fills short of room still unlink
// queued files themselves, and Close still drains).
func (s *Store) pauseUnlinker() { s.ul.paused.Store(true) }

func (s *Store) resumeUnlinker() {
	s.ul.paused.Store(false)
	s.kickUnlinker()
}

// crash stops the unlinker without draining and closes the store, leaving the queued files and
// the deletion journal as kill -9 would.
func (s *Store) crash() {
	s.stopUnlinker(true)
	_ = s.Close()
}

// waitUnlinked waits until the unlinker has emptied its queue.
func waitUnlinked(t testing.TB, s *Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Stats().Unlinking != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unlinker not done: %+v", s.Stats())
		}
		time.Sleep(time.Millisecond) //nolint:forbidigo // poll interval inside a deadline
	}
}

func fileExists(t testing.TB, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func mustMiss(t testing.TB, s *Store, key string) {
	t.Helper()
	if _, ok := s.Get(key); ok {
		t.Fatalf("Get %s hit after DeleteMany", key)
	}
	if h, err := s.Open(key); !errors.Is(err, ErrNotFound) {
		if h != nil {
			_ = h.Close()
		}
		t.Fatalf("Open %s after DeleteMany: %v", key, err)
	}
}

// --- tests ---

func TestDeleteManyNilAndClosed(t *testing.T) {
	t.Parallel()
	var ns *Store
	if ns.DeleteMany([]string{"k"}) != 0 {
		t.Fatal("nil store deleted something")
	}
	s, _ := newStore(t, 1<<20)
	put(t, s, "k", body(100, 1), testMeta("k", 1))
	if s.DeleteMany(nil) != 0 {
		t.Fatal("DeleteMany(nil)")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.DeleteMany([]string{"k"}) != 0 {
		t.Fatal("DeleteMany after Close deleted something")
	}
}

// TestDeleteManyMissesAtOnce: the keys are gone from the index when DeleteMany returns, while
// their files (queued for the unlinker, which is paused here) still count against the budget;
// handles opened before keep reading; the unlinker then removes the files and the bytes.
func TestDeleteManyMissesAtOnce(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 64<<20)
	const n = 600
	bodies := map[string][]byte{}
	var keys []string
	for i := range n {
		k := fmt.Sprintf("/vod/show/%04d.ts", i)
		keys = append(keys, k)
		bodies[k] = body(1000+i*13, uint64(i))
		put(t, s, k, bodies[k], testMeta(k, i))
	}
	before := s.Bytes()
	held, err := s.Open(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	s.pauseUnlinker()

	// Every other key, a key twice, and keys that were never stored.
	var del []string
	var delBytes int64
	s.mu.RLock()
	for i := 0; i < n; i += 2 {
		del = append(del, keys[i])
		delBytes += s.byHash[s.hashKey(keys[i])].size
	}
	s.mu.RUnlock()
	del = append(del, keys[0], "/never/stored", "")
	if got := s.DeleteMany(del); got != n/2 {
		t.Fatalf("DeleteMany reported %d, want %d", got, n/2)
	}
	for i, k := range keys {
		if i%2 == 0 {
			mustMiss(t, s, k)
			if !fileExists(t, s.path(s.hashKey(k))) {
				t.Fatalf("%s: file unlinked while the unlinker is paused", k)
			}
		} else if !bytes.Equal(readAll(t, s, k), bodies[k]) {
			t.Fatalf("%s: body differs", k)
		}
	}
	var listed int
	s.Keys("", func(m object.Meta) bool {
		if i, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(m.Key, "/vod/show/"), ".ts")); i%2 == 0 {
			t.Errorf("Keys lists deleted %s", m.Key)
		}
		listed++
		return true
	})
	st := s.Stats()
	if listed != n/2 || st.Entries != n/2 || st.Bytes != before || st.Unlinking != n/2 || st.UnlinkingBytes != delBytes {
		t.Fatalf("after DeleteMany: listed %d, stats %+v (deleted %d bytes of %d)", listed, st, delBytes, before)
	}
	checkAccounting(t, s)
	if s.DeleteMany(del) != 0 {
		t.Fatal("second DeleteMany found entries")
	}

	s.resumeUnlinker()
	waitUnlinked(t, s)
	for i := 0; i < n; i += 2 {
		if fileExists(t, s.path(s.hashKey(keys[i]))) {
			t.Fatalf("%s: file left after the unlinker ran", keys[i])
		}
	}
	// The held file is unlinked but open: readable, and its bytes pinned until Close.
	got := make([]byte, len(bodies[keys[0]]))
	if _, err := held.ReadAt(got, 0); err != nil || !bytes.Equal(got, bodies[keys[0]]) {
		t.Fatalf("handle after unlink: %v", err)
	}
	if st := s.Stats(); st.PinnedBytes != s.byHashSize(t, held) || st.Bytes != before-delBytes+st.PinnedBytes {
		t.Fatalf("after unlink with one handle open: %+v", st)
	}
	_ = held.Close()
	st = s.Stats()
	if st.Bytes != before-delBytes || st.PinnedBytes != 0 || st.UnlinkingBytes != 0 {
		t.Fatalf("at rest: %+v", st)
	}
	checkAccounting(t, s)
	if files := isRegularIn(t, dir); len(files) != n/2 {
		t.Fatalf("%d files, want %d", len(files), n/2)
	}
	// The journal was emptied once the unlinker went idle.
	waitFor(t, func() bool { fi, err := os.Stat(filepath.Join(dir, journalName)); return err == nil && fi.Size() == 0 })
}

// byHashSize is the file size of the entry behind h.
func (s *Store) byHashSize(t testing.TB, h *Handle) int64 {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return h.e.size
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond) //nolint:forbidigo // poll interval inside a deadline
	}
}

// TestDeleteManyBudgetWhileQueued: with the budget full of deleted files still queued, fills
// get their room by unlinking queued files (not by evicting live entries, nor failing with
// ErrNoSpace), and neither the counted bytes nor the bytes in Dir ever pass MaxBytes.
func TestDeleteManyBudgetWhileQueued(t *testing.T) {
	t.Parallel()
	const maxBytes = 4 << 20 // objects up to 512 KiB
	var evictions atomic.Int32
	s := openStore(t, Config{Dir: t.TempDir(), MaxBytes: maxBytes, OnEvict: func(string) { evictions.Add(1) }})
	var old []string
	for i := 0; s.Bytes() < maxBytes-300<<10; i++ {
		k := fmt.Sprintf("/old/%03d", i)
		put(t, s, k, body(40_000+i*1000, uint64(i)), testMeta(k, i))
		old = append(old, k)
	}
	live := old[len(old)-3:]
	old = old[:len(old)-3]
	s.pauseUnlinker()
	if got := s.DeleteMany(old); got != len(old) {
		t.Fatalf("deleted %d of %d", got, len(old))
	}

	stop := make(chan struct{})
	var samples atomic.Int32
	var bg sync.WaitGroup
	var stopOnce sync.Once
	stopSampler := func() { stopOnce.Do(func() { close(stop) }); bg.Wait() }
	defer stopSampler() // also when the test fails early
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.stillDir(func() {
				disk, _ := diskBytes(t, s.dir)
				if b := s.Bytes(); disk > b || b > maxBytes {
					t.Errorf("sample: files %d, counted %d, max %d", disk, b, maxBytes)
				}
			})
			samples.Add(1)
			time.Sleep(100 * time.Microsecond) //nolint:forbidigo // sampling interval while the writers run
		}
	})
	// Two budgets' worth of new objects, the paused unlinker notwithstanding.
	var written int64
	for i := 0; written < 2*maxBytes; i++ {
		k := fmt.Sprintf("/new/%03d", i)
		b := body(100_000+i*3000, uint64(1000+i))
		put(t, s, k, b, testMeta(k, i))
		written += int64(len(b))
		if bb := s.Bytes(); bb > maxBytes {
			t.Fatalf("Bytes %d > %d", bb, maxBytes)
		}
		if s.Stats().Unlinking > 0 {
			// Room came from deleted files, not from the live entries.
			if evictions.Load() != 0 {
				t.Fatalf("fill %d: evictions %d while deleted files are queued, stats %+v", i, evictions.Load(), s.Stats())
			}
			for _, k := range live {
				if _, ok := s.Get(k); !ok {
					t.Fatalf("live %s evicted while deleted files are queued", k)
				}
			}
		}
	}
	stopSampler()
	st := s.Stats()
	t.Logf("samples %d, stats %+v", samples.Load(), st)
	if st.NoSpace != 0 {
		t.Fatalf("ErrNoSpace with deleted files queued: %+v", st)
	}
	if st.Unlinking != 0 {
		t.Fatalf("fills needing room left deleted files queued: %+v", st)
	}
	s.resumeUnlinker()
	waitUnlinked(t, s)
	checkAccounting(t, s)
	disk, files := diskBytes(t, s.dir)
	if st := s.Stats(); disk != st.Bytes || files != st.Entries || st.Bytes > maxBytes {
		t.Fatalf("after the queue drained: files %d (%d), stats %+v", disk, files, st)
	}
}

// TestDeleteManyWaitsForUnlinkerBeforeNoSpace: a fill short of room waits for a batch the
// unlinker is working on instead of failing with ErrNoSpace.
func TestDeleteManyFillNeverFailsWhileQueued(t *testing.T) {
	t.Parallel()
	const maxBytes = 1 << 20 // objects up to 128 KiB
	s, _ := newStore(t, maxBytes)
	for round := range 30 {
		var keys []string
		for i := 0; s.Bytes() < maxBytes-130<<10; i++ {
			k := fmt.Sprintf("/r%d/%03d", round, i)
			put(t, s, k, body(60_000, uint64(round*100+i)), testMeta(k, i))
			keys = append(keys, k)
		}
		s.DeleteMany(keys) // the unlinker races with the fills below
		for i := range 8 {
			k := fmt.Sprintf("/r%d/new%d", round, i)
			put(t, s, k, body(120_000, uint64(i)), testMeta(k, i))
		}
		if st := s.Stats(); st.NoSpace != 0 || st.Evictions != 0 || st.Bytes > maxBytes {
			t.Fatalf("round %d: %+v", round, st)
		}
		s.DeleteMany([]string{
			fmt.Sprintf("/r%d/new0", round), fmt.Sprintf("/r%d/new1", round), fmt.Sprintf("/r%d/new2", round),
			fmt.Sprintf("/r%d/new3", round), fmt.Sprintf("/r%d/new4", round), fmt.Sprintf("/r%d/new5", round),
			fmt.Sprintf("/r%d/new6", round), fmt.Sprintf("/r%d/new7", round),
		})
	}
	waitUnlinked(t, s)
	checkAccounting(t, s)
}

// TestDeleteManyThenRecommit: a key deleted and committed again before the unlinker reached its
// old file keeps the new file, while running and across a restart; also when the new version
// is deleted again, and again recommitted, before the unlinker runs.
func TestDeleteManyThenRecommit(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 16<<20)
	v := [][]byte{body(50_000, 1), body(30_000, 2), body(40_000, 3)}
	put(t, s, "k", v[0], testMeta("k", 0))
	put(t, s, "other", body(1000, 9), testMeta("other", 9))
	s.pauseUnlinker()
	if s.DeleteMany([]string{"k"}) != 1 {
		t.Fatal("k not deleted")
	}
	put(t, s, "k", v[1], testMeta("k", 1)) // renamed over v0's file
	if s.DeleteMany([]string{"k"}) != 1 {
		t.Fatal("k not deleted again")
	}
	mustMiss(t, s, "k")
	put(t, s, "k", v[2], testMeta("k", 2))
	if st := s.Stats(); st.Unlinking != 2 {
		t.Fatalf("queued: %+v", st)
	}
	s.resumeUnlinker()
	waitUnlinked(t, s)
	if !bytes.Equal(readAll(t, s, "k"), v[2]) {
		t.Fatal("new version lost or wrong after the unlinker ran")
	}
	checkAccounting(t, s)
	if files := isRegularIn(t, dir); len(files) != 2 {
		t.Fatalf("files: %v", files)
	}
	s = reopen(t, s, 16<<20)
	if !bytes.Equal(readAll(t, s, "k"), v[2]) || s.Len() != 2 {
		t.Fatal("new version lost after restart")
	}

	// The same, with a crash while the deletions are still queued: the journal names the
	// deleted versions by inode, so the version committed after them survives.
	s.pauseUnlinker()
	s.DeleteMany([]string{"k"})
	put(t, s, "k", v[0], testMeta("k", 3))
	s.DeleteMany([]string{"other"})
	s.crash()
	s = openStore(t, Config{Dir: dir, MaxBytes: 16 << 20})
	if !bytes.Equal(readAll(t, s, "k"), v[0]) || s.Len() != 1 {
		t.Fatalf("after crash: len %d", s.Len())
	}
	if _, ok := s.Get("other"); ok {
		t.Fatal("deleted entry resurrected")
	}
	if st := s.Stats(); st.RebuildDeleted != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestDeleteManyCrashDoesNotResurrect: the unlinker stopped without draining (as by a crash)
// leaves the deleted files in their shards; the restart drops them by the journal.
func TestDeleteManyCrashDoesNotResurrect(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 64<<20)
	const n = 400
	var keys []string
	bodies := map[string][]byte{}
	for i := range n {
		k := fmt.Sprintf("/live/%04d.ts", i)
		keys = append(keys, k)
		bodies[k] = body(500+i*7, uint64(i))
		put(t, s, k, bodies[k], testMeta(k, i))
	}
	s.pauseUnlinker()
	var del []string
	for i := 0; i < n; i += 3 {
		del = append(del, keys[i])
	}
	if s.DeleteMany(del) != len(del) {
		t.Fatal("DeleteMany count")
	}
	s.crash()
	for _, k := range del {
		if !fileExists(t, s.path(s.hashKey(k))) {
			t.Fatalf("%s unlinked: the simulated crash did not leave the file", k)
		}
	}

	s = openStore(t, Config{Dir: dir, MaxBytes: 64 << 20})
	st := s.Stats()
	if st.Entries != n-len(del) || st.RebuildDeleted != len(del) || st.RebuildDropped != 0 {
		t.Fatalf("after restart: %+v, want %d entries, %d deleted", st, n-len(del), len(del))
	}
	for i, k := range keys {
		if i%3 == 0 {
			mustMiss(t, s, k)
			if fileExists(t, s.path(s.hashKey(k))) {
				t.Fatalf("%s: file left after restart", k)
			}
		} else if !bytes.Equal(readAll(t, s, k), bodies[k]) {
			t.Fatalf("%s differs", k)
		}
	}
	if fileExists(t, filepath.Join(dir, journalName)) {
		t.Fatal("journal left after it was applied")
	}
	checkAccounting(t, s)
	// And once more: nothing else goes.
	s = reopen(t, s, 64<<20)
	if st := s.Stats(); st.Entries != n-len(del) || st.RebuildDeleted != 0 {
		t.Fatalf("second restart: %+v", st)
	}
}

const killChildEnv = "DISKTIER_KILL9_CHILD_DIR"

// TestDeleteManyKill9: a process killed with SIGKILL right after DeleteMany returned (its
// unlinker paused, so every deleted file is still in place) restarts without any deleted key.
func TestDeleteManyKill9(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeleteManyKill9$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	var line string
	for !strings.HasPrefix(line, "deleted ") {
		if line, err = r.ReadString('\n'); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child: %v (last line %q)", err, line)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var kept, deleted int
	if _, err := fmt.Sscanf(line, "deleted %d kept %d\n", &deleted, &kept); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}

	s := openStore(t, Config{Dir: dir, MaxBytes: 64 << 20})
	st := s.Stats()
	if st.Entries != kept || st.RebuildDeleted != deleted {
		t.Fatalf("after kill -9: %+v, want %d entries, %d deleted", st, kept, deleted)
	}
	for i := range kept + deleted {
		k := fmt.Sprintf("/k9/%04d", i)
		if i%2 == 0 {
			mustMiss(t, s, k)
		} else if !bytes.Equal(readAll(t, s, k), body(2000, uint64(i))) {
			t.Fatalf("%s differs", k)
		}
	}
}

// killChild fills a store, deletes half of it with the unlinker paused, says so and waits to
// be killed.
func killChild(dir string) {
	s, err := Open(context.Background(), Config{Dir: dir, MaxBytes: 64 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	const n = 500
	var del []string
	for i := range n {
		k := fmt.Sprintf("/k9/%04d", i)
		w, err := s.Create(k)
		if err == nil {
			_, err = w.Write(body(2000, uint64(i)))
		}
		if err == nil {
			err = w.Commit(testMeta(k, i))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		w.Abort()
		if i%2 == 0 {
			del = append(del, k)
		}
	}
	s.pauseUnlinker()
	got := s.DeleteMany(del)
	fmt.Printf("deleted %d kept %d\n", got, n-got)
	select {}
}

// TestCloseDrainsUnlinks: Close unlinks every queued file (even with the unlinker paused) and
// removes the journal.
func TestCloseDrainsUnlinks(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 16<<20)
	var keys []string
	for i := range 300 {
		k := fmt.Sprintf("k%d", i)
		keys = append(keys, k)
		put(t, s, k, body(3000, uint64(i)), testMeta(k, i))
	}
	s.pauseUnlinker()
	if s.DeleteMany(keys[:200]) != 200 || s.Stats().Unlinking != 200 {
		t.Fatalf("stats: %+v", s.Stats())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files := isRegularIn(t, dir); len(files) != 100 {
		t.Fatalf("%d files after Close, want 100", len(files))
	}
	if fileExists(t, filepath.Join(dir, journalName)) {
		t.Fatal("journal left after Close")
	}
	if st := s.Stats(); st.Unlinking != 0 || st.UnlinkingBytes != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	s = openStore(t, Config{Dir: dir, MaxBytes: 16 << 20})
	if st := s.Stats(); st.Entries != 100 || st.RebuildDeleted != 0 || st.RebuildDropped != 0 {
		t.Fatalf("after restart: %+v", st)
	}
	checkAccounting(t, s)
}

// TestDeleteManyWithoutJournal: when the journal cannot be written, DeleteMany unlinks before
// it returns.
func TestDeleteManyWithoutJournal(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 16<<20)
	for i := range 50 {
		k := fmt.Sprintf("k%d", i)
		put(t, s, k, body(3000, uint64(i)), testMeta(k, i))
	}
	// A directory where the journal should be: it cannot be opened for writing.
	if err := os.Mkdir(filepath.Join(dir, journalName), 0o755); err != nil {
		t.Fatal(err)
	}
	s.pauseUnlinker()
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	if s.DeleteMany(keys) != 30 {
		t.Fatal("count")
	}
	if st := s.Stats(); st.Unlinking != 0 || st.Entries != 20 {
		t.Fatalf("stats: %+v", st)
	}
	for _, k := range keys {
		mustMiss(t, s, k)
		if fileExists(t, s.path(s.hashKey(k))) {
			t.Fatalf("%s: file left", k)
		}
	}
	checkAccounting(t, s)
}

// TestJournalTornAndDamaged: a partial record at the journal's tail (a write cut by a crash) is
// ignored; a damaged whole record makes the scan drop every entry.
func TestJournalTornAndDamaged(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 16<<20)
	for i := range 10 {
		k := fmt.Sprintf("k%d", i)
		put(t, s, k, body(3000, uint64(i)), testMeta(k, i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	jp := filepath.Join(dir, journalName)
	ino := func(k string) uint64 {
		fi, err := os.Stat(s.path(s.hashKey(k)))
		if err != nil {
			t.Fatal(err)
		}
		return fileIno(fi)
	}
	// k0: deleted. k1: recorded with another inode (a later commit stays). Then a torn record
	// of k2.
	var j []byte
	j = appendJournalRecord(j, s.hashKey("k0"), ino("k0"))
	j = appendJournalRecord(j, s.hashKey("k1"), ino("k1")+1)
	j = append(j, appendJournalRecord(nil, s.hashKey("k2"), ino("k2"))[:20]...)
	if err := os.WriteFile(jp, j, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir, MaxBytes: 16 << 20})
	if st := s.Stats(); st.Entries != 9 || st.RebuildDeleted != 1 {
		t.Fatalf("torn journal: %+v", st)
	}
	mustMiss(t, s, "k0")
	for _, k := range []string{"k1", "k2"} {
		if _, ok := s.Get(k); !ok {
			t.Fatalf("%s lost", k)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A flipped bit in a whole record: which entry it named is unknown, so none is kept.
	j = appendJournalRecord(nil, s.hashKey("k3"), ino("k3"))
	j[5] ^= 1
	j = appendJournalRecord(j, s.hashKey("k4"), ino("k4"))
	if err := os.WriteFile(jp, j, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir, MaxBytes: 16 << 20})
	if st := s.Stats(); st.Entries != 0 || st.RebuildDeleted != 9 {
		t.Fatalf("damaged journal: %+v", st)
	}
	if files := isRegularIn(t, dir); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

// TestDeleteManyConcurrent runs fills, reads, UpdateMeta, Delete and DeleteMany over a small
// key space with the budget tight, sampling the budget, then checks the accounting at rest and
// that a restart finds exactly the entries that were indexed.
func TestDeleteManyConcurrent(t *testing.T) {
	t.Parallel()
	const maxBytes = 2 << 20
	s, _ := newStore(t, maxBytes)
	const workers, rounds, keys = 6, 300, 40
	var wg sync.WaitGroup
	var nerr atomic.Int32
	fail := func(err error) {
		if nerr.Add(1) <= 10 {
			t.Error(err)
		}
	}
	for g := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 5))
			for i := range rounds {
				key := fmt.Sprintf("/hot/%02d", r.IntN(keys))
				switch op := r.IntN(10); {
				case op < 4:
					w, err := s.Create(key)
					if err != nil {
						fail(err)
						return
					}
					b := body(r.IntN(100_000), uint64(g*rounds+i))
					if _, err := w.Write(b); err == nil {
						if err := w.Commit(testMeta(key, i)); err != nil && !errors.Is(err, ErrNoSpace) {
							fail(err)
						}
					} else if !errors.Is(err, ErrNoSpace) {
						fail(err)
					}
					w.Abort()
				case op < 6:
					h, err := s.Open(key)
					if errors.Is(err, ErrNotFound) {
						continue
					}
					if err != nil {
						fail(fmt.Errorf("Open %s: %w", key, err))
						continue
					}
					b := make([]byte, h.Meta.Size)
					if n, err := h.ReadAt(b, 0); int64(n) != h.Meta.Size || (err != nil && err != io.EOF) {
						fail(fmt.Errorf("read %s: %d of %d, %v", key, n, h.Meta.Size, err))
					}
					time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond) //nolint:forbidigo // hold it a little
					_ = h.Close()
				case op < 7:
					m := testMeta(key, i)
					m.Header = append(m.Header, object.Field{Name: "X-Pad", Value: strings.Repeat("p", r.IntN(2000))})
					if err := s.UpdateMeta(key, m); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNoSpace) {
						fail(err)
					}
				case op < 8:
					s.Delete(key)
				default:
					var batch []string
					for range 1 + r.IntN(8) {
						batch = append(batch, fmt.Sprintf("/hot/%02d", r.IntN(keys)))
					}
					s.DeleteMany(batch)
				}
				if b := s.Bytes(); b > maxBytes {
					fail(fmt.Errorf("Bytes %d > %d", b, maxBytes))
				}
			}
		})
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.stillDir(func() {
				disk, _ := diskBytes(t, s.dir)
				if b := s.Bytes(); disk > b || b > maxBytes {
					fail(fmt.Errorf("sample: files %d, counted %d, max %d", disk, b, maxBytes))
				}
			})
			time.Sleep(200 * time.Microsecond) //nolint:forbidigo // sampling interval while the writers run
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	waitUnlinked(t, s)
	checkAccounting(t, s)
	st := s.Stats()
	if st.ReservedBytes != 0 || st.PinnedBytes != 0 || st.Corrupt != 0 {
		t.Fatalf("stats at rest: %+v", st)
	}
	before := map[string]object.Meta{}
	s.Keys("", func(m object.Meta) bool { before[m.Key] = m; return true })
	s = reopen(t, s, maxBytes)
	if st := s.Stats(); s.Len() != len(before) || st.RebuildDropped != 0 || st.RebuildDeleted != 0 {
		t.Fatalf("after restart: %d entries, want %d; %+v", s.Len(), len(before), st)
	}
	for k, want := range before {
		if got, ok := s.Get(k); !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s after restart: %#v", k, got)
		}
		readAll(t, s, k)
	}
}

// BenchmarkDeleteMany100k: the disk tier's part of a purge of 100,000 small entries.
func BenchmarkDeleteMany100k(b *testing.B) {
	const n = 100_000
	s, _ := newStore(b, 1<<30)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "/bench/" + strconv.Itoa(i) + ".ts"
	}
	payload := make([]byte, 16)
	for b.Loop() {
		b.StopTimer()
		waitUnlinked(b, s)
		for i, k := range keys {
			binary.LittleEndian.PutUint64(payload, uint64(i))
			w, err := s.Create(k)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = w.Write(payload)
			if err := w.Commit(object.Meta{Key: k, Status: 200}); err != nil {
				b.Fatal(err)
			}
			w.Abort()
		}
		b.StartTimer()
		if got := s.DeleteMany(keys); got != n {
			b.Fatalf("deleted %d", got)
		}
	}
}
