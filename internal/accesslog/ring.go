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

// put fills the record at cell from rec and commits it. It allocates nothing and keeps no
// view of rec's strings.
func (r *ring) put(cell, k uint64, rec *Record, strs *[numStrings]string, withCMCD bool) {
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
	h.hasCMCD = withCMCD
	h.rawID = rec.RequestID == "" && rec.ID != [16]byte{}
	off := int(cell)*cellBytes + headerBytes
	if withCMCD {
		d := rec.CMCD
		*(*cmcdNumbers)(unsafe.Pointer(&r.mem[off])) = cmcdNumbers{bufferLength: d.BufferLength, bitrate: d.Bitrate,
			duration: d.Duration, deadline: d.Deadline, throughput: d.Throughput, topBitrate: d.TopBitrate,
			requestedTP: d.RequestedTP, version: d.Version, playbackRate: d.PlaybackRate, starved: d.Starved,
			startup: d.Startup, hasPlaybackRate: d.HasPlaybackRate}
		off += cmcdBytes
	}
	end := int(cell+k) * cellBytes
	truncated := false
	for i := range strs {
		n := 0
		if s := strs[i]; s != "" {
			n = copy(r.mem[off:end], s)
			truncated = truncated || n < len(s)
		}
		h.lens[i] = uint16(n)
		off += n
	}
	h.truncated = truncated
	h.commit.Store(k)
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

// add copies rec into the ring; false when the ring is full.
func (r *ring) add(rec *Record) bool {
	var strs [numStrings]string
	strs[strMethod], strs[strCacheStatus], strs[strTier], strs[strRequestID] = rec.Method, rec.CacheStatus, rec.Tier, rec.RequestID
	if rec.RequestID == "" && rec.ID != [16]byte{} {
		strs[strRequestID] = unsafe.String(&rec.ID[0], len(rec.ID))
	}
	strs[strPath], strs[strQuery] = rec.Path, rec.Query
	if rec.Client.IsValid() && !rec.Client.Is4() {
		strs[strZone] = rec.Client.Zone()
	}
	n := headerBytes
	d := rec.CMCD
	withCMCD := d != nil && !d.Empty()
	if withCMCD {
		n += cmcdBytes
		strs[strCMCDObjectType], strs[strCMCDStreamType], strs[strCMCDStreamFormat] = d.ObjectType, d.StreamType, d.StreamFormat
		strs[strCMCDSessionID], strs[strCMCDContentID] = d.SessionID, d.ContentID
	}
	for _, s := range strs {
		n += len(s)
	}
	k := min(uint64(n+cellBytes-1)/cellBytes, r.maxCells)
	cell, ok := r.claim(k)
	if !ok {
		return false
	}
	r.put(cell, k, rec, &strs, withCMCD)
	return true
}
