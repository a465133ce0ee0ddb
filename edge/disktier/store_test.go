package disktier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/duetcdn/duet/edge/object"
)

// --- helpers ---

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newStore(t testing.TB, maxBytes int64) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	return openStore(t, Config{Dir: dir, MaxBytes: maxBytes}), dir
}

func reopen(t testing.TB, s *Store, maxBytes int64) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openStore(t, Config{Dir: s.dir, MaxBytes: maxBytes})
}

func testMeta(key string, i int) object.Meta {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6+i, time.UTC)
	return object.Meta{
		Key:    key,
		Status: 200,
		Header: []object.Field{
			{Name: "Content-Type", Value: "video/mp2t"},
			{Name: "Cache-Control", Value: fmt.Sprintf("max-age=%d", i)},
		},
		ETag:         fmt.Sprintf(`"etag-%d"`, i),
		LastModified: at.Add(-time.Hour),
		RequestTime:  at,
		ResponseTime: at.Add(time.Millisecond),
		FreshFor:     time.Duration(i) * time.Second,
		Tags:         []string{"stream-1", fmt.Sprintf("seg-%d", i)},
	}
}

func body(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// put commits one object, writing it in chunks, and returns its indexed Meta.
func put(t testing.TB, s *Store, key string, b []byte, m object.Meta) object.Meta {
	t.Helper()
	w, err := s.Create(key)
	if err != nil {
		t.Fatalf("Create %s: %v", key, err)
	}
	defer w.Abort()
	for rest := b; len(rest) > 0; {
		n := min(len(rest), 7919)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatalf("Write %s: %v", key, err)
		}
		rest = rest[n:]
	}
	if err := w.Commit(m); err != nil {
		t.Fatalf("Commit %s: %v", key, err)
	}
	// Not Get: that would count as an access.
	s.mu.RLock()
	e := s.byHash[s.hashKey(key)]
	s.mu.RUnlock()
	if e == nil || e.key != key {
		t.Fatalf("%s not indexed after Commit", key)
	}
	return e.meta
}

func readAll(t testing.TB, s *Store, key string) []byte {
	t.Helper()
	h, err := s.Open(key)
	if err != nil {
		t.Fatalf("Open %s: %v", key, err)
	}
	defer h.Close()
	b := make([]byte, h.Meta.Size)
	if n, err := h.ReadAt(b, 0); n != len(b) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt %s: %d, %v", key, n, err)
	}
	return b
}

// diskBytes is the sum of the sizes of the files the budget covers (tmp/ and the shards).
// Shards are walked before tmp/, so a file renamed out of tmp/ during the walk is not counted
// twice; callers that need an exact figure hold the store still (stillDir).
func diskBytes(t testing.TB, dir string) (sum int64, files int) {
	t.Helper()
	var dirs []string
	for i := range shards {
		dirs = append(dirs, filepath.Join(dir, fmt.Sprintf("%02x", i)))
	}
	dirs = append(dirs, filepath.Join(dir, tmpDirName))
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatalf("read %s: %v", d, err)
		}
		for _, e := range ents {
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			sum += fi.Size()
			files++
		}
	}
	return sum, files
}

// stillDir runs fn while no operation can add, rename or remove files in Dir.
func (s *Store) stillDir(fn func()) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	fn()
}

func checkAccounting(t testing.TB, s *Store) {
	t.Helper()
	s.stillDir(func() {
		disk, _ := diskBytes(t, s.dir)
		st := s.Stats()
		if st.Bytes > st.MaxBytes {
			t.Errorf("Bytes %d > MaxBytes %d", st.Bytes, st.MaxBytes)
		}
		if disk > st.Bytes {
			t.Errorf("files in Dir take %d bytes, more than the %d counted", disk, st.Bytes)
		}
		if st.ReservedBytes == 0 && st.PinnedBytes == 0 && st.Unlinking == 0 && disk != st.Bytes {
			t.Errorf("at rest: files take %d bytes, counted %d", disk, st.Bytes)
		}
	})
}

