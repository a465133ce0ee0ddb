package edge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Parking idle viewer connections. fasthttp keeps a goroutine for every open connection,
// blocked in a read between keep-alive requests, holding its request context, its read buffer
// (max_header_bytes) and its write buffer: about 23 KiB of memory per idle viewer, where nginx
// keeps half a kilobyte (docs/performance.md, issue 19). A connection idle for
// idle_park_after is parked instead: its read is interrupted, fasthttp ends its loop as it does
// for a keep-alive connection the viewer closed (returning the context, the buffers and the
// goroutine to their pools), and its Close hands the socket to the parker instead of closing it.
// The parker watches parked sockets with an epoll instance of its own (no goroutine per
// connection) and serves a socket again, through fasthttp's ServeConn, when its next request
// arrives (or the viewer closes it); it closes those idle past idle_timeout itself. TLS
// connections are not parked (their records may hold read plaintext the socket does not show).
type parker struct {
	epfd int
	log  *slog.Logger
	// serve serves an unparked connection (on a goroutine of its own) until it closes or
	// parks again.
	serve func(net.Conn)
	// closed is told of each parked connection the parker closes (idle timeout, max_conns,
	// shutdown): it leaves the connection watch.
	closedConn func(net.Conn)
	// expired is told of each one closed at idle_timeout (the viewer timeouts' count).
	expired func()
	idle    time.Duration // idle_timeout: a parked connection idle this long in all is closed
	after   time.Duration // idle_park_after

	mu     sync.Mutex
	conns  map[int32]*parkedConn // by descriptor; guarded by mu
	closed bool                  // guarded by mu
	n      atomic.Int64          // len(conns), for the listener and the gauge
	done   chan struct{}         // closed when the loop has ended
}

type parkedConn struct {
	vc *viewerConn
	fd int
	// idleSince is when the connection turned idle, about (when it was parked, less
	// idle_park_after: the sweep that asks for parking is up to two ticks late).
	idleSince time.Time
}

// newParker starts a parker for connections idle for after, closing them once idle for idle;
// close stops it.
func newParker(log *slog.Logger, idle, after time.Duration, serve, closedConn func(net.Conn), expired func()) (*parker, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll for parked connections: %w", err)
	}
	p := &parker{epfd: epfd, log: log, serve: serve, closedConn: closedConn, expired: expired, idle: idle, after: after, conns: map[int32]*parkedConn{}, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// park takes over vc; false means the parker cannot (it is closed, or the socket is not one it
// can watch) and the caller closes vc.
func (p *parker) park(vc *viewerConn) bool {
	sc, ok := vc.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil || fd < 0 {
		return false
	}
	// The read deadline that interrupted fasthttp's read must not end the next one.
	if err := vc.Conn.SetReadDeadline(time.Time{}); err != nil {
		return false
	}
	vc.parkReq.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return false
	}
	p.conns[int32(fd)] = &parkedConn{vc: vc, fd: fd, idleSince: time.Now().Add(-p.after)}
	p.n.Add(1)
	return true
}

// take removes fd's connection from the parker (nil: not parked). p.mu held.
func (p *parker) takeLocked(fd int32) *parkedConn {
	pc, ok := p.conns[fd]
	if !ok {
		return nil
	}
	delete(p.conns, fd)
	p.n.Add(-1)
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, pc.fd, nil)
	return pc
}

// loop serves parked connections whose viewer sent something (or hung up), and once a second
// closes those idle past idle_timeout.
func (p *parker) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	lastSweep := time.Now()
	for {
		n, err := syscall.EpollWait(p.epfd, events, 1000)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			p.log.Error("parked connections: epoll_wait failed; closing them", "error", err)
			p.close()
		}
		var ready []*viewerConn
		var expired []*viewerConn
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = syscall.Close(p.epfd)
			return
		}
		for _, ev := range events[:max(n, 0)] {
			if pc := p.takeLocked(ev.Fd); pc != nil {
				ready = append(ready, pc.vc)
			}
		}
		if now := time.Now(); now.Sub(lastSweep) >= time.Second {
			lastSweep = now
			for fd, pc := range p.conns {
				if now.Sub(pc.idleSince) >= p.idle {
					p.takeLocked(fd)
					expired = append(expired, pc.vc)
				}
			}
		}
		p.mu.Unlock()
		for _, vc := range ready {
			go p.serve(vc)
		}
		for _, vc := range expired {
			p.expired() // counted before the viewer can see the close, as the sweeper does
			p.closeConn(vc)
		}
	}
}

// evictOne closes one parked connection, to make room for a new viewer under max_conns, and
// reports whether there was one.
func (p *parker) evictOne() bool {
	p.mu.Lock()
	var vc *viewerConn
	for fd, pc := range p.conns {
		p.takeLocked(fd)
		vc = pc.vc
		break
	}
	p.mu.Unlock()
	if vc == nil {
		return false
	}
	p.closeConn(vc)
	return true
}

// closeConn closes a connection taken out of the parker.
func (p *parker) closeConn(vc *viewerConn) {
	_ = vc.closeSocket()
	p.closedConn(vc)
}

// close closes every parked connection and stops the parker: connections that turn idle later
// are closed, not parked. Idempotent.
func (p *parker) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var all []*viewerConn
	for fd, pc := range p.conns {
		p.takeLocked(fd)
		all = append(all, pc.vc)
	}
	p.mu.Unlock()
	for _, vc := range all {
		p.closeConn(vc)
	}
}

// parked is how many connections are parked.
func (p *parker) parked() int64 {
	if p == nil {
		return 0
	}
	return p.n.Load()
}
