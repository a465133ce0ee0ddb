package bus_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/testenv"
)

// TestCoreSubjectsCrossRegions: heartbeats and purge acknowledgements published in one region
// reach subscribers in the other, both ways.
func TestCoreSubjectsCrossRegions(t *testing.T) {
	t.Parallel()
	a, b := linkPair(t, nil)
	for _, tc := range []struct {
		name     string
		from, to *region
		subject  string
		wildcard string
	}{
		{"heartbeat B to A", b, a, bus.HealthSubject("B", "edge-1"), bus.HealthWildcard},
		{"heartbeat A to B", a, b, bus.HealthSubject("A", "edge-1"), bus.HealthWildcard},
		{"ack B to A", b, a, bus.PurgeAckSubject("B", "b1", "p1"), bus.PurgeAckWildcard},
		{"ack A to B", a, b, bus.PurgeAckSubject("A", "a1", "p2"), bus.PurgeAckWildcard},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := tc.to.nc.SubscribeSync(tc.wildcard)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			hb, _ := json.Marshal(bus.Heartbeat{Edge: "edge-1", Region: tc.from.name, State: bus.StateServing, At: time.Now().UTC()})
			var got string
			testenv.Eventually(t, 10*time.Second, func() bool {
				_ = tc.from.nc.Publish(tc.subject, hb)
				m, err := sub.NextMsg(20 * time.Millisecond)
				if err != nil {
					return false
				}
				got = m.Subject
				return true
			}, "%s never crossed from %s to %s", tc.subject, tc.from.name, tc.to.name)
			if got != tc.subject {
				t.Errorf("received on %q, want %q", got, tc.subject)
			}
		})
	}
}

// TestPurgeSourcing: each region's stream holds the other's purges; a republished id is dropped;
// ticks collapse to the latest per region, in both streams.
func TestPurgeSourcing(t *testing.T) {
	t.Parallel()
	a, b := linkPair(t, nil)
	a.watch(t)
	b.watch(t)
	stA := a.ensureStream(t, "B")
	stB := b.ensureStream(t, "A")
	ctx := t.Context()

	a.publishPurge(t, "from-a")
	b.publishPurge(t, "from-b")
	testenv.Eventually(t, 15*time.Second, func() bool { return b.hasPurge(t, "A", "from-a") }, "A's purge never reached B's stream")
	testenv.Eventually(t, 15*time.Second, func() bool { return a.hasPurge(t, "B", "from-b") }, "B's purge never reached A's stream")

	// The same id again: the stream drops it.
	if ack := a.publishPurge(t, "from-a"); !ack.Duplicate {
		t.Errorf("republished purge: PubAck.Duplicate = false, want true (seq %d)", ack.Sequence)
	}

	// Ticks: several per region, only the latest kept, in every stream.
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 3 {
		if err := bus.PublishTick(ctx, a.js, "A", base.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := bus.PublishTick(ctx, b.js, "B", base.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	wantTick := map[string]time.Time{"A": base.Add(2 * time.Second), "B": base.Add(2 * time.Minute)}
	for _, st := range []jetstream.Stream{stA, stB} {
		for rg, want := range wantTick {
			var tick bus.Tick
			testenv.Eventually(t, 15*time.Second, func() bool {
				m, err := st.GetLastMsgForSubject(ctx, bus.PurgeTickSubject(rg))
				if err != nil {
					return false
				}
				if err := json.Unmarshal(m.Data, &tick); err != nil {
					t.Fatalf("tick: %v", err)
				}
				return tick.At.Equal(want)
			}, "%s: latest tick of %s never became %s (last %s)", st.CachedInfo().Config.Name, rg, want, tick.At)
		}
	}

	// Now every stream holds exactly: one purge from each region (no duplicate), one tick per region.
	for _, r := range []*region{a, b} {
		for _, from := range []string{"A", "B"} {
			want := []string{"from-" + map[string]string{"A": "a", "B": "b"}[from]}
			if got := r.purgeIDs(t, from); !slices.Equal(got, want) {
				t.Errorf("stream of %s: purges of %s = %v, want %v", r.name, from, got, want)
			}
		}
		info, err := mustStream(t, r).Info(ctx, jetstream.WithSubjectFilter("duet.purge.*.tick"))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(info.State.Subjects); n != 2 {
			t.Errorf("stream of %s: %d tick subjects, want 2: %v", r.name, n, info.State.Subjects)
		}
		for subj, count := range info.State.Subjects {
			if count != 1 {
				t.Errorf("stream of %s: %d messages on %s, want 1", r.name, count, subj)
			}
		}
	}

	status, err := bus.SourceStatus(ctx, b.js, "B")
	if err != nil {
		t.Fatal(err)
	}
	if si, ok := status["A"]; !ok || si.Active < 0 || si.Active > bus.SourceStallAfter || si.Error != "" {
		t.Errorf("B's source status for A = %+v (present %v), want recently active without error", si, ok)
	}
}

// TestThirdRegion: hub and spoke. B and C both link to A; C's stream sources B's purges through
// A, and B's sources C's, and A's both.
func TestThirdRegion(t *testing.T) {
	t.Parallel()
	a, b := linkPair(t, nil)
	c := startRegion(t, "C", natsserver.Config{LeafRemotes: []string{a.leafRemote()}})
	waitCore(t, c, b, "test.link.cb", 10*time.Second)
	waitCore(t, b, c, "test.link.bc", 10*time.Second)
	for _, r := range []*region{a, b, c} {
		var others []string
		for _, o := range []string{"A", "B", "C"} {
			if o != r.name {
				others = append(others, o)
			}
		}
		r.ensureStream(t, others...)
		r.watch(t)
	}
	for _, r := range []*region{a, b, c} {
		r.publishPurge(t, "from-"+r.name)
	}
	for _, r := range []*region{a, b, c} {
		for _, from := range []string{"A", "B", "C"} {
			testenv.Eventually(t, 15*time.Second, func() bool { return r.hasPurge(t, from, "from-"+from) },
				"%s's purge never reached %s's stream", from, r.name)
		}
	}
	// Exactly once each: nothing sourced twice through the hub, nothing sourced back.
	for _, r := range []*region{a, b, c} {
		for _, from := range []string{"A", "B", "C"} {
			if got := r.purgeIDs(t, from); !slices.Equal(got, []string{"from-" + from}) {
				t.Errorf("stream of %s: purges of %s = %v, want one", r.name, from, got)
			}
		}
	}
}

func mustStream(t testing.TB, r *region) jetstream.Stream {
	t.Helper()
	st, err := r.js.Stream(t.Context(), bus.PurgeStreamName(r.name))
	if err != nil {
		t.Fatalf("stream of %s: %v", r.name, err)
	}
	return st
}
