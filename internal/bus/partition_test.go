package bus_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/testenv"
)

// baselineEnv, set to 1, also runs the catch-up scenarios without WatchSources or KickSources, to
// measure how long the server's own retries take (about 40 s each, so not by default).
const baselineEnv = "DUET_BUS_BASELINE"

// catchUpBound is how soon after a link heals a purge stream must have caught up with
// WatchSources or KickSources (measured: 0.4-2 s; generous so that a busy machine does not fail
// the test).
const catchUpBound = 10 * time.Second

// baselineBound bounds the catch-up without WatchSources (the server's retry backoff reaches
// 2 minutes).
const baselineBound = 4 * time.Minute

// catchUpMode is how a scenario gets a purge stream to catch up after a link comes back.
type catchUpMode int

const (
	modeWatch       catchUpMode = iota // WatchSources runs in both regions
	modeKick                           // the test calls KickSources once the link is back
	modeServerRetry                    // neither: the server's own retries (the baseline)
)

func (m catchUpMode) String() string {
	return [...]string{"watch", "kick", "server-retry"}[m]
}

// catchUpModes runs a scenario in each mode (the baseline only when baselineEnv is set).
func catchUpModes(t *testing.T, scenario func(t *testing.T, mode catchUpMode)) {
	for _, mode := range []catchUpMode{modeWatch, modeKick, modeServerRetry} {
		t.Run(mode.String(), func(t *testing.T) {
			if mode == modeServerRetry && os.Getenv(baselineEnv) != "1" {
				t.Skipf("set %s=1 to measure the catch-up without WatchSources or KickSources (takes about a minute)", baselineEnv)
			}
			t.Parallel()
			scenario(t, mode)
		})
	}
}

// setUp ensures both purge streams and starts the watchers when mode asks for them.
func (m catchUpMode) setUp(t *testing.T, a, b *region) {
	t.Helper()
	dumpLogs(t, a, b)
	a.ensureStream(t, "B")
	b.ensureStream(t, "A")
	if m == modeWatch {
		a.watch(t)
		b.watch(t)
	}
}

// linkBack is called once core NATS crosses again; in modeKick it kicks r's stalled sources.
func (m catchUpMode) linkBack(t *testing.T, r *region) {
	t.Helper()
	if m != modeKick {
		return
	}
	kicked, err := bus.KickSources(t.Context(), r.js, r.name)
	if err != nil {
		t.Fatalf("kick sources of %s: %v", r.name, err)
	}
	t.Logf("KickSources(%s) restarted %v", r.name, kicked)
}

// checkCatchUp waits until to's stream holds purge lastID of region from, and returns how long
// after since that was.
func checkCatchUp(t *testing.T, to *region, from, lastID string, since time.Time, mode catchUpMode) time.Duration {
	t.Helper()
	bound := catchUpBound
	if mode == modeServerRetry {
		bound = baselineBound
	}
	testenv.Eventually(t, bound, func() bool { return to.hasPurge(t, from, lastID) },
		"%s's stream did not catch up with %s's purges", to.name, from)
	return time.Since(since)
}

// checkPurges fails unless to's stream holds exactly want (region from's purges), in order.
func checkPurges(t *testing.T, to *region, from string, want []string) {
	t.Helper()
	if got := to.purgeIDs(t, from); !slices.Equal(got, want) {
		t.Errorf("%s's stream: purges of %s = %v, want %v (each once, in order)", to.name, from, got, want)
	}
}

