package edge

import (
	"testing"
	"time"
)

// TestFlightWakesReadersForHeldBytes: progress wakes readers only when the body has doubled,
// so bytes written just after a wake are held; they must still reach a waiting reader within
// wakeDelay, not only when the origin sends more (a low-latency part followed by a pause).
func TestFlightWakesReadersForHeldBytes(t *testing.T) {
	f := newFlight("k")
	f.progress(64 << 10) // first write: wakes at once
	got := make(chan int64, 1)
	go func() {
		n, _, _ := f.waitFor(64<<10 + 1)
		got <- n
	}()
	// Only once the reader waits can the test tell a wake from bytes it found on arrival.
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		waiting := f.waiting
		f.mu.Unlock()
		if waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader did not start waiting within 10 s")
		}
		time.Sleep(time.Millisecond) //nolint:forbidigo // poll interval inside a deadline
	}
	f.mu.Lock()
	wakesAt := f.nextWake
	f.mu.Unlock()
	if wakesAt <= 65<<10 {
		t.Fatalf("the next immediate wake is due at %d bytes: the test no longer tests the delayed wake", wakesAt)
	}
	f.progress(1 << 10) // less than double: held until the delayed wake
	select {
	case n := <-got:
		if n != 65<<10 {
			t.Fatalf("reader saw %d bytes, want %d", n, 65<<10)
		}
	case <-time.After(time.Second): // the origin sends nothing more: only the timer can wake it
		t.Fatal("a reader waiting for bytes already written was not woken within 1 s (wakeDelay is 2 ms)")
	}
}

// TestFlightWakeSchedule: for a 2 MiB body written in 64 KiB reads, readers are woken about
// six times (doubling), not on each of the 32 writes.
func TestFlightWakeSchedule(t *testing.T) {
	f := newFlight("k")
	wakes := 0
	for range 32 {
		before := f.nextWake
		f.progress(64 << 10)
		if f.nextWake != before {
			wakes++
		}
	}
	if wakes > 8 {
		t.Fatalf("%d immediate wakes for 32 writes, want at most 8", wakes)
	}
}
