package edge

import (
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Write coalescing on wrapped viewer connections. fasthttp sends a response whose header and
// body do not fit its write buffer with one writev, but only on a bare *net.TCPConn: on a
// viewerConn it fills the buffer with the header and the start of the body, writes that, then
// writes the rest, two writes and two TCP pushes per hit (-30 % req/s for 16 KiB memory hits on
// loopback). A viewerConn holds a write of exactly the buffer's size (the signature of that
// fill-and-flush) and sends it together with the next write with one writev. A held write that
// no write follows (a response that happens to end on the buffer's size) goes out after
// holdDelay at the latest; reading from a file (sendfile) and closing send it first.
const (
	// viewerWriteBuffer is fasthttp.Server.WriteBufferSize for the viewer server (New sets it).
	viewerWriteBuffer = 4096
	holdDelay         = time.Millisecond
	// tlsWriteBuffer is the viewer server's WriteBufferSize under TLS: one record's plaintext.
	tlsWriteBuffer = 16 << 10
)

// heldBufs pools the held writes' copies: a connection needs one only between two writes.
var heldBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, viewerWriteBuffer)
	return &b
}}

// Write sends p, holding a buffer-sized write to send it with the next one.
func (c *viewerConn) Write(p []byte) (int, error) {
	if c.batch != nil {
		// Each write is TLS records: fasthttp's buffer (tlsWriteBuffer) makes them full, and
		// the batch under the TLS connection sends one write's records together.
		c.batch.begin()
		n, err := c.Conn.Write(p)
		if ferr := c.batch.end(); err == nil && ferr != nil {
			return 0, ferr
		}
		return n, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.holdNext {
		// A header flushed alone: its body follows at once, in this goroutine, with the next
		// Write (or the response failed and the connection closes, which sends it): no timer.
		// Arming and stopping one per hit walks a timer heap of one timer per connection.
		c.holdNext = false
		c.holdLocked(p, false)
		return len(p), nil
	}
	if c.held != nil {
		heldLen := len(*c.held)
		// writev on a *net.TCPConn; the slice lives in c, so that writing it allocates nothing.
		c.vec[0], c.vec[1] = *c.held, p
		c.bufs = c.vec[:]
		n, err := c.bufs.WriteTo(c.Conn)
		c.vec[0], c.vec[1], c.bufs = nil, nil, nil
		c.releaseHeldLocked()
		m := max(int(n)-heldLen, 0)
		if err != nil {
			c.werr = err
			return m, err
		}
		return m, nil
	}
	if len(p) == viewerWriteBuffer {
		c.holdLocked(p, true)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// holdLocked adds p to the held bytes and, with timer, (re)arms the timer that sends them
// should no write follow. c.wmu held.
func (c *viewerConn) holdLocked(p []byte, timer bool) {
	if c.held == nil {
		c.held = heldBufs.Get().(*[]byte)
		*c.held = (*c.held)[:0]
	}
	*c.held = append(*c.held, p...)
	c.holding.Store(true)
	if !timer {
		return
	}
	if c.holdTimer == nil {
		c.holdTimer = time.AfterFunc(holdDelay, c.flushHeld)
	} else {
		c.holdTimer.Reset(holdDelay)
	}
	c.timerArmed = true
}

// idle sends what is still held when the connection turns idle: every response is written
// then, and a held header whose body never came (no timer watches it) must not wait for the
// next request. Called on the connection's goroutine, as every write and holdNext's setting are.
func (c *viewerConn) idle() {
	c.atIdle = true
	if !c.holdNext && !c.holding.Load() {
		return
	}
	c.wmu.Lock()
	c.holdNext = false
	_ = c.flushHeldLocked()
	c.wmu.Unlock()
}

// flushHeld is the hold timer's: the held write goes out alone.
func (c *viewerConn) flushHeld() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.flushHeldLocked()
}

// flushHeldLocked sends the held write, if any, and reports the connection's write error.
// c.wmu held.
func (c *viewerConn) flushHeldLocked() error {
	if c.held == nil {
		return c.werr
	}
	_, err := c.Conn.Write(*c.held)
	c.releaseHeldLocked()
	if err != nil {
		c.werr = err
	}
	return err
}

func (c *viewerConn) releaseHeldLocked() {
	if c.timerArmed {
		c.holdTimer.Stop()
		c.timerArmed = false
	}
	heldBufs.Put(c.held)
	c.held = nil
	c.holding.Store(false)
}

// Large memory hits. Even with coalescing, fasthttp copies a body it holds into its write buffer
// until the buffer is full, and Write copies that buffer to hold it: 8 KiB of copies per hit
// over 4 KiB, which a bare *net.TCPConn's writev does not make. A hitBody sends such a body from
// the entry itself: the response flushes its header alone (ImmediateHeaderFlush), the connection
// holds that header (holdNext), and the body, written straight through fasthttp's empty buffer,
// goes out with it in one writev.

// hitBody is a memory entry's bytes as a body stream, pooled: a hit must not allocate.
type hitBody struct{ r bytes.Reader }

var hitBodies = sync.Pool{New: func() any { return new(hitBody) }}

func (b *hitBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// WriteTo writes the rest of the body with one Write (fasthttp uses it when present).
func (b *hitBody) WriteTo(w io.Writer) (int64, error) { return b.r.WriteTo(w) }

// Close is fasthttp's signal that the response is written: the reader goes back to the pool.
func (b *hitBody) Close() error {
	b.r.Reset(nil)
	hitBodies.Put(b)
	return nil
}

// setHitBody makes body the response's body: for bodies over the write buffer on a viewerConn
// as a hitBody (see above), otherwise as fasthttp's own body bytes.
func setHitBody(ctx *fasthttp.RequestCtx, body []byte) {
	vc, ok := ctx.Conn().(*viewerConn)
	if !ok || vc.batch != nil || len(body) <= viewerWriteBuffer {
		ctx.Response.SetBodyRaw(body)
		return
	}
	b := hitBodies.Get().(*hitBody)
	b.r.Reset(body)
	vc.wmu.Lock()
	vc.holdNext = true
	vc.wmu.Unlock()
	ctx.Response.ImmediateHeaderFlush = true
	ctx.SetBodyStream(b, len(body))
}
