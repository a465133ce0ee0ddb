package viewerstate_test

import (
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/viewerstate"
)

// TestClock: stamps only move forward, even when the wall clock steps back, and a stamp read
// from another region moves the clock past it, but never more than a minute ahead of the wall.
func TestClock(t *testing.T) {
	wall := time.UnixMilli(1_000_000)
	c := viewerstate.NewClock("eu", func() time.Time { return wall })
	s1 := c.Now()
	wall = wall.Add(-time.Second) // the wall clock steps back
	s2 := c.Now()
	if s2.Compare(s1) <= 0 || s2.Wall != s1.Wall || s2.Logical != 1 {
		t.Fatalf("after the wall stepped back: %+v then %+v", s1, s2)
	}
	remote := viewerstate.Stamp{Wall: wall.UnixMilli() + 5000, Logical: 7, Region: "us"}
	c.Observe(remote)
	if s3 := c.Now(); s3.Compare(remote) <= 0 {
		t.Fatalf("a stamp after observing %+v is %+v, not newer", remote, s3)
	}
	c.Observe(viewerstate.Stamp{Wall: wall.Add(time.Hour).UnixMilli(), Region: "us"})
	if s4 := c.Now(); s4.Wall > wall.Add(time.Minute).UnixMilli() {
		t.Fatalf("a stamp an hour ahead moved the clock to %v, more than a minute ahead of %v", s4.Time(), wall)
	}
	// Equal wall and counter: the region decides, the same everywhere.
	a, b := viewerstate.Stamp{Wall: 5, Region: "eu"}, viewerstate.Stamp{Wall: 5, Region: "us"}
	if a.Compare(b) >= 0 || b.Compare(a) <= 0 {
		t.Fatal("the tie between regions is not broken by name")
	}
}