func isRegularIn(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != markerName && d.Name() != journalName {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// --- tests ---

func TestConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, cfg := range []Config{
		{MaxBytes: 1 << 20},
		{Dir: t.TempDir()},
		{Dir: t.TempDir(), MaxBytes: -1},
		{Dir: t.TempDir(), MaxBytes: 1 << 20, MaxConcurrentReads: -1},
	} {
		if s, err := Open(ctx, cfg); err == nil {
			_ = s.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}

	// A non-empty directory that is not a disk tier is refused, and left alone.
	dir := t.TempDir()
	precious := filepath.Join(dir, "ab", "precious")
	if err := os.MkdirAll(filepath.Dir(precious), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(precious, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, Config{Dir: dir, MaxBytes: 1 << 20}); err == nil {
		_ = s.Close()
		t.Fatal("Open accepted a foreign non-empty directory")
	}
	if _, err := os.Stat(precious); err != nil {
		t.Fatalf("foreign file touched: %v", err)
	}

	// A marker of another format version is refused.
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, markerName), []byte("duet-disktier 99 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, Config{Dir: dir, MaxBytes: 1 << 20}); err == nil {
		_ = s.Close()
		t.Fatal("Open accepted another format version")
	}
}

func TestNilAndClosed(t *testing.T) {
	t.Parallel()
	var ns *Store
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := ns.Get("k"); ok || ns.Len() != 0 || ns.Bytes() != 0 || ns.Delete("k") {
		t.Fatal("nil store not empty")
	}
	if _, err := ns.Open("k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("nil Open: %v", err)
	}
	var nh *Handle
	if err := nh.Close(); err != nil {
		t.Fatal(err)
	}

	s, _ := newStore(t, 1<<20)
	b := body(5000, 1)
	put(t, s, "k", b, testMeta("k", 1))
	h, err := s.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	w, err := s.Create("k2")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, ok := s.Get("k"); ok {
		t.Fatal("Get after Close hit")
	}
	if _, err := s.Open("k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := s.Create("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Create after Close: %v", err)
	}
	if _, err := w.Write([]byte("d")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := w.Commit(object.Meta{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
	if err := s.UpdateMeta("k", testMeta("k", 2)); !errors.Is(err, ErrClosed) {
		t.Fatalf("UpdateMeta after Close: %v", err)
	}
	if s.Delete("k") {
		t.Fatal("Delete after Close succeeded")
	}
	// Open handles stay readable.
	got := make([]byte, len(b))
	if _, err := h.ReadAt(got, 0); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("Handle after Close: %v", err)
	}
}

func TestWriteReadCommit(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 8<<20)
	b := body(300_000, 2)

	w, err := s.Create("/vod/a/seg1.ts")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()

	// A reader follows the writer: after each chunk it reads everything written so far.
	chunks := make(chan int64)
	acks := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		var off int64
		buf := make([]byte, 10_000)
		for end := range chunks {
			for off < end {
				n, err := w.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
				if err != nil && err != io.EOF {
					readErr <- err
					return
				}
				if !bytes.Equal(buf[:n], b[off:off+int64(n)]) {
					readErr <- fmt.Errorf("bytes at %d differ", off)
					return
				}
				off += int64(n)
			}
			// Reading past what is written: the bytes there are, then io.EOF.
			if n, err := w.ReadAt(buf, off-1); n != 1 || err != io.EOF {
				readErr <- fmt.Errorf("ReadAt past the end: %d, %v", n, err)
				return
			}
			acks <- struct{}{}
		}
		readErr <- nil
	}()
	for rest := b; len(rest) > 0; {
		n := min(len(rest), 65536)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		chunks <- w.Written()
		select { // the writer waits, so the reader sees exactly what was written
		case <-acks:
		case err := <-readErr:
			t.Fatalf("reader: %v", err)
		}
	}
	close(chunks)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if w.Written() != int64(len(b)) {
		t.Fatalf("Written = %d", w.Written())
	}
	if _, ok := s.Get("/vod/a/seg1.ts"); ok {
		t.Fatal("visible before Commit")
	}

	m := testMeta("ignored", 7)
	m.Size, m.Checksum = 1, 2 // ignored
	if err := w.Commit(m); err != nil {
		t.Fatal(err)
	}
	want := m
	want.Key, want.Size, want.Checksum = "/vod/a/seg1.ts", int64(len(b)), xxhash.Sum64(b)
	got, ok := s.Get("/vod/a/seg1.ts")
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Get after Commit:\n got %#v\nwant %#v", got, want)
	}
	if err := w.Commit(m); err == nil {
		t.Fatal("second Commit succeeded")
	}

	// The Writer still reads the body (and only the body) after Commit.
	tail := make([]byte, 100)
	if n, err := w.ReadAt(tail, int64(len(b))-10); n != 10 || err != io.EOF || !bytes.Equal(tail[:10], b[len(b)-10:]) {
		t.Fatalf("ReadAt after Commit: %d, %v", n, err)
	}

	h, err := s.Open("/vod/a/seg1.ts")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.Meta, want) {
		t.Fatalf("Handle.Meta = %#v", h.Meta)
	}
	whole := make([]byte, len(b)+50)
	if n, err := h.ReadAt(whole, 0); n != len(b) || err != io.EOF || !bytes.Equal(whole[:n], b) {
		t.Fatalf("Handle.ReadAt: %d, %v", n, err)
	}
	fromFile, err := io.ReadAll(io.NewSectionReader(h.File(), 0, h.Meta.Size))
	if err != nil || !bytes.Equal(fromFile, b) {
		t.Fatalf("File(): %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal("second Close:", err)
	}

	// Abort after Commit only releases the Writer.
	w.Abort()
	w.Abort()
	if _, err := w.ReadAt(tail, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAt after Abort: %v", err)
	}
	if !bytes.Equal(readAll(t, s, "/vod/a/seg1.ts"), b) {
		t.Fatal("entry changed by Abort after Commit")
	}

	// An empty body is an object too.
	put(t, s, "empty", nil, testMeta("empty", 0))
	if got := readAll(t, s, "empty"); len(got) != 0 {
		t.Fatal("empty body")
	}
	if files := isRegularIn(t, dir); len(files) != 2 {
		t.Fatalf("files: %v", files)
	}
	checkAccounting(t, s)
}

func TestAbort(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 8<<20)
	put(t, s, "keep", body(1000, 1), testMeta("keep", 1))
	before := s.Bytes()

	w, err := s.Create("gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body(100_000, 3)); err != nil {
		t.Fatal(err)
	}
	if s.Bytes() <= before {
		t.Fatal("in-flight bytes not counted")
	}
	w.Abort()
	w.Abort()
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Abort: %v", err)
	}
	if err := w.Commit(object.Meta{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Abort: %v", err)
	}
	if _, ok := s.Get("gone"); ok {
		t.Fatal("aborted fill visible")
	}
	if s.Bytes() != before {
		t.Fatalf("Bytes %d after Abort, want %d", s.Bytes(), before)
	}
	if files := isRegularIn(t, dir); len(files) != 1 {
		t.Fatalf("files after Abort: %v", files)
	}
	checkAccounting(t, s)
}

