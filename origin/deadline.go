package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// firstByte bounds the time until an origin answers (its response headers) and leaves the body
// bounded only by the caller's context. A context.WithTimeout or an http.Client.Timeout would also
// cut the body of a large object that is still streaming.
//
// It keeps the context it derives: that context lives exactly as long as one fetch.
type firstByte struct {
	ctx    context.Context
	d      time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

// startFirstByte derives a context from parent that is cancelled, with an ErrTimeout cause, d after
// the clock starts, unless the answer arrives first. The clock starts now, or with deferStart only
// when start is called (Forward starts it once the request body has been sent).
func startFirstByte(parent context.Context, d time.Duration, deferStart bool) *firstByte {
	ctx, cancel := context.WithCancelCause(parent)
	f := &firstByte{ctx: ctx, d: d, cancel: cancel}
	first := d
	if deferStart {
		first = math.MaxInt64
	}
	f.timer = time.AfterFunc(first, func() {
		cancel(fmt.Errorf("%w: no response within %s", ErrTimeout, d))
	})
	return f
}

// start (re)starts the clock from now, unless it has already run out.
func (f *firstByte) start() {
	if !f.timedOut() {
		f.timer.Reset(f.d)
	}
}

// timedOut reports whether the clock ran out.
func (f *firstByte) timedOut() bool { return errors.Is(context.Cause(f.ctx), ErrTimeout) }

// arrived stops the clock once the answer is in. It returns false when the clock had already run
// out: the context is then cancelled and the body unusable.
func (f *firstByte) arrived() bool {
	f.timer.Stop()
	return !f.timedOut()
}

// release stops the clock and frees the context: when the body is closed, or the fetch failed.
func (f *firstByte) release() {
	f.timer.Stop()
	f.cancel(nil)
}

// wrapErr returns err, or when the clock ran out an error that wraps ErrTimeout and keeps err's
// text.
func (f *firstByte) wrapErr(err error) error {
	if cause := context.Cause(f.ctx); errors.Is(cause, ErrTimeout) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// releaseBody closes the body, then releases the fetch's context; once.
type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
