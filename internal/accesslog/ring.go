package accesslog

import (
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/duetcdn/duet/internal/cmcd"
)

// The request path only copies its record into a ring; the writer goroutine formats the line,
// redacts and batches. A record in the ring is a fixed header (numbers as they are), CMCD's
// numbers when the player sent some, and the strings, packed: a typical edge request fits one
// 256-byte cell and writes two or three cache lines of it; a long one takes several cells (up
// to maxRecord). A fixed slot big enough for a long URL would instead spread the requests over
// memory that no cache holds any more. The ring holds no pointers, so the garbage collector
// never scans it.

// Indexes of a record's strings, in the order they are copied: the short ones first, so that
// a huge path or query is what gets cut when a record would not fit (maxRecord).
const (
	strMethod = iota
	strCacheStatus
	strTier
	strRequestID
	strZone
	strCMCDObjectType
	strCMCDStreamType
	strCMCDStreamFormat
	strPath
	strQuery
	strCMCDSessionID
	strCMCDContentID
	numStrings
)

// header is the start of a record in the ring.
type header struct {
	// commit is 0 until the record's producer has filled it; then its length in cells (with
	// padFlag for the filler that skips the ring's end).
	commit                           atomic.Uint64
	time                             int64 // Unix nanoseconds
	bytes, ttfb, duration, originDur int64
	status                           int32
	addrKind                         uint8 // 0: no address, 4 or 6
	truncated                        bool
	hasCMCD                          bool
	rawID                            bool // the request id string is Record.ID's 16 bytes
	addr                             [16]byte
	lens                             [numStrings]uint16
}

// cmcdNumbers is cmcd.Data without its strings; it follows the header when the player sent
// CMCD.
type cmcdNumbers struct {
	bufferLength, bitrate, duration, deadline, throughput, topBitrate, requestedTP, version int64
	playbackRate                                                                            float64
	starved, startup, hasPlaybackRate                                                       bool
}

const (
	cellBytes   = 256 // one place of Config.Buffer
	headerBytes = int(unsafe.Sizeof(header{}))
	cmcdBytes   = int(unsafe.Sizeof(cmcdNumbers{}))
	// padFlag marks the filler a producer commits when its record would run past the ring's
	// end: the record starts again at the ring's start.
	padFlag = 1 << 63
	// maxRecord is the most a record takes (less in a small ring: a quarter of it); its
	// strings are cut to fit, and the line says "truncated":true.
	maxRecord = 16 << 10
)

// ring is a bounded queue of records with many producers (the requests) and one consumer (the
// writer goroutine). A producer claims cells with one compare-and-swap on enq, fills them and
// publishes the record by storing its header's commit word; nobody waits for anybody. When
// the cells it needs are still the writer's (enq would pass deq by more than the ring), the
// ring is full and the producer gives up (the line is dropped and counted). A producer that
// claimed cells and has not committed them yet holds the writer back there until it has, so
// the writer takes the records in the order they were claimed.
type ring struct {
	_   [64]byte
	enq atomic.Uint64 // cells claimed so far: the producers' counter
	// free is a producers' copy of deq, never ahead of it: deq is written by the writer at
	// every record, and reading it at every claim would cost a request a cache miss.
	free  atomic.Uint64
	_     [48]byte
	deq   atomic.Uint64 // cells the writer has released so far: only the writer stores it
	_     [56]byte
	cells uint64 // a power of two
	// maxCells is the most cells a record takes.
	maxCells uint64
	mem      []byte // the cells; backed by uint64s, so that commit words are aligned
}

// newRing makes a ring of at least n bytes (rounded up to a power of two, 8 cells at least).
func newRing(n int) *ring {
	size := 8 * cellBytes
	for size < n {
		size <<= 1
	}
	words := make([]uint64, size/8)
	r := &ring{cells: uint64(size / cellBytes), mem: unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)}
	r.maxCells = uint64(min(maxRecord, size/4) / cellBytes)
	return r
}