func TestLeakedWriterIsCleanedUp(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 8<<20)
	func() {
		w, err := s.Create("leak")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body(10_000, 1)); err != nil {
			t.Fatal(err)
		}
	}()
	for i := 0; i < 1000 && s.Bytes() != 0; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if s.Bytes() != 0 {
		t.Fatalf("leaked Writer still holds %d bytes", s.Bytes())
	}
	// The cleanup removes the file before it gives the bytes back.
	if files := isRegularIn(t, dir); len(files) != 0 {
		t.Fatalf("files: %v", files)
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 64<<20)
	const n = 300
	metas := map[string]object.Meta{}
	bodies := map[string][]byte{}
	for i := range n {
		key := fmt.Sprintf("/live/ch%d/seg-%05d.ts", i%7, i)
		b := body(i*97%20000, uint64(i))
		m := testMeta(key, i)
		if i%5 == 0 { // large metadata: more than the 4 KiB read at start-up
			for j := range 200 {
				m.Header = append(m.Header, object.Field{Name: fmt.Sprintf("X-H%d", j), Value: strings.Repeat("v", 30)})
			}
		}
		metas[key] = put(t, s, key, b, m)
		bodies[key] = b
	}
	bytesBefore := s.Bytes()

	s = reopen(t, s, 64<<20)
	st := s.Stats()
	if s.Len() != n || st.RebuildFiles != n || st.RebuildDropped != 0 || s.Bytes() != bytesBefore {
		t.Fatalf("after restart: len %d, stats %+v, bytes %d want %d", s.Len(), st, s.Bytes(), bytesBefore)
	}
	for key, want := range metas {
		got, ok := s.Get(key)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("Get %s after restart:\n got %#v\nwant %#v", key, got, want)
		}
	}
	if st := s.Stats(); st.Verified != 0 {
		t.Fatal("bodies read before any Open")
	}
	for key, b := range bodies {
		if !bytes.Equal(readAll(t, s, key), b) {
			t.Fatalf("body of %s differs", key)
		}
	}
	if st := s.Stats(); st.Verified != n || st.Corrupt != 0 {
		t.Fatalf("stats: %+v", st)
	}
	checkAccounting(t, s)
}

func TestCorruptBodyDetectedOnFirstOpen(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 8<<20)
	put(t, s, "bad", body(50_000, 1), testMeta("bad", 1))
	put(t, s, "good", body(50_000, 2), testMeta("good", 2))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	p := s.path(s.hashKey("bad"))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	_, _ = f.ReadAt(one[:], 12345)
	one[0] ^= 0x40
	if _, err := f.WriteAt(one[:], 12345); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	s = openStore(t, Config{Dir: s.dir, MaxBytes: 8 << 20})
	// The start-up scan reads metadata only, so the entry is there...
	if _, ok := s.Get("bad"); !ok {
		t.Fatal("entry dropped at start-up: the scan read the body?")
	}
	// ...until its first Open checks the body.
	if _, err := s.Open("bad"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a flipped body: %v", err)
	}
	if _, ok := s.Get("bad"); ok {
		t.Fatal("corrupt entry still indexed")
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("corrupt file still there: %v", err)
	}
	if _, err := s.Open("bad"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Open: %v", err)
	}
	readAll(t, s, "good")
	if st := s.Stats(); st.Corrupt != 1 || st.Entries != 1 {
		t.Fatalf("stats: %+v", st)
	}
	checkAccounting(t, s)
}

