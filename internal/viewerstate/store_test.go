package viewerstate_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/internal/viewerstate"
)

const viewer = "0123456789abcdef0123456789abcdef"

func ptr[T any](v T) *T { return &v }

// put writes u for viewer's title in r, failing the test on an error.
func put(t *testing.T, r *region, viewer, title string, u viewerstate.TitleUpdate) viewerstate.TitleState {
	t.Helper()
	st, err := r.store.PutTitle(t.Context(), viewer, title, u)
	if err != nil {
		t.Fatalf("put %s/%s in %s: %v", viewer, title, r.name, err)
	}
	return st
}

// same strips what differs between regions by design (who answered).
func same(s viewerstate.TitleState) string {
	s.ServedBy = ""
	b, _ := json.Marshal(s)
	return string(b)
}

// TestWriteInAReadableInB: a write in region A is readable in region B within 1 s (p99 of
// 1,000 writes; the figures are logged).
func TestWriteInAReadableInB(t *testing.T) {
	a, b, _ := linkedPair(t)
	const writes = 1000
	lat := make([]time.Duration, 0, writes)
	for i := range writes {
		pos := float64(i + 1)
		put(t, a, viewer, "film", viewerstate.TitleUpdate{Position: &pos})
		began := time.Now()
		deadline := began.Add(10 * time.Second)
		for {
			st, err := b.store.Title(t.Context(), viewer, "film")
			if err == nil && st.Position != nil && *st.Position == pos {
				if st.PositionWrittenIn != "A" || st.ServedBy != "B" {
					t.Fatalf("write %d read in B: %+v, want written in A and served by B", i, st)
				}
				break
			}
			if err != nil && !errors.Is(err, viewerstate.ErrNotFound) {
				t.Fatalf("read in B: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %d (position %v) not readable in B within 10 s: %+v %v", i, pos, st, err)
			}
			time.Sleep(time.Millisecond) //nolint:forbidigo // the poll interval of a deadline loop
		}
		lat = append(lat, time.Since(began))
	}
	slices.Sort(lat)
	p50, p99, worst := lat[writes/2], lat[writes*99/100-1], lat[writes-1]
	t.Logf("A→B readable after: p50 %s, p99 %s, max %s (%d writes)", p50, p99, worst, writes)
	if p99 > time.Second {
		t.Errorf("p99 %s, want within 1 s", p99)
	}
	// B measured the lag of what arrived from A (its watch starts with the store, so the first
	// writes may come before it).
	testenv.Eventually(t, 5*time.Second, func() bool {
		return histogramCount(t, b, "duet_viewer_state_replication_lag_seconds", "A", "B") >= writes/2
	}, "B's replication lag histogram from A did not count the writes")
}

