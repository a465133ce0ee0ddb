package health_test

import (
	"errors"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/steering/health"
	"github.com/duetcdn/duet/steering/hrw"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func hb(edge, state string) bus.Heartbeat {
	return bus.Heartbeat{Edge: edge, Region: "A", URL: "http://" + edge + ":8080", State: state}
}

func state(t *testing.T, tb *health.Table, edge string) hrw.State {
	t.Helper()
	s, _ := tb.Snapshot(0)
	for _, e := range s.Edges {
		if e.Heartbeat.Edge == edge {
			return e.State
		}
	}
	t.Fatalf("edge %s not in the table", edge)
	return 0
}

func newTable(t *testing.T) *health.Table {
	t.Helper()
	tb, err := health.New(health.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestMissedHeartbeatsTakeAnEdgeDownAndOneBringsItBack(t *testing.T) {
	tb := newTable(t)
	ch := tb.Heartbeat(hb("a1", bus.StateServing), t0)
	if len(ch) != 1 || ch[0].To != "up" || ch[0].Reason != health.ReasonNew || ch[0].From != "" {
		t.Fatalf("new edge: %+v", ch)
	}
	// Heartbeats every second: no change.
	for i := 1; i <= 5; i++ {
		if ch := tb.Heartbeat(hb("a1", bus.StateServing), t0.Add(time.Duration(i)*time.Second)); len(ch) != 0 {
			t.Fatalf("steady heartbeat changed state: %+v", ch)
		}
	}
	last := t0.Add(5 * time.Second)
	// Three intervals without a heartbeat are tolerated up to the boundary...
	if ch := tb.Tick(last.Add(3 * time.Second)); len(ch) != 0 {
		t.Fatalf("down at exactly 3 missed intervals: %+v", ch)
	}
	// ...and past it the edge is down.
	ch = tb.Tick(last.Add(3*time.Second + time.Millisecond))
	if len(ch) != 1 || ch[0].To != "down" || ch[0].From != "up" || ch[0].Reason != health.ReasonHeartbeats {
		t.Fatalf("after 3 missed heartbeats: %+v", ch)
	}
	if ch := tb.Tick(last.Add(4 * time.Second)); len(ch) != 0 {
		t.Fatalf("a down edge changed again: %+v", ch)
	}
	// One heartbeat: up again.
	ch = tb.Heartbeat(hb("a1", bus.StateServing), last.Add(5*time.Second))
	if len(ch) != 1 || ch[0].To != "up" || ch[0].Reason != health.ReasonRecovered {
		t.Fatalf("heartbeat after down: %+v", ch)
	}
}

func TestFailedProbesTakeAnEdgeDownUntilItAnswers(t *testing.T) {
	tb := newTable(t)
	tb.Heartbeat(hb("a1", bus.StateServing), t0)
	refused := errors.New("connection refused")
	if ch := tb.Probed("A", "a1", refused, t0.Add(100*time.Millisecond)); len(ch) != 0 {
		t.Fatalf("down after one failed probe: %+v", ch)
	}
	ch := tb.Probed("A", "a1", refused, t0.Add(600*time.Millisecond))
	if len(ch) != 1 || ch[0].To != "down" || ch[0].Reason != health.ReasonProbes {
		t.Fatalf("after 2 failed probes: %+v", ch)
	}
	// Heartbeats alone do not bring it back: viewers still cannot reach it.
	if ch := tb.Heartbeat(hb("a1", bus.StateServing), t0.Add(time.Second)); len(ch) != 0 {
		t.Fatalf("a heartbeat revived an edge that fails its probes: %+v", ch)
	}
	s, _ := tb.Snapshot(0)
	if e := s.Edges[0]; e.FailedProbes != 2 || e.LastProbeError != "connection refused" || e.DownReason != health.ReasonProbes {
		t.Fatalf("snapshot: %+v", e)
	}
	ch = tb.Probed("A", "a1", nil, t0.Add(1100*time.Millisecond))
	if len(ch) != 1 || ch[0].To != "up" {
		t.Fatalf("answering probe: %+v", ch)
	}
	// A success in between resets the count.
	tb.Probed("A", "a1", refused, t0.Add(1200*time.Millisecond))
	tb.Probed("A", "a1", nil, t0.Add(1300*time.Millisecond))
	if ch := tb.Probed("A", "a1", refused, t0.Add(1400*time.Millisecond)); len(ch) != 0 {
		t.Fatalf("failures not in a row took the edge down: %+v", ch)
	}
	// Results for unknown edges are dropped.
	if ch := tb.Probed("A", "zz", refused, t0); ch != nil {
		t.Fatalf("unknown edge: %+v", ch)
	}
}

func TestDrainingEdge(t *testing.T) {
	tb := newTable(t)
	tb.Heartbeat(hb("a1", bus.StateServing), t0)
	ch := tb.Heartbeat(hb("a1", bus.StateDraining), t0.Add(time.Second))
	if len(ch) != 1 || ch[0].To != "draining" || ch[0].Reason != health.ReasonDraining {
		t.Fatalf("draining: %+v", ch)
	}
	if got := state(t, tb, "a1"); got != hrw.Draining {
		t.Fatalf("state %v", got)
	}
	// Down wins over draining once its listener is gone.
	tb.Probed("A", "a1", errors.New("refused"), t0.Add(1100*time.Millisecond))
	if ch := tb.Probed("A", "a1", errors.New("refused"), t0.Add(1200*time.Millisecond)); len(ch) != 1 || ch[0].To != "down" {
		t.Fatalf("draining edge whose listener closed: %+v", ch)
	}
}

func TestForgetAndSnapshotVersions(t *testing.T) {
	tb, err := health.New(health.Config{ForgetAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tb.Heartbeat(hb("a2", bus.StateServing), t0)
	tb.Heartbeat(hb("a1", bus.StateServing), t0)
	s1, ok := tb.Snapshot(0)
	if !ok || len(s1.Edges) != 2 || s1.Edges[0].Heartbeat.Edge != "a1" {
		t.Fatalf("snapshot not sorted: %+v", s1)
	}
	if _, ok := tb.Snapshot(s1.Version); ok {
		t.Fatal("unchanged table gave a new snapshot")
	}
	tb.Heartbeat(hb("a1", bus.StateServing), t0.Add(59*time.Second))
	ch := tb.Tick(t0.Add(time.Minute))
	if len(ch) != 1 || ch[0].Edge != "a2" || ch[0].From != "up" || ch[0].To != health.ReasonForgotten {
		t.Fatalf("forget: %+v", ch)
	}
	if tb.Len() != 1 {
		t.Fatalf("table has %d edges, want 1", tb.Len())
	}
	if _, ok := tb.Snapshot(s1.Version); !ok {
		t.Fatal("changed table gave no new snapshot")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []health.Config{{HeartbeatInterval: -1}, {MissedHeartbeats: -1}, {FailedProbes: -2}, {ForgetAfter: time.Second}} {
		if _, err := health.New(c); !errors.Is(err, health.ErrInvalidConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