func TestTruncatedWhileRunning(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 8<<20)
	put(t, s, "t", body(50_000, 1), testMeta("t", 1))
	put(t, s, "v", body(50_000, 1), testMeta("v", 1))
	if err := os.Truncate(s.path(s.hashKey("t")), 30_000); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("t"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a truncated file: %v", err)
	}
	if _, ok := s.Get("t"); ok {
		t.Fatal("truncated entry still indexed")
	}
	if err := os.Remove(s.path(s.hashKey("v"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("v"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a vanished file: %v", err)
	}
	if s.Len() != 0 || s.Bytes() != 0 {
		t.Fatalf("len %d bytes %d", s.Len(), s.Bytes())
	}
	checkAccounting(t, s)
}

func TestStartupDropsInvalidFiles(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 8<<20)
	good := map[string][]byte{}
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		good[key] = body(3000+i, uint64(i))
		put(t, s, key, good[key], testMeta(key, i))
	}
	victims := []string{"trunc", "shifted", "badsum", "badmagic", "copied"}
	for i, k := range victims {
		put(t, s, k, body(20_000, uint64(100+i)), testMeta(k, i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	pathOf := func(k string) string { return s.path(s.hashKey(k)) }
	rewrite := func(k string, f func([]byte) []byte) {
		b, err := os.ReadFile(pathOf(k))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pathOf(k), f(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Cut short: the trailer is gone.
	rewrite("trunc", func(b []byte) []byte { return b[:len(b)-7] })
	// One body byte missing: trailer and meta intact, length wrong.
	rewrite("shifted", func(b []byte) []byte { return b[1:] })
	// A meta byte flipped: meta checksum mismatch.
	rewrite("badsum", func(b []byte) []byte { b[len(b)-trailerSize-3] ^= 1; return b })
	// Not our file format.
	rewrite("badmagic", func(b []byte) []byte { b[len(b)-5] ^= 1; return b })
	// A valid file under a name that is not its key's hash.
	cb, _ := os.ReadFile(pathOf("copied"))
	_ = os.Remove(pathOf("copied"))
	h := s.hashKey("copied")
	h[15] ^= 1
	if err := os.WriteFile(s.path(h), cb, 0o644); err != nil {
		t.Fatal(err)
	}
	// Garbage: a stray name, a hash name in the wrong shard, random bytes, a directory, temp files.
	junk := map[string][]byte{
		filepath.Join(dir, "ab", "garbage"):                                    []byte("hello"),
		filepath.Join(dir, "00", "ff000000000000000000000000000000"):           body(100, 1),
		filepath.Join(dir, "7f", "7f0123456789abcdef0123456789abcd"):           body(5000, 2),
		filepath.Join(dir, "7f", "7f0123456789abcdef0123456789abce"):           nil,
		filepath.Join(dir, tmpDirName, "fill-123"):                             body(7000, 3),
		filepath.Join(dir, tmpDirName, "fill-456"):                             nil,
		filepath.Join(dir, "c3", "subdir", "c30123456789abcdef0123456789abcd"): []byte("x"),
	}
	for p, b := range junk {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s = openStore(t, Config{Dir: dir, MaxBytes: 8 << 20})
	st := s.Stats()
	if st.Entries != len(good) || st.RebuildFiles != len(good) {
		t.Fatalf("stats after start-up: %+v", st)
	}
	if want := len(victims) + len(junk); st.RebuildDropped != want {
		t.Fatalf("dropped %d files, want %d", st.RebuildDropped, want)
	}
	for k, b := range good {
		if !bytes.Equal(readAll(t, s, k), b) {
			t.Fatalf("%s differs", k)
		}
	}
	for _, k := range victims {
		if _, ok := s.Get(k); ok {
			t.Fatalf("%s survived", k)
		}
	}
	if files := isRegularIn(t, dir); len(files) != len(good) {
		t.Fatalf("%d files left, want %d: %v", len(files), len(good), files)
	}
	if _, err := os.Stat(filepath.Join(dir, "c3", "subdir")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("directory in a shard not removed")
	}
	checkAccounting(t, s)
}

func TestUpdateMeta(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 8<<20)
	b := body(40_000, 5)
	orig := put(t, s, "k", b, testMeta("k", 1))
	h, err := s.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	// Grow the metadata (a 304 merged headers, a soft purge set a flag).
	m := testMeta("k", 2)
	for i := range 100 {
		m.Header = append(m.Header, object.Field{Name: fmt.Sprintf("X-%d", i), Value: "merged"})
	}
	m.Flags = object.SoftPurged
	m.Size, m.Checksum = 7, 7 // ignored
	if err := s.UpdateMeta("k", m); err != nil {
		t.Fatal(err)
	}
	want := m
	want.Size, want.Checksum = orig.Size, orig.Checksum
	if got, _ := s.Get("k"); !reflect.DeepEqual(got, want) {
		t.Fatalf("Get after UpdateMeta:\n got %#v\nwant %#v", got, want)
	}
	// The open handle still reads the body.
	got := make([]byte, len(b))
	if _, err := h.ReadAt(got, 0); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("body through an open handle: %v", err)
	}
	checkAccounting(t, s)

	// Shrink it again.
	small := testMeta("k", 3)
	if err := s.UpdateMeta("k", small); err != nil {
		t.Fatal(err)
	}
	small.Size, small.Checksum = orig.Size, orig.Checksum
	checkAccounting(t, s)
	if err := s.UpdateMeta("nope", small); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateMeta of a missing key: %v", err)
	}

	_ = h.Close()
	s = reopen(t, s, 8<<20)
	if got, _ := s.Get("k"); !reflect.DeepEqual(got, small) {
		t.Fatalf("after restart:\n got %#v\nwant %#v", got, small)
	}
	if !bytes.Equal(readAll(t, s, "k"), b) { // verified against the kept checksum
		t.Fatal("body changed")
	}
	checkAccounting(t, s)
}

func TestReplaceAndDeleteWhileOpen(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 8<<20)
	v1, v2 := body(100_000, 1), body(30_000, 2)
	put(t, s, "k", v1, testMeta("k", 1))
	h1, err := s.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	oldSize := s.Bytes()
	put(t, s, "k", v2, testMeta("k", 2))
	if s.Len() != 1 {
		t.Fatalf("Len %d", s.Len())
	}
	// The old file is unlinked but still open: its bytes still count.
	if st := s.Stats(); st.PinnedBytes != oldSize || st.Bytes <= oldSize {
		t.Fatalf("replaced open entry not pinned (old file %d bytes): %+v", oldSize, st)
	}
	got := make([]byte, len(v1))
	if _, err := h1.ReadAt(got, 0); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("old handle after replace: %v", err)
	}
	if !bytes.Equal(readAll(t, s, "k"), v2) {
		t.Fatal("new version not served")
	}
	h2, err := s.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Delete("k") || s.Delete("k") {
		t.Fatal("Delete results")
	}
	got = make([]byte, len(v2))
	if _, err := h2.ReadAt(got, 0); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("handle after Delete: %v", err)
	}
	if files := isRegularIn(t, dir); len(files) != 0 {
		t.Fatalf("files: %v", files)
	}
	if s.Bytes() == 0 {
		t.Fatal("open deleted files not counted")
	}
	_ = h1.Close()
	_ = h2.Close()
	if st := s.Stats(); st.Bytes != 0 || st.PinnedBytes != 0 {
		t.Fatalf("after closing: %+v", st)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 64<<20)
	var all, under []string
	for i := range 200 {
		k := fmt.Sprintf("/vod/a/%03d.ts", i)
		all, under = append(all, k), append(under, k)
	}
	all = append(all, "/vod/a", "/vod/a0", "/vod/b/1.ts", "/vod/", "/live/x", "/vod/a/\x00v\x00gzip")
	under = append(under, "/vod/a/\x00v\x00gzip")
	for i, k := range all {
		put(t, s, k, body(i%50, uint64(i)), testMeta(k, i))
	}
	slices.Sort(all)
	slices.Sort(under)

	visit := func(prefix string, limit int) []string {
		var got []string
		s.Keys(prefix, func(m object.Meta) bool {
			got = append(got, m.Key)
			return len(got) < limit
		})
		return got
	}
	if got := visit("/vod/a/", 1<<30); !slices.Equal(got, under) {
		t.Fatalf("Keys(/vod/a/):\n got %q\nwant %q", got, under)
	}
	if got := visit("", 1<<30); !slices.Equal(got, all) {
		t.Fatalf("Keys(\"\") = %q", got)
	}
	if got := visit("/vod/a/", 70); !slices.Equal(got, under[:70]) {
		t.Fatalf("early stop: %q", got)
	}
	if got := visit("/nope", 1<<30); len(got) != 0 {
		t.Fatalf("Keys(/nope) = %q", got)
	}
	// A purge deletes from inside the visit.
	s.Keys("/vod/a/", func(m object.Meta) bool {
		if !s.Delete(m.Key) {
			t.Errorf("Delete %s failed", m.Key)
		}
		return true
	})
	if got := visit("", 1<<30); len(got) != len(all)-len(under) {
		t.Fatalf("after purge: %q", got)
	}
	checkAccounting(t, s)
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t, 1<<20) // largest file: 128 KiB
	w, err := s.Create("big")
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for i := 0; i < 10 && werr == nil; i++ {
		_, werr = w.Write(make([]byte, 32<<10))
	}
	if !errors.Is(werr, ErrTooLarge) {
		t.Fatalf("Write past the limit: %v", werr)
	}
	if err := w.Commit(testMeta("big", 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit: %v", err)
	}
	w.Abort()

	// A body under the limit whose metadata pushes the file over it.
	w, err = s.Create("big2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, s.maxObject-trailerSize-10)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(testMeta("big2", 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit with large meta: %v", err)
	}
	w.Abort()
	if s.Len() != 0 || s.Bytes() != 0 || len(isRegularIn(t, dir)) != 0 || s.Stats().TooLarge != 2 {
		t.Fatalf("after refusals: %+v", s.Stats())
	}
}

