package edge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Accept backoff: fasthttp's Server.Serve returns on any accept error that is not a timeout, and
// the edge would then stop. Out of file descriptors (EMFILE, ENFILE), buffers or memory, or a
// connection aborted before it was accepted are temporary: the listener waits and tries again,
// from acceptBackoffMin doubling up to acceptBackoffMax, as net/http does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptReasons are the label values of duet_edge_accept_errors_total (bounded).
var acceptReasons = []string{"emfile", "enfile", "enobufs", "enomem", "econnaborted", "timeout", "other"}

// acceptReason names an accept error for the metric.
func acceptReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE:
			return "emfile"
		case syscall.ENFILE:
			return "enfile"
		case syscall.ENOBUFS:
			return "enobufs"
		case syscall.ENOMEM:
			return "enomem"
		case syscall.ECONNABORTED:
			return "econnaborted"
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

// viewerListener is the viewer listener as fasthttp sees it. Its Accept returns an error only
// once the listener is closed: every other accept error is counted, logged at most once a
// second, and retried after a backoff. Each accepted connection is a viewerConn.
type viewerListener struct {
	net.Listener
	log       *slog.Logger
	errs      map[string]prometheus.Counter // by acceptReason
	maxHeader int                           // Config.MaxHeaderBytes
	// check wraps each connection in a viewerConn (Config.CheckRequestFraming); otherwise
	// fasthttp gets the socket itself.
	check bool
	// tls, when set, terminates TLS on each connection, under the viewerConn: the checks read
	// the plaintext. The handshake runs on the connection's first read, in fasthttp's
	// goroutine for it, bounded by read_timeout like a silent connection.
	tls *tls.Config
	// parker, when set, parks idle plain-HTTP connections (park_linux.go); open is fasthttp's
	// count of the connections it serves, maxConns the max_conns in force.
	parker   *parker
	open     func() int
	maxConns int

	closeOnce sync.Once
	closed    chan struct{}
	// wake ends a backoff early: a viewer connection closed, so a descriptor is free.
	wake chan struct{}

	// Accept's own state (fasthttp calls Accept from one goroutine).
	lastLog    time.Time
	suppressed int
}

func newViewerListener(ln net.Listener, log *slog.Logger, errs *prometheus.CounterVec, maxHeader int, check bool) *viewerListener {
	l := &viewerListener{Listener: ln, log: log, errs: map[string]prometheus.Counter{}, maxHeader: maxHeader, check: check,
		closed: make(chan struct{}), wake: make(chan struct{}, 1)}
	for _, r := range acceptReasons {
		l.errs[r] = errs.WithLabelValues(r)
	}
	return l
}

