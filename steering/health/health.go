// Package health keeps steering's health table: which edges exist, where they are, whether they
// serve, and how loaded they are.
//
// Edges announce themselves: an edge is known from its first heartbeat (bus.Heartbeat, every
// second on duet.health.<region>.<edge>), and needs no static list. Two signals decide its state:
//
//   - passive: an edge that has sent no heartbeat for MissedHeartbeats × HeartbeatInterval is
//     down (its process, host or NATS link is gone);
//   - active: an edge whose last FailedProbes probes failed is down (it still announces itself,
//     but viewers cannot reach it; or it was killed and its last heartbeat is still recent).
//
// An edge is up again as soon as both signals are good again: a new heartbeat and a passing
// probe. An edge that announces "draining" is draining (no new viewers) while it is otherwise
// healthy. An edge not heard from for ForgetAfter is removed from the table.
//
// The table holds no clock and starts no goroutine: every method takes the time, so tests drive
// time by hand and never sleep. The owner calls Heartbeat for each message, Probed for each probe
// result, and Tick periodically (every probe interval is fine); each returns the state changes
// it caused, for the owner to log and publish.
package health

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/steering/hrw"
)

// ErrInvalidConfig is wrapped by New's errors.
var ErrInvalidConfig = errors.New("health: invalid config")

// Config tunes the table. The zero Config is usable: see each field's default.
type Config struct {
	// HeartbeatInterval is how often edges send heartbeats. 0 means 1s.
	HeartbeatInterval time.Duration
	// MissedHeartbeats: an edge is down after this many intervals without a heartbeat. 0 means 3.
	MissedHeartbeats int
	// FailedProbes: an edge is down after this many failed probes in a row. 0 means 2.
	FailedProbes int
	// ForgetAfter: an edge not heard from for this long leaves the table. 0 means 10m.
	ForgetAfter time.Duration
}

func (c *Config) fill() error {
	switch {
	case c.HeartbeatInterval < 0:
		return fmt.Errorf("%w: heartbeat interval %v is negative", ErrInvalidConfig, c.HeartbeatInterval)
	case c.MissedHeartbeats < 0:
		return fmt.Errorf("%w: missed heartbeats %d is negative", ErrInvalidConfig, c.MissedHeartbeats)
	case c.FailedProbes < 0:
		return fmt.Errorf("%w: failed probes %d is negative", ErrInvalidConfig, c.FailedProbes)
	case c.ForgetAfter < 0:
		return fmt.Errorf("%w: forget after %v is negative", ErrInvalidConfig, c.ForgetAfter)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.MissedHeartbeats == 0 {
		c.MissedHeartbeats = 3
	}
	if c.FailedProbes == 0 {
		c.FailedProbes = 2
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = 10 * time.Minute
	}
	if c.ForgetAfter <= time.Duration(c.MissedHeartbeats)*c.HeartbeatInterval {
		return fmt.Errorf("%w: forget after %v must exceed the %d missed heartbeats (%v)", ErrInvalidConfig,
			c.ForgetAfter, c.MissedHeartbeats, time.Duration(c.MissedHeartbeats)*c.HeartbeatInterval)
	}
	return nil
}

// Why an edge is down (Edge.DownReason, Change.Reason). Stable values, fit for logs and metrics.
const (
	ReasonHeartbeats = "missed-heartbeats"
	ReasonProbes     = "failed-probes"
	ReasonDraining   = "draining"
	ReasonRecovered  = "recovered"
	ReasonNew        = "new"
	ReasonForgotten  = "forgotten"
)

// Edge is one edge as the table knows it: its last heartbeat and the table's verdict.
type Edge struct {
	// Heartbeat is the last heartbeat received (name, region, URL, load...).
	Heartbeat bus.Heartbeat
	// State is the verdict: up, draining or down.
	State hrw.State
	// DownReason says why State is Down (ReasonHeartbeats or ReasonProbes); "" otherwise.
	DownReason string
	// LastHeartbeat is when the last heartbeat arrived (the table's clock, not the edge's).
	LastHeartbeat time.Time
	// FailedProbes counts the probes failed in a row; LastProbeError is the last failure's text.
	FailedProbes   int
	LastProbeError string
	// Since is when State last changed.
	Since time.Time
}

// Change is one state change of one edge.
type Change struct {
	Edge   string    `json:"edge"`
	Region string    `json:"region"`
	URL    string    `json:"url"`
	From   string    `json:"from"` // "" for a new edge
	To     string    `json:"to"`   // "up", "draining", "down", or "forgotten"
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Table is the health table. It is safe for concurrent use.
type Table struct {
	cfg Config

	mu      sync.Mutex       // guards edges and version
	edges   map[string]*Edge // by Key(region, edge)
	version uint64           // bumped on every change to edges, for snapshot caching
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &Table{cfg: cfg, edges: map[string]*Edge{}}, nil
}

// Config returns the table's Config with defaults filled in.
func (t *Table) Config() Config { return t.cfg }

// Key identifies an edge in the table: "<region>/<edge>".
func Key(region, edge string) string { return region + "/" + edge }

// Heartbeat records a heartbeat received at now. The caller checks the names (bus.ValidName).
func (t *Table) Heartbeat(hb bus.Heartbeat, now time.Time) []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.version++
	k := Key(hb.Region, hb.Edge)
	e, ok := t.edges[k]
	if !ok {
		e = &Edge{Since: now, State: hrw.Down}
		t.edges[k] = e
	}
	e.Heartbeat, e.LastHeartbeat = hb, now
	return t.judge(e, now, !ok, nil)
}

// Probed records the result of a probe of the edge region/edge that ended at now (err nil: it
// answered). A result for an edge the table does not know (forgotten meanwhile) is dropped.
func (t *Table) Probed(region, edge string, err error, now time.Time) []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.edges[Key(region, edge)]
	if !ok {
		return nil
	}
	t.version++
	if err != nil {
		e.FailedProbes++
		e.LastProbeError = err.Error()
	} else {
		e.FailedProbes, e.LastProbeError = 0, ""
	}
	return t.judge(e, now, false, nil)
}