func TestNoSpace(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 1<<20) // largest file 128 KiB, reservation step 32 KiB
	// Eight fills in flight take the whole budget.
	var ws []*Writer
	for i := range 8 {
		w, err := s.Create(fmt.Sprintf("f%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(make([]byte, 120<<10)); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	if s.Bytes() != 1<<20 {
		t.Fatalf("Bytes %d", s.Bytes())
	}
	w, err := s.Create("late")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Write with no room: %v", err)
	}
	// The bytes written before stay readable until Abort.
	w.Abort()

	// Committed but still open Writers (readers following) cannot be evicted either.
	for _, w := range ws {
		if err := w.Commit(testMeta("x", 1)); err != nil {
			t.Fatal(err)
		}
	}
	w, _ = s.Create("late2")
	var werr error
	for i := 0; i < 16 && werr == nil; i++ {
		_, werr = w.Write(make([]byte, 8<<10))
	}
	if !errors.Is(werr, ErrNoSpace) || s.Len() != 8 {
		t.Fatalf("Write with every entry in use: %v, %d entries", werr, s.Len())
	}
	w.Abort()
	// Once released, they can.
	for _, w := range ws {
		w.Abort()
	}
	var evicted atomic.Int32
	s.onEvict = func(string) { evicted.Add(1) }
	put(t, s, "late3", make([]byte, 100<<10), testMeta("late3", 1))
	if evicted.Load() == 0 || s.Stats().NoSpace != 2 {
		t.Fatalf("evicted %d, stats %+v", evicted.Load(), s.Stats())
	}
	checkAccounting(t, s)
}

