// Package fetch holds what the origin clients (HTTP, S3) share to fetch from an origin: the
// first-byte deadline, the connection pool, and the timeout error.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// FirstByte bounds the time until an origin answers (its response headers) and leaves the body
// bounded only by the caller's context. A context.WithTimeout or an http.Client.Timeout would also
// cut the body of a large object that is still streaming.
//
// It keeps the context it derives: that context lives exactly as long as one fetch.
type FirstByte struct {
	ctx    context.Context
	d      time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

// StartFirstByte derives a context from parent that is cancelled, with an ErrTimeout cause, d after
// the clock starts, unless the answer arrives first. The clock starts now, or with deferStart only
// when start is called (HTTP Forward starts it once the request body has been sent).
func StartFirstByte(parent context.Context, d time.Duration, deferStart bool) *FirstByte {
	ctx, cancel := context.WithCancelCause(parent)
	f := &FirstByte{ctx: ctx, d: d, cancel: cancel}
	first := d
	if deferStart {
		first = math.MaxInt64
	}
	f.timer = time.AfterFunc(first, func() {
		cancel(fmt.Errorf("%w: no response within %s", ErrTimeout, d))
	})
	return f
}

// Start (re)starts the clock from now, unless it has already run out.
func (f *FirstByte) Start() {
	if !f.TimedOut() {
		f.timer.Reset(f.d)
	}
}

// TimedOut reports whether the clock ran out.
func (f *FirstByte) TimedOut() bool { return errors.Is(context.Cause(f.ctx), ErrTimeout) }

// Arrived stops the clock once the answer is in. It returns false when the clock had already run
// out: the context is then cancelled and the body unusable.
func (f *FirstByte) Arrived() bool {
	f.timer.Stop()
	return !f.TimedOut()
}

// Context is the fetch's context: cancelled when the clock runs out or the fetch is released.
func (f *FirstByte) Context() context.Context { return f.ctx }

// Release stops the clock and frees the context: when the body is closed, or the fetch failed.
func (f *FirstByte) Release() {
	f.timer.Stop()
	f.cancel(nil)
}

// WrapErr returns err, or when the clock ran out an error that wraps ErrTimeout and keeps err's
// text.
func (f *FirstByte) WrapErr(err error) error {
	if cause := context.Cause(f.ctx); errors.Is(cause, ErrTimeout) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// ReleaseBody closes the body, then releases the fetch's context; once.
type ReleaseBody struct {
	io.ReadCloser
	once    sync.Once
	Release func()
}

func (b *ReleaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.Release)
	return err
}

// ErrTimeout is the cause of a FirstByte's context when the clock ran out (origin.ErrTimeout is
// this error).
var ErrTimeout = errors.New("origin did not answer in time")