// histogramCount is the sample count of r's histogram name{from,to}.
func histogramCount(t *testing.T, r *region, name, from, to string) uint64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["from"] == from && labels["to"] == to {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// counterValue is the value of r's counter name.
func counterValue(t *testing.T, r *region, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestPartitionConverges: with the link cut, writes in both regions to one viewer converge after
// the link heals to what the conflict rule gives, the same in both regions; an erasure in A
// during the cut is not undone by B's older writes.
func TestPartitionConverges(t *testing.T) {
	a, b, link := linkedPair(t)
	const erased = "fedcba9876543210fedcba9876543210"
	// Before the cut: both regions know the viewer at 100 s, and the erased viewer's state.
	put(t, a, viewer, "film", viewerstate.TitleUpdate{Position: ptr(100.0), Rendition: ptr("480p")})
	put(t, b, erased, "film", viewerstate.TitleUpdate{Position: ptr(50.0), Audio: ptr("en")})
	if _, err := a.store.PutSettings(t.Context(), viewer, viewerstate.SettingsUpdate{"lang": ptr("en"), "volume": ptr("0.5")}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		x, err1 := b.store.Title(t.Context(), viewer, "film")
		y, err2 := a.store.Title(t.Context(), erased, "film")
		_, err3 := b.store.Settings(t.Context(), viewer)
		return err1 == nil && err2 == nil && err3 == nil && x.Position != nil && *x.Position == 100 && y.Position != nil
	}, "the state before the cut did not replicate")

	link.setCut(true)
	// The cut shows: a write in A no longer reaches B.
	put(t, a, viewer, "probe", viewerstate.TitleUpdate{Position: ptr(1.0)})
	time.Sleep(500 * time.Millisecond) //nolint:forbidigo // nothing to poll for: the write must NOT arrive
	if _, err := b.store.Title(t.Context(), viewer, "probe"); !errors.Is(err, viewerstate.ErrNotFound) {
		t.Fatalf("the link is cut but a write in A reached B (%v)", err)
	}
	tick := func() { time.Sleep(5 * time.Millisecond) } //nolint:forbidigo // distinct wall clock stamps, for a readable order
	// During the cut, interleaved: A plays on to 150 s; B's viewer seeks back to 30 s (the newest
	// intent) and plays on to 35 s; then A, which has not heard of the seek, plays on to 170 s:
	// the newest write, but in the old epoch (so neither "last write wins" nor "furthest wins"
	// gives the rule's answer). Choices on both sides.
	put(t, a, viewer, "film", viewerstate.TitleUpdate{Position: ptr(150.0), Subtitle: ptr("de")})
	tick()
	put(t, b, viewer, "film", viewerstate.TitleUpdate{Position: ptr(30.0), Seek: true, Audio: ptr("fr")})
	tick()
	put(t, b, viewer, "film", viewerstate.TitleUpdate{Position: ptr(35.0), Subtitle: ptr("fr")})
	tick()
	put(t, a, viewer, "film", viewerstate.TitleUpdate{Position: ptr(170.0), Rendition: ptr("720p")})
	tick()
	if _, err := b.store.PutSettings(t.Context(), viewer, viewerstate.SettingsUpdate{"lang": ptr("fr")}); err != nil {
		t.Fatal(err)
	}
	tick()
	if _, err := a.store.PutSettings(t.Context(), viewer, viewerstate.SettingsUpdate{"volume": nil}); err != nil {
		t.Fatal(err)
	}
	// The erased viewer: B writes (older than the erasure), then A erases.
	put(t, b, erased, "film", viewerstate.TitleUpdate{Position: ptr(60.0)})
	put(t, b, erased, "other", viewerstate.TitleUpdate{Position: ptr(5.0)})
	tick()
	if err := a.store.Erase(t.Context(), erased); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Title(t.Context(), erased, "film"); !errors.Is(err, viewerstate.ErrNotFound) {
		t.Fatalf("erased in A, A still reads %v", err)
	}

	healed := time.Now()
	link.setCut(false)
	// The rule's result: B's seek began the newest epoch (30 s), and B played on in it (35 s);
	// A's 170 s belongs to the older epoch. Choices: newest write each. Settings: lang fr (B,
	// later), volume removed (A, later).
	want := func(st viewerstate.TitleState) bool {
		return st.Position != nil && *st.Position == 35 && st.PositionWrittenIn == "B" &&
			st.Rendition == "720p" && st.Audio == "fr" && st.Subtitle == "fr"
	}
	var sa, sb viewerstate.TitleState
	testenv.Eventually(t, 30*time.Second, func() bool {
		var err1, err2 error
		sa, err1 = a.store.Title(t.Context(), viewer, "film")
		sb, err2 = b.store.Title(t.Context(), viewer, "film")
		return err1 == nil && err2 == nil && same(sa) == same(sb) && want(sa)
	}, "after healing the regions did not converge to the rule's result: A %+v, B %+v", &sa, &sb)
	t.Logf("converged %s after the link healed: %s", time.Since(healed).Round(time.Millisecond), same(sa))
	if counterValue(t, a, "duet_viewer_state_conflicts_resolved_total") == 0 || counterValue(t, b, "duet_viewer_state_conflicts_resolved_total") == 0 {
		t.Error("the regions merged differing copies but counted no conflict resolved")
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		x, err1 := a.store.Settings(t.Context(), viewer)
		y, err2 := b.store.Settings(t.Context(), viewer)
		return err1 == nil && err2 == nil && fmt.Sprint(x.Settings) == "map[lang:fr]" && fmt.Sprint(y.Settings) == "map[lang:fr]"
	}, "settings did not converge to lang=fr without volume")

	// The erasure reached B, and B's older writes did not undo it: nothing in either region.
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, r := range []*region{a, b} {
			for _, title := range []string{"film", "other"} {
				if _, err := r.store.Title(t.Context(), erased, title); !errors.Is(err, viewerstate.ErrNotFound) {
					return false
				}
			}
		}
		return true
	}, "the erasure in A did not hold in both regions")
	// B removed its own copies too (not only hidden): its bucket holds no data of the viewer.
	kv, err := b.js.KeyValue(t.Context(), "duet_viewers_B")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		l, err := kv.ListKeysFiltered(t.Context(), "*."+erased+".t.>")
		if err != nil {
			return false
		}
		n := 0
		for range l.Keys() {
			n++
		}
		return n == 0
	}, "B still stores the erased viewer's titles")
	// A write after the erasure shows, in both regions.
	put(t, b, erased, "film", viewerstate.TitleUpdate{Position: ptr(3.0)})
	testenv.Eventually(t, 10*time.Second, func() bool {
		st, err := a.store.Title(t.Context(), erased, "film")
		return err == nil && st.Position != nil && *st.Position == 3
	}, "a write after the erasure did not show in A")
}

// TestConcurrentWritesInOneRegion: two steering instances of one region writing one viewer's
// settings at once lose none of each other's (compare and set on the region's copy): every write
// that succeeded is there.
func TestConcurrentWritesInOneRegion(t *testing.T) {
	srv := startServer(t, natsserver.Config{Region: "A"})
	one := openStore(t, "A", srv, []string{"A", "B"}, bus.ConnConfig{})
	two := openStore(t, "A", srv, []string{"A", "B"}, bus.ConnConfig{})
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stored []string
	busy := 0
	for i := range n {
		st := []*region{one, two}[i%2]
		name := fmt.Sprintf("k%02d", i)
		wg.Go(func() {
			_, err := st.store.PutSettings(t.Context(), viewer, viewerstate.SettingsUpdate{name: ptr("v")})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				stored = append(stored, name)
			case errors.Is(err, viewerstate.ErrBusy):
				busy++
			default:
				t.Errorf("concurrent write: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := one.store.Settings(t.Context(), viewer)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range stored {
		if _, ok := got.Settings[k]; !ok {
			t.Errorf("setting %s was stored but is lost: %v", k, got.Settings)
		}
	}
	if len(stored) < n/2 {
		t.Errorf("only %d of %d concurrent writes succeeded (%d busy)", len(stored), n, busy)
	}
	t.Logf("%d of %d concurrent writes stored, %d answered busy", len(stored), n, busy)
}