func TestStartupEvictsToBudgetOldestFirst(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 4<<20)
	var keys []string
	base := time.Now().Add(-time.Hour)
	for i := range 20 {
		k := fmt.Sprintf("k%02d", i)
		keys = append(keys, k)
		put(t, s, k, body(50_000, uint64(i)), testMeta(k, i))
		mt := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(s.path(s.hashKey(k)), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var evicted []string
	s = openStore(t, Config{Dir: s.dir, MaxBytes: 500_000, OnEvict: func(k string) {
		mu.Lock()
		evicted = append(evicted, k)
		mu.Unlock()
	}})
	if s.Bytes() > 500_000 || s.Len() == 0 || s.Len()+len(evicted) != 20 {
		t.Fatalf("len %d bytes %d evicted %v", s.Len(), s.Bytes(), evicted)
	}
	slices.Sort(evicted)
	if !slices.Equal(evicted, keys[:len(evicted)]) {
		t.Fatalf("evicted %v, want the oldest", evicted)
	}
	checkAccounting(t, s)
}

func TestClockKeepsAccessedEntries(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 1<<20)
	// Fill up with 10 entries, touch the first five, add five more: the untouched go first.
	for i := range 10 {
		k := fmt.Sprintf("k%d", i)
		put(t, s, k, make([]byte, 90_000), testMeta(k, i))
	}
	for i := range 5 {
		if _, ok := s.Get(fmt.Sprintf("k%d", i)); !ok {
			t.Fatalf("k%d evicted early", i)
		}
	}
	for i := 10; i < 15; i++ {
		k := fmt.Sprintf("k%d", i)
		put(t, s, k, make([]byte, 90_000), testMeta(k, i))
	}
	for i := range 5 {
		if _, ok := s.Get(fmt.Sprintf("k%d", i)); !ok {
			t.Errorf("accessed entry k%d evicted", i)
		}
	}
}

