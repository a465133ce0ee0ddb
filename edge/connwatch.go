package edge

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Phases of a watched connection.
const (
	phaseReading  int32 = iota // new, or a request is arriving: bounded by the read timeout
	phaseHandling              // the handler runs or the answer is being written: unbounded
	phaseIdle                  // between keep-alive requests: bounded by the idle timeout
	phaseParked                // idle and parked: the parker bounds it (park_linux.go)
)

// sweepHistory is how many sweeps' times connWatch remembers. With a sweep every tenth of the
// shortest timeout at most, it spans hundreds of timeouts; a phase older than that is overdue.
const sweepHistory = 4096

// connWatch enforces the viewer listener's read and idle timeouts (Config.ReadTimeout,
// Config.IdleTimeout) by sweeping the open connections every tick and closing the overdue ones.
// fasthttp's own ReadTimeout and IdleTimeout arm a socket deadline twice per request, which cost
// a 1 KiB hit about 3 % of its throughput (docs/performance.md, round 5); here a request costs a
// map lookup and two atomic stores in fasthttp's ConnState hook and one more in the handler.
// Closing a connection from the sweeper is what an expired deadline does: the blocked read
// fails and fasthttp drops the connection.
//
// The hooks do not read the clock: they note the current sweep number, and a phase that began
// during sweep s began before sweep s+1's time. Timeouts are counted from that later time, so a
// connection is never closed early, even when the sweeper was held up; it may be closed up to
// two ticks late.
type connWatch struct {
	readTimeout, idleTimeout time.Duration
	// parkAfter, when set, is how long a connection is idle before the sweep asks it to park
	// (viewerConn.requestPark); set before the sweeper starts.
	parkAfter time.Duration
	sweep     atomic.Int64 // number of the latest sweep
	conns     sync.Map     // net.Conn → *watchedConn
	closed    atomic.Uint64
	now       func() time.Time // the sweeper's clock: time.Now but in tests

	times [sweepHistory]time.Time // times[n % sweepHistory]: when sweep n began; sweeper only
}

type watchedConn struct {
	phase atomic.Int32
	since atomic.Int64 // the sweep number when the phase began
}

// newConnWatch returns a watch for the given timeouts. now is read by the sweeper only (the
// hooks never read a clock): the server passes time.Now, tests a clock they advance.
func newConnWatch(read, idle time.Duration, now func() time.Time) *connWatch {
	w := &connWatch{readTimeout: read, idleTimeout: idle, now: now}
	w.times[0] = now()
	return w
}

// connState is the viewer server's fasthttp ConnState hook.
func (w *connWatch) connState(c net.Conn, state fasthttp.ConnState) {
	switch state {
	case fasthttp.StateNew:
		wc := &watchedConn{}
		wc.since.Store(w.sweep.Load())
		if vc, ok := c.(*viewerConn); ok {
			vc.watched = wc
		}
		w.conns.Store(c, wc)
	case fasthttp.StateActive:
		w.set(c, phaseReading)
	case fasthttp.StateIdle:
		w.set(c, phaseIdle)
	case fasthttp.StateHijacked, fasthttp.StateClosed:
		if vc, ok := c.(*viewerConn); ok && vc.parkPending && vc.park() {
			return // parked, not closed: still watched, as parked
		}
		w.conns.Delete(c)
	}
}

// handling marks c's request as read: its answer may take as long as the viewer needs.
func (w *connWatch) handling(c net.Conn) { w.set(c, phaseHandling) }

func (w *connWatch) set(c net.Conn, phase int32) {
	var wc *watchedConn
	if vc, ok := c.(*viewerConn); ok {
		// The connection's own pointer: with thousands of connections a lookup in the map
		// (three per request) walks cache lines no other request touched.
		wc = vc.watched
	} else if v, ok := w.conns.Load(c); ok {
		wc = v.(*watchedConn)
	}
	if wc == nil {
		return
	}
	wc.since.Store(w.sweep.Load())
	wc.phase.Store(phase)
}

// run sweeps every tick until stop is closed.
func (w *connWatch) run(stop <-chan struct{}, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			w.sweepOnce()
		}
	}
}

// sweepOnce starts a new sweep and closes the connections whose phase is over its limit.
func (w *connWatch) sweepOnce() {
	n := w.sweep.Load() + 1
	w.sweep.Store(n)
	// Read the time after publishing n: a hook that noted n-1 ran before this instant.
	now := w.now()
	w.times[n%sweepHistory] = now
	w.conns.Range(func(k, v any) bool {
		wc := v.(*watchedConn)
		var limit time.Duration
		phase := wc.phase.Load()
		switch phase {
		case phaseReading:
			limit = w.readTimeout
		case phaseIdle:
			limit = w.idleTimeout
		default:
			return true
		}
		next := wc.since.Load() + 1 // the phase began before sweep next began
		if next >= n {
			return true // began during the previous sweep, less than a tick ago
		}
		if n-next < sweepHistory {
			elapsed := now.Sub(w.times[next%sweepHistory])
			if elapsed < limit {
				if w.parkAfter > 0 && phase == phaseIdle && elapsed >= w.parkAfter {
					if vc, ok := k.(*viewerConn); ok {
						vc.requestPark()
					}
				}
				return true
			}
		}
		if vc, ok := k.(*viewerConn); ok && vc.parkReq.Load() {
			return true // being parked: the parker keeps its idle timeout
		}
		// A viewer whose request arrives at this very instant loses it, as it would to a
		// deadline expiring at the same instant.
		w.closed.Add(1)
		w.conns.Delete(k)
		_ = k.(net.Conn).Close()
		return true
	})
}
