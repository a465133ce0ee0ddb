package fetch

import (
	"errors"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/testenv"
)

func TestFirstByte(t *testing.T) {
	t.Run("runs out", func(t *testing.T) {
		fb := StartFirstByte(t.Context(), 10*time.Millisecond, false)
		defer fb.Release()
		testenv.Eventually(t, 5*time.Second, fb.TimedOut, "the clock never ran out")
		if fb.Arrived() {
			t.Fatalf("arrived after the clock ran out")
		}
		if err := fb.WrapErr(fb.Context().Err()); !errors.Is(err, ErrTimeout) {
			t.Fatalf("wrapErr = %v, want ErrTimeout", err)
		}
	})
	t.Run("stops when the answer arrives", func(t *testing.T) {
		fb := StartFirstByte(t.Context(), time.Hour, false)
		if !fb.Arrived() {
			t.Fatalf("not arrived")
		}
		if fb.timer.Stop() {
			t.Fatalf("the clock still runs after the answer arrived")
		}
		if fb.Context().Err() != nil {
			t.Fatalf("context ended: %v", fb.Context().Err())
		}
		fb.Release()
		if fb.Context().Err() == nil || fb.TimedOut() {
			t.Fatalf("release: err %v, timed out %v", fb.Context().Err(), fb.TimedOut())
		}
	})
	t.Run("deferred start", func(t *testing.T) {
		fb := StartFirstByte(t.Context(), 10*time.Millisecond, true)
		defer fb.Release()
		if !fb.timer.Stop() { // running, but not with d: it was armed with "never"
			t.Fatalf("deferred clock not armed")
		}
		fb.Start()
		testenv.Eventually(t, 5*time.Second, fb.TimedOut, "the started clock never ran out")
	})
}