// header is the record at cell (a record's cells are inside the ring: they never wrap).
func (r *ring) header(cell uint64) *header {
	return (*header)(unsafe.Pointer(&r.mem[cell*cellBytes]))
}

// commit is the commit word at cell: a record's header starts with it.
func (r *ring) commit(cell uint64) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&r.mem[cell*cellBytes]))
}

// claim reserves k cells, contiguous, and returns the first, or false when the ring is full.
func (r *ring) claim(k uint64) (uint64, bool) {
	for {
		pos := r.enq.Load()
		idx := pos & (r.cells - 1)
		total := k
		if idx+k > r.cells { // skip to the ring's start
			total += r.cells - idx
		}
		if pos+total-r.free.Load() > r.cells { // full, or free or pos out of date
			deq := r.deq.Load()
			if int64(pos-deq) < 0 { // others claimed more and the writer took it since pos was read
				continue
			}
			if pos+total-deq > r.cells {
				return 0, false
			}
			r.free.Store(deq) // whoever stores, deq has reached it
		}
		if r.enq.CompareAndSwap(pos, pos+total) {
			if total != k {
				r.commit(idx).Store((total - k) | padFlag)
				return 0, true
			}
			return idx, true
		}
	}
}

// next returns the writer's next committed record (its first cell and length in cells), or
// false when there is none yet. Fillers are released on the way. Call release when done.
func (r *ring) next() (uint64, uint64, bool) {
	for {
		pos := r.deq.Load()
		idx := pos & (r.cells - 1)
		c := r.commit(idx).Load()
		if c == 0 {
			return 0, 0, false
		}
		if c&padFlag == 0 {
			return idx, c, true
		}
		r.release(idx, c&^padFlag)
	}
}

// release gives a record's cells back to the producers, with their commit words cleared (any
// cell may start a record on the next round).
func (r *ring) release(idx, k uint64) {
	for c := idx; c < idx+k; c++ {
		r.commit(c).Store(0)
	}
	r.deq.Add(k)
}

// record rebuilds the record at cell into rec (and d, its CMCD), and tells whether a string
// was cut. rec's strings are views of the ring: they are good until the record is released.
func (r *ring) record(cell uint64, rec *Record, d *cmcd.Data) bool {
	h := r.header(cell)
	off := int(cell)*cellBytes + headerBytes
	var c *cmcdNumbers
	if h.hasCMCD {
		c = (*cmcdNumbers)(unsafe.Pointer(&r.mem[off]))
		off += cmcdBytes
	}
	var strs [numStrings]string
	for i, n := range h.lens {
		if n > 0 {
			strs[i] = unsafe.String(&r.mem[off], int(n))
			off += int(n)
		}
	}
	*rec = Record{Time: time.Unix(0, h.time), Method: strs[strMethod], Path: strs[strPath], Query: strs[strQuery],
		Status: int(h.status), Bytes: h.bytes, TTFB: time.Duration(h.ttfb), Duration: time.Duration(h.duration),
		CacheStatus: strs[strCacheStatus], Tier: strs[strTier], OriginTime: time.Duration(h.originDur),
		RequestID: strs[strRequestID]}
	if h.rawID {
		rec.RequestID = ""
		copy(rec.ID[:], strs[strRequestID])
	}
	switch h.addrKind {
	case 4:
		rec.Client = netip.AddrFrom16(h.addr).Unmap()
	case 6:
		rec.Client = netip.AddrFrom16(h.addr).WithZone(strs[strZone])
	}
	if c != nil {
		*d = cmcd.Data{BufferLength: c.bufferLength, Bitrate: c.bitrate, Duration: c.duration, Deadline: c.deadline,
			Throughput: c.throughput, TopBitrate: c.topBitrate, RequestedTP: c.requestedTP, Version: c.version,
			PlaybackRate: c.playbackRate, Starved: c.starved, Startup: c.startup, HasPlaybackRate: c.hasPlaybackRate,
			ObjectType: strs[strCMCDObjectType], StreamType: strs[strCMCDStreamType], StreamFormat: strs[strCMCDStreamFormat],
			SessionID: strs[strCMCDSessionID], ContentID: strs[strCMCDContentID]}
		rec.CMCD = d
	}
	return h.truncated
}

