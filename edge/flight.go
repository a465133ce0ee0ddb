package edge

import (
	"context"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/origin"
)

// outcome is what a flight turned out to be once the origin's headers arrived.
type outcome int

const (
	// outBody: a cacheable body is streaming into the spool; everyone reads it as it arrives.
	outBody outcome = iota
	// outRefreshed: the origin confirmed (304) or the cache already held a usable entry; look
	// the key up again.
	outRefreshed
	// outPass: the response may not be shared (private, no-store, Set-Cookie, an error status
	// that is not cacheable). The leader receives it; everyone else fetches on their own at once,
	// without queueing behind anybody.
	outPass
	// outFailed: no usable answer (connection error, timeout, 5xx). Waiters may fall back to a
	// stale entry under stale-if-error.
	outFailed
	// outSliced: the object is too large to store whole (a 200 above Server.sliceAbove); the
	// origin's answer was dropped and every waiter answers from slices.
	outSliced
)

// spool is where a flight's body bytes go while readers follow: the disk tier's writer.
type spool interface {
	io.Writer
	io.ReaderAt
}

// result is how a flight turned out once the origin's headers arrived. Only settle writes it.
type result struct {
	out    outcome
	meta   object.Meta      // outBody: the entry being written (Size is the expected length or -1)
	pass   *origin.Response // outPass: the response for the leader
	status int              // outFailed: the status to report (502, 504 or the origin's 5xx)
	err    error            // outFailed: why
	// errResp, with outFailed, is the origin's own uncacheable 5xx, small enough to hand every
	// waiter a copy (rather than sending them all to the origin at once).
	errResp *bufferedResponse
}

// flight is one origin fetch that any number of requests for the same cache key share
// (request collapsing). The body is readable while it is written (read-while-write).
type flight struct {
	key   string
	ready chan struct{} // closed by settle, once result is set
	// peerKey, set by the leader before the fill starts, is the key whose owner among the
	// region's edges the fill asks before the origin (peer fill); "" goes to the origin.
	peerKey string
	// prefetch, set by the leader before the fill starts, marks a prefetch's fill (prefetch.go):
	// it never waits for the origin budget.
	prefetch bool

	// result is set by settle before ready is closed, and read-only afterwards.
	result
	// originTime is how long the origin took to answer (set, like result, before settle).
	originTime time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	sp      spool
	written int64
	// expect is the body length the origin announced, or -1. The last byte is held back from
	// readers until the entry is committed, so that a viewer who has the whole body can count on
	// the next request being a hit (and a purge that follows it finding the entry).
	expect  int64
	done    bool   // the body is complete and committed
	bodyErr error  // the body failed mid-way: every reader fails too
	readers int    // open readers; the spool is released when done and no reader is left
	release func() // releases the spool; called once, after done with no readers
	// nextWake is the written total at which progress next wakes the readers; wakePending is
	// set while a timer will wake them for bytes written since (see progress).
	nextWake    int64
	wakePending bool
	// waiting counts the readers blocked in waitFor (tests wait for one to block).
	waiting int

	// noStore is set by a purge that arrives while the flight runs: its bytes may be the old
	// version, so they reach the viewers already waiting but are never committed.
	noStore atomic.Bool
	// fs is the registry the flight is in. cancel, set by the fill before the body streams,
	// stops the origin read; streaming is set (under mu) once the body streams into the spool.
	// abandoned is set, under fs.mu and mu, when the last reader left a fill that was not going
	// to finish soon: the fill is cancelled, the flight leaves the registry (a later request
	// starts a new fill) and nothing is stored.
	fs        *flights
	cancel    context.CancelFunc
	streaming bool
	abandoned bool
	// satisfied is set when a reader got all of the range it asked for: such a fill completes
	// (a player that reads a file range by range would otherwise restart, and abandon, a fill
	// from byte 0 for every range). Only viewers that left mid-body make a fill unread.
	satisfied bool
}