func (l *viewerListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			var batch *recordBatch
			if l.tls != nil {
				batch = &recordBatch{Conn: c}
				c = tls.Server(batch, l.tls)
			}
			if !l.check {
				return c, nil
			}
			vc := newViewerConn(c, l.maxHeader, l.wake)
			vc.batch = batch
			if l.parker != nil && batch == nil {
				vc.parker = l.parker
				// Parked connections hold descriptors fasthttp's Concurrency does not count:
				// at max_conns, an idle viewer makes room for a new one (nginx does the same).
				if l.parker.parked() > 0 && int(l.parker.parked())+l.open() >= l.maxConns {
					l.parker.evictOne()
				}
			}
			return vc, nil
		}
		select {
		case <-l.closed:
			return nil, err
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		reason := acceptReason(err)
		l.errs[reason].Inc()
		backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
		if now := time.Now(); now.Sub(l.lastLog) >= time.Second {
			l.log.Warn("accepting viewer connections failed, retrying", "error", err, "reason", reason,
				"backoff", backoff, "suppressed", l.suppressed)
			l.lastLog, l.suppressed = now, 0
		} else {
			l.suppressed++
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.wake:
			t.Stop()
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// closedConn ends a backoff early: a descriptor is free (the ConnState hook calls it for
// connections that are not viewerConns, whose Close does it).
func (l *viewerListener) closedConn() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close closes the listener and ends an Accept waiting out a backoff.
func (l *viewerListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Line-ending errors found by viewerConn (answered 400 by errorHandler).
var (
	errBareLF = errors.New("line ending is a bare LF: request lines and header lines must end with CRLF")
	errBareCR = errors.New("a CR not followed by LF: request lines and header lines must end with CRLF")
	// errFieldName: RFC 9112 §5.1 wants a 400 for whitespace before the colon; whitespace
	// within a name makes it no token.
	errFieldName = errors.New("whitespace in a header field name")
)

// Lingering close: a connection answered with an error while the viewer may still be sending
// (an oversized header, a refused body) is shut for writing, then read and discarded for up to
// lingerTimeout or lingerBytes before it is closed. Closing a socket with unread bytes sends a
// reset, and the viewer's kernel then drops the answer before the viewer reads it.
const (
	lingerTimeout = time.Second
	lingerBytes   = 256 << 10
)

// viewerConn is one viewer connection. It checks the line endings of each request's header
// block as it arrives: fasthttp accepts a bare LF in a line but waits for CRLFCRLF to end the
// block, so a request sent with bare LFs would wait for the read timeout instead of getting its
// 400. It also notes whether the request line alone outgrew the header limit (414 rather than
// 431), and can close lingering.
//
// The check covers a connection's first request, and each later one that starts after
// everything read before was a header block ending exactly where a read ended (a keep-alive
// viewer that sends a request and waits for the answer): only then is it certain that the next
// byte read starts a request and not a body or a pipelined request fasthttp has buffered.
//
// Read and rearm run on the connection's own goroutine; linger may be set from anywhere.
type viewerConn struct {
	net.Conn
	limit int

	scan     bool // within a header block
	first    bool // on its request line
	inName   bool // in a header line's field name
	lineLen  int  // bytes of the current line read so far (its CR included)
	lastCR   bool // the last byte read was a CR
	clean    bool // the last header block ended at the end of a read, and nothing was read since
	longLine bool // the request line reached limit bytes without ending
	// bad is the line-ending error found in this request's header block. fasthttp, which takes
	// a bare LF for a line end, may still parse a block that ends in CRLFCRLF: the handler then
	// refuses the request.
	bad error

	linger atomic.Bool
	wake   chan<- struct{} // the listener's: see viewerListener.wake
	// watched is the connection's entry in the server's connWatch (set when fasthttp reports it
	// new, on the connection's own goroutine, as every later state is).
	watched *watchedConn

	// Parking (park_linux.go). parker is nil when the connection is never parked (TLS, or
	// idle_park_after 0). parkReq is set by the sweeper, which then expires the read deadline
	// to end fasthttp's wait for the next request; atIdle is set while fasthttp waits for one
	// (no byte of it read yet): only then does an expired read park the connection, which sets
	// parked for the Close fasthttp calls next.
	parker  *parker
	parkReq atomic.Bool
	atIdle  bool
	parked  atomic.Bool
	// parkPending is set by the Close that follows a parking read, and read by the StateClosed
	// hook fasthttp reports next, on the same goroutine: the hook hands the connection to the
	// parker, after fasthttp is done with it (it may be served again at once).
	parkPending bool

	// Write coalescing (coalesce.go): wmu guards held, holdTimer, timerArmed and werr.
	wmu        sync.Mutex
	held       *[]byte
	holdTimer  *time.Timer
	timerArmed bool
	werr       error
	// holding is set while held is: idle reads it without the lock.
	holding atomic.Bool
	// holdNext asks Write to hold the next write whatever its size: a response header flushed
	// on its own, whose body the same response writes next (see hitBody).
	holdNext bool
	vec      [2][]byte
	bufs     net.Buffers
	// batch, set when c is a TLS connection, is the socket under it: it gathers a write's
	// records (tlsbatch.go); coalescing is off there.
	batch *recordBatch
}

func newViewerConn(c net.Conn, limit int, wake chan<- struct{}) *viewerConn {
	return &viewerConn{Conn: c, limit: limit, scan: true, first: true, wake: wake}
}

// errParked ends fasthttp's wait for the next request on a connection being parked: it reads
// nothing, so fasthttp closes the keep-alive connection quietly, and Close parks it.
var errParked = errors.New("idle connection parked")

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// requestPark asks the connection's goroutine to park it (the sweeper calls it for connections
// idle for idle_park_after).
func (c *viewerConn) requestPark() {
	if c.parker != nil && c.parkReq.CompareAndSwap(false, true) {
		_ = c.Conn.SetReadDeadline(longAgo)
	}
}

func (c *viewerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n == 0 && err != nil && c.parkReq.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		if c.atIdle {
			c.parked.Store(true)
			return 0, errParked
		}
		// The request arrived as the sweeper asked: serve it, park later.
		c.parkReq.Store(false)
		if derr := c.Conn.SetReadDeadline(time.Time{}); derr != nil {
			return 0, derr
		}
		n, err = c.Conn.Read(p)
	}
	if n > 0 {
		c.atIdle = false
		if cerr := c.check(p[:n]); cerr != nil {
			c.scan, c.bad = false, cerr
			return n, cerr
		}
	}
	return n, err
}

// check follows the header block's lines through b, the bytes just read.
func (c *viewerConn) check(b []byte) error {
	if !c.scan {
		c.clean = false
		return nil
	}
	if c.lastCR && b[0] != '\n' {
		return errBareCR
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if j := bytes.IndexByte(b, '\r'); j >= 0 && j < len(b)-1 {
				return errBareCR
			}
			if err := c.checkName(b); err != nil {
				return err
			}
			c.lineLen += len(b)
			c.lastCR = b[len(b)-1] == '\r'
			if c.first && c.lineLen >= c.limit {
				c.longLine = true
			}
			return nil
		}
		lineLen := c.lineLen + i                                  // bytes before the LF
		if j := bytes.IndexByte(b[:i], '\r'); j >= 0 && j < i-1 { // a CR before the line's last byte
			return errBareCR
		}
		if i > 0 && b[i-1] != '\r' || i == 0 && !c.lastCR {
			return errBareLF
		}
		if err := c.checkName(b[:i]); err != nil {
			return err
		}
		if c.first && lineLen+1 >= c.limit { // the line and its LF fill the read buffer
			c.longLine = true
		}
		b = b[i+1:]
		c.lineLen, c.lastCR = 0, false
		switch {
		case lineLen > 1:
			c.first = false
		case !c.first: // the empty line ending the block (empty lines before a request line are skipped)
			c.scan = false
			c.clean = len(b) == 0
			return nil
		}
		c.inName = !c.first
	}
	return nil
}

// checkName checks the part of the current line in seg while it is in a field name.
func (c *viewerConn) checkName(seg []byte) error {
	if !c.inName || len(seg) == 0 {
		return nil
	}
	if c.lineLen == 0 && (seg[0] == ' ' || seg[0] == '\t') { // obs-fold: a continuation, not a name
		c.inName = false
		return nil
	}
	name := seg
	if k := bytes.IndexByte(seg, ':'); k >= 0 {
		name, c.inName = seg[:k], false
	}
	if bytes.IndexByte(name, ' ') >= 0 || bytes.IndexByte(name, '\t') >= 0 {
		return errFieldName
	}
	return nil
}

// rearm starts checking the next request when it is certain to start at the next byte read.
// Called when the connection turns idle.
func (c *viewerConn) rearm() {
	if c.clean {
		c.scan, c.first, c.inName, c.lineLen, c.lastCR, c.longLine = true, true, false, 0, false, false
	}
}

// Close closes the connection, or parks it when its read was ended for that.
func (c *viewerConn) Close() error {
	if c.parked.Swap(false) {
		c.parkPending = true // parked by the StateClosed hook (park)
		return nil
	}
	return c.closeSocket()
}

// park hands the connection to the parker (from the StateClosed hook), and reports whether it
// did; otherwise the connection is closed.
func (c *viewerConn) park() bool {
	c.parkPending = false
	// The phase first: once parked, the connection may be served again at any moment.
	if c.watched != nil {
		c.watched.phase.Store(phaseParked)
	}
	if c.parker.park(c) {
		return true
	}
	_ = c.closeSocket()
	return false
}

// closeSocket closes the connection; lingering (see lingerTimeout) when linger is set.
func (c *viewerConn) closeSocket() error {
	// Bytes held for coalescing go out first, within the linger bound; a Write blocked on a
	// viewer that does not read holds wmu, and closing the socket is what ends it.
	if c.wmu.TryLock() {
		if c.held != nil {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(lingerTimeout))
			_ = c.flushHeldLocked()
		}
		c.wmu.Unlock()
	}
	if c.linger.Swap(false) {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, c.Conn, lingerBytes)
		}
	}
	err := c.Conn.Close()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return err
}

// ReadFrom keeps the socket's own ReadFrom (sendfile, splice) for bodies served from files.
func (c *viewerConn) ReadFrom(r io.Reader) (int64, error) {
	c.wmu.Lock()
	err := c.flushHeldLocked()
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	if c.batch != nil { // TLS: through Write, in batches of four records
		bp := recordBatchBufs.Get().(*[]byte)
		defer recordBatchBufs.Put(bp)
		return io.CopyBuffer(struct{ io.Writer }{c}, r, (*bp)[:cap(*bp)])
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
