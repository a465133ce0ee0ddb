//go:build !linux

package edge

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// parker parks idle viewer connections on Linux (park_linux.go); elsewhere there is none and
// idle connections keep their goroutine and buffers.
type parker struct{}

func newParker(*slog.Logger, time.Duration, time.Duration, func(net.Conn), func(net.Conn), func()) (*parker, error) {
	return nil, errors.New("parking idle connections needs Linux (epoll)")
}

func (p *parker) park(*viewerConn) bool { return false }
func (p *parker) evictOne() bool        { return false }
func (p *parker) close()                {}
func (p *parker) parked() int64         { return 0 }