// TestBudgetUnderConcurrentFills writes ten times the budget from 16 goroutines while readers
// hold entries open, and checks at every sample that the files in Dir and the counted bytes
// stay within MaxBytes.
func TestBudgetUnderConcurrentFills(t *testing.T) {
	t.Parallel()
	const maxBytes = 4 << 20
	var evictedMu sync.Mutex
	evicted := map[string]int{}
	s := openStore(t, Config{Dir: t.TempDir(), MaxBytes: maxBytes, OnEvict: func(k string) {
		evictedMu.Lock()
		evicted[k]++
		evictedMu.Unlock()
	}})

	const writers = 16
	var (
		wg        sync.WaitGroup
		committed sync.Map // key → size
		total     atomic.Int64
		noSpace   atomic.Int64
		seq       atomic.Int64
		nerr      atomic.Int32
	)
	fail := func(err error) { // from any goroutine; never blocks
		if nerr.Add(1) <= 10 {
			t.Error(err)
		}
	}
	for g := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 42))
			chunk := make([]byte, 16<<10)
			for total.Load() < 10*maxBytes {
				i := seq.Add(1)
				key := fmt.Sprintf("/obj/%06d", i)
				size := 1 + r.IntN(400<<10)
				w, err := s.Create(key)
				if err != nil {
					fail(err)
					return
				}
				var werr error
				for left := size; left > 0 && werr == nil; {
					n := min(left, len(chunk))
					_, werr = w.Write(chunk[:n])
					left -= n
					total.Add(int64(n))
					if b := s.Bytes(); b > maxBytes {
						fail(fmt.Errorf("Bytes %d > %d", b, maxBytes))
					}
				}
				switch {
				case errors.Is(werr, ErrNoSpace):
					noSpace.Add(1)
				case werr != nil:
					fail(werr)
				case r.IntN(10) == 0:
					// abandoned fill
				default:
					if err := w.Commit(testMeta(key, int(i))); err != nil && !errors.Is(err, ErrNoSpace) {
						fail(err)
					} else if err == nil {
						committed.Store(key, size)
					}
				}
				w.Abort()
			}
		})
	}
	// Readers hold random recent entries open for a while (pinning them).
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		r := rand.New(rand.NewPCG(7, 7))
		var open []*Handle
		for {
			select {
			case <-stop:
				for _, h := range open {
					_ = h.Close()
				}
				return
			default:
			}
			key := fmt.Sprintf("/obj/%06d", max(1, seq.Load()-int64(r.IntN(20))))
			if h, err := s.Open(key); err == nil {
				open = append(open, h)
			}
			if len(open) > 4 {
				_ = open[0].Close()
				open = open[1:]
			}
			runtime.Gosched()
		}
	})
	// The sampler checks the directory against the budget while everything runs.
	samples := 0
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.stillDir(func() {
				disk, _ := diskBytes(t, s.dir)
				b := s.Bytes()
				if disk > b || b > maxBytes {
					fail(fmt.Errorf("sample: files %d, counted %d, max %d", disk, b, maxBytes))
				}
			})
			samples++
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	if samples < 5 {
		t.Errorf("only %d samples", samples)
	}

	st := s.Stats()
	t.Logf("samples %d, no-space %d, stats %+v", samples, noSpace.Load(), st)
	if st.ReservedBytes != 0 || st.PinnedBytes != 0 {
		t.Fatalf("bytes still held after all fills and readers ended: %+v", st)
	}
	disk, files := diskBytes(t, s.dir)
	if disk != st.Bytes || files != st.Entries || st.Bytes > maxBytes {
		t.Fatalf("at rest: files %d (%d), stats %+v", disk, files, st)
	}
	// Every committed key is still there or was reported evicted, exactly once.
	n := 0
	committed.Range(func(k, _ any) bool {
		n++
		_, ok := s.Get(k.(string))
		evictedMu.Lock()
		c := evicted[k.(string)]
		evictedMu.Unlock()
		if ok == (c == 1) || c > 1 {
			t.Errorf("%s: present %v, evicted %d times", k, ok, c)
		}
		return true
	})
	if uint64(len(evicted)) != st.Evictions || st.Evictions == 0 || n < 50 {
		t.Fatalf("evicted %d keys, stats say %d, committed %d", len(evicted), st.Evictions, n)
	}
}

// --- benchmarks ---