func newFlight(key string) *flight {
	f := &flight{key: key, ready: make(chan struct{}), expect: -1}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Readers are woken when the body has doubled since the last wake (at most maxWakeStep more),
// and otherwise within wakeDelay of a write. Waking every reader on every 64 KiB write made a
// flash crowd's 1,000 viewers take 32,000 wakeups, seeks and small sendfiles for a 2 MiB
// object; doubling makes that about 6 per viewer, and the delay bounds how long a byte that
// arrived stays unseen (a trickling origin, a low-latency part followed by a pause).
const (
	maxWakeStep = 1 << 20
	wakeDelay   = 2 * time.Millisecond
)

// progress records n more bytes written to the spool.
func (f *flight) progress(n int) {
	f.mu.Lock()
	f.written += int64(n)
	wake := f.written >= f.nextWake
	if wake {
		f.nextWake = f.written + min(f.written, maxWakeStep)
	} else if !f.wakePending {
		f.wakePending = true
		time.AfterFunc(wakeDelay, f.wakeReaders)
	}
	// A body of unknown length that nobody reads may grow past the bound only now.
	unread := f.unreadLocked()
	f.mu.Unlock()
	if wake {
		f.cond.Broadcast()
	}
	if unread {
		f.abandonIfUnread()
	}
}

// unreadLocked reports whether nobody reads a body still streaming that the policy would not
// let complete: the cheap test before abandonIfUnread takes the locks in order. f.mu held.
func (f *flight) unreadLocked() bool {
	return f.readers == 0 && f.streaming && f.cancel != nil && !f.abandoned && !f.satisfied && !f.done && f.bodyErr == nil &&
		f.fs != nil && !f.fs.bg.completes(f.written, f.expect)
}

// abandonIfUnread stops a fill whose last reader has gone, unless it will finish soon (see
// bgFill): a viewer who closes after 100 bytes of a cold 5 GB object must not make the origin
// send all of it. The flight leaves the registry under fs.mu, before any new request can join
// it, so that the next request starts a fill of its own instead of reading a cancelled body.
func (f *flight) abandonIfUnread() {
	f.abandonIf((*flight).unreadLocked)
}

// abandonIf stops the fill when stop, called with fs.mu and f.mu held, says so: the flight
// leaves the registry first, under fs.mu, so that a request arriving now starts a fill of its
// own. It reports whether it stopped the fill.
func (f *flight) abandonIf(stop func(*flight) bool) bool {
	fs := f.fs
	fs.mu.Lock()
	f.mu.Lock()
	stopped := stop(f)
	if stopped {
		f.abandoned = true
		if fs.m[f.key] == f {
			delete(fs.m, f.key)
		}
	}
	f.mu.Unlock()
	fs.mu.Unlock()
	if stopped {
		f.cancel()
	}
	return stopped
}

// isAbandoned reports whether the fill was stopped for want of readers.
func (f *flight) isAbandoned() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.abandoned
}

// bgFill is the policy for a fill whose viewers have all gone (Traffic Server's background
// fill): it completes, and is cached, when it is far enough along or little is left; otherwise
// it is stopped.
type bgFill struct {
	// percent: a fill at least this far along (of a known length) completes. 0: every fill
	// completes.
	percent int
	// minBytes: a fill with at most this many bytes left completes; one of unknown length
	// completes while it has received no more than this.
	minBytes int64
}

// completes reports whether a fill with written of expect bytes (-1: unknown) goes on alone.
func (p bgFill) completes(written, expect int64) bool {
	switch {
	case p.percent == 0:
		return true
	case expect < 0:
		return written <= p.minBytes
	case expect-written <= p.minBytes:
		return true
	}
	return written*100 >= expect*int64(p.percent)
}

// wakeReaders is progress's delayed wake.
func (f *flight) wakeReaders() {
	f.mu.Lock()
	f.wakePending = false
	f.mu.Unlock()
	f.cond.Broadcast()
}

// finish ends the body, successfully when err is nil.
func (f *flight) finish(err error) {
	f.mu.Lock()
	f.done = err == nil
	f.bodyErr = err
	rel := f.maybeRelease()
	f.mu.Unlock()
	f.cond.Broadcast()
	if rel != nil {
		rel()
	}
}

// maybeRelease returns the release function when nothing needs the spool any more. f.mu held.
func (f *flight) maybeRelease() func() {
	if (f.done || f.bodyErr != nil) && f.readers == 0 && f.release != nil {
		r := f.release
		f.release = nil
		return r
	}
	return nil
}

// readable is how many bytes readers may see. f.mu held.
func (f *flight) readable() int64 {
	if f.done || f.expect < 0 {
		return f.written
	}
	return min(f.written, f.expect-1)
}

// waitFor blocks until the spool holds at least end readable bytes, the body is complete, or
// it failed. It returns how many bytes are readable.
func (f *flight) waitFor(end int64) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.readable() < end && !f.done && f.bodyErr == nil {
		f.waiting++
		f.cond.Wait()
		f.waiting--
	}
	return f.readable(), f.done, f.bodyErr
}

// reader streams [off, end) of the flight's body as it arrives; end < 0 means "to the end".
// It fails, rather than ending early, when the origin cuts the body: the client then sees a cut
// connection, never a short 200.
type flightReader struct {
	f        *flight
	off, end int64
	closed   bool
}

func (f *flight) newReader(off, end int64) *flightReader {
	f.mu.Lock()
	f.readers++
	f.mu.Unlock()
	return &flightReader{f: f, off: off, end: end}
}