// Tick re-judges every edge at now: edges whose heartbeats stopped go down, edges silent for
// ForgetAfter are removed. Changes are sorted by edge key.
func (t *Table) Tick(now time.Time) []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.edges))
	for k := range t.edges {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []Change
	for _, k := range keys {
		e := t.edges[k]
		if now.Sub(e.LastHeartbeat) >= t.cfg.ForgetAfter {
			delete(t.edges, k)
			t.version++
			out = append(out, Change{Edge: e.Heartbeat.Edge, Region: e.Heartbeat.Region, URL: e.Heartbeat.URL,
				From: e.State.String(), To: ReasonForgotten, Reason: ReasonForgotten, At: now})
			continue
		}
		before := len(out)
		out = t.judge(e, now, false, out)
		if len(out) > before {
			t.version++
		}
	}
	return out
}

// judge sets e's state from its signals at now, appending a Change to out when it changed.
// t.mu is held.
func (t *Table) judge(e *Edge, now time.Time, isNew bool, out []Change) []Change {
	state, reason := hrw.Up, ReasonRecovered
	switch {
	case now.Sub(e.LastHeartbeat) > time.Duration(t.cfg.MissedHeartbeats)*t.cfg.HeartbeatInterval:
		state, reason = hrw.Down, ReasonHeartbeats
	case e.FailedProbes >= t.cfg.FailedProbes:
		state, reason = hrw.Down, ReasonProbes
	case e.Heartbeat.State == bus.StateDraining:
		state, reason = hrw.Draining, ReasonDraining
	}
	if isNew {
		reason = ReasonNew
	}
	e.DownReason = ""
	if state == hrw.Down {
		e.DownReason = reason
	}
	if !isNew && state == e.State {
		return out
	}
	c := Change{Edge: e.Heartbeat.Edge, Region: e.Heartbeat.Region, URL: e.Heartbeat.URL, To: state.String(), Reason: reason, At: now}
	if !isNew {
		c.From = e.State.String()
	}
	e.State, e.Since = state, now
	return append(out, c)
}

// Snapshot is a copy of the table at one moment, edges sorted by region then name.
type Snapshot struct {
	Version uint64
	Edges   []Edge
}

// Snapshot copies the table. With the version of a previous snapshot, it returns ok false and no
// copy when nothing changed since.
func (t *Table) Snapshot(since uint64) (Snapshot, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if since != 0 && since == t.version {
		return Snapshot{}, false
	}
	s := Snapshot{Version: t.version, Edges: make([]Edge, 0, len(t.edges))}
	for _, e := range t.edges {
		s.Edges = append(s.Edges, *e)
	}
	slices.SortFunc(s.Edges, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.Heartbeat.Region, b.Heartbeat.Region), cmp.Compare(a.Heartbeat.Edge, b.Heartbeat.Edge))
	})
	return s, true
}

// Len is the number of edges in the table.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.edges)
}
