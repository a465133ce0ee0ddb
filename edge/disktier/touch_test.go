package disktier

import (
	"fmt"
	"testing"

	"github.com/duetcdn/duet/edge/object"
)

// TestTouchKeepsEntry: an entry served from elsewhere (the memory tier) and touched survives
// CLOCK, while its untouched neighbours go.
func TestTouchKeepsEntry(t *testing.T) {
	t.Parallel()
	const size = 4 << 10
	s, _ := newStore(t, 64*(size+1024))
	put(t, s, "/hot", body(size, 1), object.Meta{})
	for i := range 200 {
		s.Touch("/hot")
		put(t, s, fmt.Sprintf("/cold/%d", i), body(size, uint64(i)), object.Meta{})
	}
	s.mu.RLock()
	_, hot := s.byHash[s.hashKey("/hot")]
	_, cold := s.byHash[s.hashKey("/cold/0")]
	s.mu.RUnlock()
	if !hot || cold {
		t.Fatalf("after 200 fills through a 64-entry tier: touched entry kept %v (want true), first cold entry kept %v (want false)", hot, cold)
	}
	s.Touch("/absent") // no entry: nothing happens
}