func BenchmarkOpenHit(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s, _ := newStore(b, 64<<20)
			put(b, s, "/vod/abc/seg-00001.ts", body(size, 1), testMeta("/vod/abc/seg-00001.ts", 1))
			s = reopen(b, s, 64<<20)
			readAll(b, s, "/vod/abc/seg-00001.ts") // verified once
			b.ReportAllocs()
			for b.Loop() {
				h, err := s.Open("/vod/abc/seg-00001.ts")
				if err != nil {
					b.Fatal(err)
				}
				_ = h.Close()
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	s, _ := newStore(b, 64<<20)
	put(b, s, "/vod/abc/seg-00001.ts", body(1000, 1), testMeta("/vod/abc/seg-00001.ts", 1))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := s.Get("/vod/abc/seg-00001.ts"); !ok {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkRebuild measures the start-up scan of 10k files (DISKTIER_REBUILD_FILES overrides).
func BenchmarkRebuild(b *testing.B) {
	n := 10_000
	if v := os.Getenv("DISKTIER_REBUILD_FILES"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	s := openStore(b, Config{Dir: dir, MaxBytes: 1 << 40})
	for i := range n {
		key := fmt.Sprintf("/live/channel-%d/1080p/segment-%07d.ts", i%50, i)
		put(b, s, key, body(1+i%4096, uint64(i)), testMeta(key, i))
	}
	_ = s.Close()
	b.ReportAllocs()
	for b.Loop() {
		s, err := Open(context.Background(), Config{Dir: dir, MaxBytes: 1 << 40})
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != n {
			b.Fatalf("rebuilt %d entries, want %d", s.Len(), n)
		}
		_ = s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/file")
}

// TestConcurrentMixedOps runs every operation at once on a few hot keys under a small budget
// and checks that a Handle's bytes always match its Meta, and that the accounting ends exact.
func TestConcurrentMixedOps(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 2<<20)
	const workers, rounds, keys = 8, 300, 24
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 99))
			for i := range rounds {
				key := fmt.Sprintf("/hot/%02d", r.IntN(keys))
				switch op := r.IntN(10); {
				case op < 3:
					w, err := s.Create(key)
					if err != nil {
						t.Error(err)
						return
					}
					b := body(r.IntN(120_000), uint64(g*rounds+i))
					if _, err := w.Write(b); err == nil {
						if err := w.Commit(testMeta(key, i)); err != nil && !errors.Is(err, ErrNoSpace) {
							t.Error(err)
						}
					} else if !errors.Is(err, ErrNoSpace) {
						t.Error(err)
					}
					w.Abort()
				case op < 7:
					h, err := s.Open(key)
					if errors.Is(err, ErrNotFound) {
						continue
					}
					if err != nil {
						t.Errorf("Open %s: %v", key, err)
						continue
					}
					b := make([]byte, h.Meta.Size)
					n, err := h.ReadAt(b, 0)
					if int64(n) != h.Meta.Size || (err != nil && err != io.EOF) {
						t.Errorf("read %s: %d of %d, %v", key, n, h.Meta.Size, err)
					} else if xxhash.Sum64(b) != h.Meta.Checksum {
						t.Errorf("%s: body does not match its Meta", key)
					}
					_ = h.Close()
				case op < 8:
					m := testMeta(key, i)
					m.Header = append(m.Header, object.Field{Name: "X-Pad", Value: strings.Repeat("p", r.IntN(3000))})
					if err := s.UpdateMeta(key, m); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNoSpace) {
						t.Error(err)
					}
				case op < 9:
					s.Delete(key)
				default:
					s.Get(key)
				}
			}
		})
	}
	wg.Wait()
	checkAccounting(t, s)
	st := s.Stats()
	if st.ReservedBytes != 0 || st.PinnedBytes != 0 || st.Corrupt != 0 {
		t.Fatalf("stats at rest: %+v", st)
	}
	before := map[string]object.Meta{}
	s.Keys("", func(m object.Meta) bool { before[m.Key] = m; return true })
	s = reopen(t, s, 2<<20)
	if s.Len() != len(before) || s.Stats().RebuildDropped != 0 {
		t.Fatalf("after restart: %d entries, want %d; %+v", s.Len(), len(before), s.Stats())
	}
	for k, want := range before {
		if got, ok := s.Get(k); !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s after restart: %#v", k, got)
		}
		readAll(t, s, k) // verifies the body against the checksum
	}
}

// TestHandleCurrent: a Handle tells whether what it opened is still the key's entry as it is,
// so that a copy made from it is not kept after a purge, a metadata update or a newer fill.
func TestHandleCurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, 8<<20)
	open := func(key string) *Handle {
		t.Helper()
		h, err := s.Open(key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	put(t, s, "a", body(1000, 1), testMeta("a", 1))
	h := open("a")
	if !h.Current() {
		t.Fatal("a fresh Handle is not current")
	}
	put(t, s, "b", body(1000, 2), testMeta("b", 1)) // another key changes nothing
	if !h.Current() {
		t.Fatal("a write to another key made the Handle stale")
	}

	if err := s.UpdateMeta("a", testMeta("a", 2)); err != nil {
		t.Fatal(err)
	}
	if h.Current() {
		t.Fatal("Current after UpdateMeta: a copy would keep the old metadata (a soft purge lost)")
	}
	if h2 := open("a"); !h2.Current() {
		t.Fatal("a Handle opened after the update is not current")
	}

	h3 := open("a")
	put(t, s, "a", body(1000, 3), testMeta("a", 3)) // a newer fill replaces the entry
	if h3.Current() {
		t.Fatal("Current after a newer fill replaced the entry")
	}

	h4 := open("a")
	if !s.Delete("a") {
		t.Fatal("Delete found nothing")
	}
	if h4.Current() {
		t.Fatal("Current after Delete: a copy would resurrect a purged object")
	}

	put(t, s, "c", body(1000, 4), testMeta("c", 1))
	h5 := open("c")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if h5.Current() {
		t.Fatal("Current after the store closed")
	}
}