// add copies rec into the ring; false when the ring is full. It allocates nothing and keeps no
// view of rec's strings.
func (r *ring) add(rec *Record) bool {
	id := rec.RequestID
	rawID := id == "" && rec.ID != [16]byte{}
	if rawID {
		id = unsafe.String(&rec.ID[0], len(rec.ID))
	}
	zone := ""
	if rec.Client.Is6() {
		zone = rec.Client.Zone()
	}
	d := rec.CMCD
	withCMCD := d != nil && !d.Empty()
	n := headerBytes + len(rec.Method) + len(rec.CacheStatus) + len(rec.Tier) + len(id) + len(zone) + len(rec.Path) + len(rec.Query)
	if withCMCD {
		n += cmcdBytes + len(d.ObjectType) + len(d.StreamType) + len(d.StreamFormat) + len(d.SessionID) + len(d.ContentID)
	}
	k := min(uint64(n+cellBytes-1)/cellBytes, r.maxCells)
	cell, ok := r.claim(k)
	if !ok {
		return false
	}
	h := r.header(cell)
	h.time = rec.Time.UnixNano()
	h.bytes, h.ttfb, h.duration, h.originDur = rec.Bytes, int64(rec.TTFB), int64(rec.Duration), int64(rec.OriginTime)
	h.status = int32(rec.Status)
	switch {
	case !rec.Client.IsValid():
		h.addrKind = 0
	case rec.Client.Is4():
		h.addrKind, h.addr = 4, rec.Client.As16()
	default:
		h.addrKind, h.addr = 6, rec.Client.As16()
	}
	h.hasCMCD, h.rawID = withCMCD, rawID
	off := int(cell)*cellBytes + headerBytes
	if withCMCD {
		*(*cmcdNumbers)(unsafe.Pointer(&r.mem[off])) = cmcdNumbers{bufferLength: d.BufferLength, bitrate: d.Bitrate,
			duration: d.Duration, deadline: d.Deadline, throughput: d.Throughput, topBitrate: d.TopBitrate,
			requestedTP: d.RequestedTP, version: d.Version, playbackRate: d.PlaybackRate, starved: d.Starved,
			startup: d.Startup, hasPlaybackRate: d.HasPlaybackRate}
		off += cmcdBytes
	}
	w := strWriter{b: r.mem[off : int(cell+k)*cellBytes]}
	// In the order of the str constants: their lengths tell the writer where each one is.
	h.lens[strMethod], h.lens[strCacheStatus], h.lens[strTier] = w.put(rec.Method), w.put(rec.CacheStatus), w.put(rec.Tier)
	h.lens[strRequestID], h.lens[strZone] = w.put(id), w.put(zone)
	if withCMCD {
		h.lens[strCMCDObjectType], h.lens[strCMCDStreamType] = w.put(d.ObjectType), w.put(d.StreamType)
		h.lens[strCMCDStreamFormat] = w.put(d.StreamFormat)
	} else {
		h.lens[strCMCDObjectType], h.lens[strCMCDStreamType], h.lens[strCMCDStreamFormat] = 0, 0, 0
	}
	h.lens[strPath], h.lens[strQuery] = w.put(rec.Path), w.put(rec.Query)
	if withCMCD {
		h.lens[strCMCDSessionID], h.lens[strCMCDContentID] = w.put(d.SessionID), w.put(d.ContentID)
	} else {
		h.lens[strCMCDSessionID], h.lens[strCMCDContentID] = 0, 0
	}
	h.truncated = w.cut
	h.commit.Store(k)
	return true
}

// strWriter copies a record's strings one after the other into its cells, as much of each as
// fits.
type strWriter struct {
	b   []byte
	off int
	cut bool
}

func (w *strWriter) put(s string) uint16 {
	n := copy(w.b[w.off:], s)
	w.off += n
	w.cut = w.cut || n < len(s)
	return uint16(n)
}
