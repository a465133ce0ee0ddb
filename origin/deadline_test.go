package origin

import (
	"errors"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/testenv"
)

func TestFirstByte(t *testing.T) {
	t.Run("runs out", func(t *testing.T) {
		fb := startFirstByte(t.Context(), 10*time.Millisecond, false)
		defer fb.release()
		testenv.Eventually(t, 5*time.Second, fb.timedOut, "the clock never ran out")
		if fb.arrived() {
			t.Fatalf("arrived after the clock ran out")
		}
		if err := fb.wrapErr(fb.ctx.Err()); !errors.Is(err, ErrTimeout) {
			t.Fatalf("wrapErr = %v, want ErrTimeout", err)
		}
	})
	t.Run("stops when the answer arrives", func(t *testing.T) {
		fb := startFirstByte(t.Context(), time.Hour, false)
		if !fb.arrived() {
			t.Fatalf("not arrived")
		}
		if fb.timer.Stop() {
			t.Fatalf("the clock still runs after the answer arrived")
		}
		if fb.ctx.Err() != nil {
			t.Fatalf("context ended: %v", fb.ctx.Err())
		}
		fb.release()
		if fb.ctx.Err() == nil || fb.timedOut() {
			t.Fatalf("release: err %v, timed out %v", fb.ctx.Err(), fb.timedOut())
		}
	})
	t.Run("deferred start", func(t *testing.T) {
		fb := startFirstByte(t.Context(), 10*time.Millisecond, true)
		defer fb.release()
		if !fb.timer.Stop() { // running, but not with d: it was armed with "never"
			t.Fatalf("deferred clock not armed")
		}
		fb.start()
		testenv.Eventually(t, 5*time.Second, fb.timedOut, "the started clock never ran out")
	})
}