// TestPartitionCatchUp: the link between A and B is cut while both keep running; A accepts
// purges meanwhile; once B's stream has noticed (its source sent a retry into the cut link), the
// link heals, and B's stream gets every purge, in order, none twice. It logs how long the link
// and the stream took to come back.
func TestPartitionCatchUp(t *testing.T) {
	t.Parallel()
	catchUpModes(t, func(t *testing.T, mode catchUpMode) {
		var proxy *tcpProxy
		a, b := linkPair(t, func(remote string) string {
			u := mustURL(t, remote)
			proxy = newTCPProxy(t, u.Host)
			u.Host = proxy.addr()
			return u.String()
		})
		mode.setUp(t, a, b)
		want := []string{"before"}
		a.publishPurge(t, "before")
		testenv.Eventually(t, 15*time.Second, func() bool { return b.hasPurge(t, "A", "before") }, "sourcing never started")

		// Watch for B's source asking A's JetStream for a new consumer: once it does while the
		// link is down, that request is lost, and the source waits for its answer (30 s).
		spy, err := b.nc.SubscribeSync(bus.APIPrefix("A") + ".CONSUMER.CREATE." + bus.PurgeStreamName("A") + ".>")
		if err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		proxy.setCut(true)
		for i := range 5 {
			id := fmt.Sprintf("cut-%d", i)
			a.publishPurge(t, id) // A accepts purges while cut off
			want = append(want, id)
		}
		if _, err := spy.NextMsg(45 * time.Second); err != nil {
			t.Fatalf("B's source never retried during the cut: %v", err)
		}
		_ = spy.Unsubscribe()
		noticed := time.Since(cut)

		healed := time.Now()
		proxy.setCut(false)
		link := waitCore(t, a, b, "test.link.healed", 10*time.Second)
		mode.linkBack(t, b)
		catchUp := checkCatchUp(t, b, "A", want[len(want)-1], healed, mode)
		t.Logf("partition (%v): B's source retried %.1fs into the cut; after healing, core NATS crossed in %.2fs, B's stream caught up in %.2fs",
			mode, noticed.Seconds(), link.Seconds(), catchUp.Seconds())
		checkPurges(t, b, "A", want)
	})
}

// TestRestartCatchUp: region B's server is down while A accepts purges; it starts again on the
// same port and store, and its stream gets every purge, in order, none twice.
func TestRestartCatchUp(t *testing.T) {
	t.Parallel()
	catchUpModes(t, func(t *testing.T, mode catchUpMode) {
		a, b := linkPair(t, nil)
		mode.setUp(t, a, b)
		want := []string{"before"}
		a.publishPurge(t, "before")
		testenv.Eventually(t, 15*time.Second, func() bool { return b.hasPurge(t, "A", "before") }, "sourcing never started")

		b.stop()
		for i := range 5 {
			id := fmt.Sprintf("while-down-%d", i)
			a.publishPurge(t, id)
			want = append(want, id)
		}
		restarted := time.Now()
		b.start()
		link := waitCore(t, a, b, "test.link.restarted", 10*time.Second)
		mode.linkBack(t, b)
		catchUp := checkCatchUp(t, b, "A", want[len(want)-1], restarted, mode)
		t.Logf("restart of B (%v): core NATS crossed %.2fs after the restart began, B's stream caught up in %.2fs",
			mode, link.Seconds(), catchUp.Seconds())
		checkPurges(t, b, "A", want)
	})
}

// TestRegionGone: region A (the hub) is entirely gone; B keeps accepting purges into its own
// stream; when A comes back, A's stream sources B's purges.
func TestRegionGone(t *testing.T) {
	t.Parallel()
	catchUpModes(t, func(t *testing.T, mode catchUpMode) {
		a, b := linkPair(t, nil)
		mode.setUp(t, a, b)
		want := []string{"before"}
		b.publishPurge(t, "before")
		testenv.Eventually(t, 15*time.Second, func() bool { return a.hasPurge(t, "B", "before") }, "sourcing never started")

		a.stop()
		for i := range 5 {
			id := fmt.Sprintf("a-gone-%d", i)
			b.publishPurge(t, id) // B works alone
			want = append(want, id)
		}
		back := time.Now()
		a.start()
		link := waitCore(t, b, a, "test.link.back", 10*time.Second)
		mode.linkBack(t, a)
		catchUp := checkCatchUp(t, a, "B", want[len(want)-1], back, mode)
		t.Logf("region A gone and back (%v): core NATS crossed %.2fs after A's restart began, A's stream caught up in %.2fs",
			mode, link.Seconds(), catchUp.Seconds())
		checkPurges(t, a, "B", want)
	})
}