func (r *flightReader) Read(p []byte) (int, error) {
	if r.end >= 0 && r.off >= r.end {
		return 0, io.EOF
	}
	want := r.off + 1
	avail, done, err := r.f.waitFor(want)
	if err != nil {
		return 0, err
	}
	if avail <= r.off {
		if done {
			if r.end >= 0 && r.off < r.end {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, io.EOF
		}
	}
	n := avail - r.off
	if r.end >= 0 {
		n = min(n, r.end-r.off)
	}
	n = min(n, int64(len(p)))
	m, rerr := r.f.sp.ReadAt(p[:n], r.off)
	r.off += int64(m)
	if rerr == io.EOF && int64(m) == n {
		rerr = nil
	}
	return m, rerr
}

// reopener is a spool whose file a reader may open on its own (the disk tier's Writer).
type reopener interface {
	Reopen() (*os.File, error)
}

// WriteTo sends the reader's range with sendfile from the spool's file, each chunk as soon as
// the fill has written it, when w can take a file (fasthttp hands a body stream that implements
// WriterTo its connection's writer, whose ReadFrom ends in sendfile). Otherwise it copies
// through a buffer, as io.Copy would. Under a flash crowd this keeps a thousand viewers'
// bytes out of user space (docs/performance.md).
func (r *flightReader) WriteTo(w io.Writer) (int64, error) {
	rf, okW := w.(io.ReaderFrom)
	ro, okS := r.f.sp.(reopener)
	var file *os.File
	if okW && okS {
		file, _ = ro.Reopen()
	}
	if file == nil {
		return io.Copy(w, struct{ io.Reader }{r}) // hide WriteTo from io.Copy
	}
	defer file.Close()
	var total int64
	for r.end < 0 || r.off < r.end {
		avail, done, err := r.f.waitFor(r.off + 1)
		if err != nil {
			return total, err
		}
		if avail <= r.off { // waitFor returns short only when the body is complete
			if r.end >= 0 || !done {
				return total, io.ErrUnexpectedEOF
			}
			return total, nil
		}
		n := avail - r.off
		if r.end >= 0 {
			n = min(n, r.end-r.off)
		}
		if _, err := file.Seek(r.off, io.SeekStart); err != nil {
			return total, err
		}
		m, err := rf.ReadFrom(&io.LimitedReader{R: file, N: n})
		r.off += m
		total += m
		if err != nil {
			return total, err
		}
		if m < n {
			return total, io.ErrUnexpectedEOF
		}
	}
	return total, nil
}

// ReadAt reads already written bytes, waiting for them when needed (multipart answers).
func (r *flightReader) ReadAt(p []byte, off int64) (int, error) {
	avail, _, err := r.f.waitFor(off + int64(len(p)))
	if err != nil {
		return 0, err
	}
	if off >= avail {
		return 0, io.EOF
	}
	n := min(int64(len(p)), avail-off)
	m, rerr := r.f.sp.ReadAt(p[:n], off)
	if rerr == nil && m < len(p) {
		rerr = io.EOF
	}
	return m, rerr
}

// Close gives the reader's hold on the spool back; fasthttp calls it after the response.
func (r *flightReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	// A reader that got the whole range it asked for leaves satisfied; one that reads to the end
	// and closes early, aborted.
	r.f.leaveReader(r.end >= 0 && r.off >= r.end)
	return nil
}

// leaveReader gives back a reader's or a pin's hold: the spool is released when the body is
// over, and a fill nobody reads any more may be stopped.
func (f *flight) leaveReader(satisfied bool) {
	f.mu.Lock()
	f.readers--
	f.satisfied = f.satisfied || satisfied
	rel := f.maybeRelease()
	unread := f.unreadLocked()
	f.mu.Unlock()
	if rel != nil {
		rel()
	}
	if unread {
		f.abandonIfUnread()
	}
}

// flights collapses concurrent fetches of one key into one.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight // guarded by mu
	wg sync.WaitGroup     // running fills, waited for at shutdown
	bg bgFill             // what becomes of a fill nobody reads; set before the first join
}

// join returns the flight for key, creating it when there is none; leader is true for the
// caller that must start it. The flight comes pinned: its spool stays readable until the caller
// calls unpin (readers it opens in between hold their own pins), so that a flight finishing
// between join and read never leaves a joiner with a released spool. Lock order: fs.mu, f.mu.
func (fs *flights) join(key string) (f *flight, leader bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.m[key]
	if !ok {
		f = newFlight(key)
		f.fs = fs
		fs.m[key] = f
		fs.wg.Add(1)
	}
	f.mu.Lock()
	f.readers++
	f.mu.Unlock()
	return f, !ok
}

// unpin gives back the pin join took.
func (f *flight) unpin() { f.leaveReader(false) }

// forget removes a flight from the registry, so that later requests look in the tiers (where
// its entry now is) instead of joining it. Idempotent.
func (fs *flights) forget(f *flight) {
	fs.mu.Lock()
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
	fs.mu.Unlock()
}

// leave forgets a flight whose fill has ended.
func (fs *flights) leave(f *flight) {
	fs.forget(f)
	fs.wg.Done()
}

func (fs *flights) get(key string) (*flight, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.m[key]
	return f, ok
}

// wait blocks until every running fill has finished or ctx ends.
func (fs *flights) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { fs.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
