package rendezvous

import (
	"strconv"
	"testing"
)

// TestScoreSpreadsAndSticks: keys spread evenly over members, and removing a member moves only
// its keys.
func TestScoreSpreadsAndSticks(t *testing.T) {
	members := []string{"a", "b", "c", "d", "e"}
	top := func(key string, ms []string) string {
		best, who := -1.0, ""
		for _, m := range ms {
			if s := Score(Hash(key), Hash(m), 0, false); s > best {
				best, who = s, m
			}
		}
		return who
	}
	count := map[string]int{}
	for i := range 10000 {
		key := "/k/" + strconv.Itoa(i)
		o := top(key, members)
		count[o]++
		if o != "e" && top(key, members[:4]) != o {
			t.Fatalf("%s moved from %s although only e left", key, o)
		}
	}
	for _, m := range members {
		if count[m] < 1800 || count[m] > 2200 {
			t.Errorf("%s owns %d of 10000 keys", m, count[m])
		}
	}
	if s := Score(1, 2, 2, true); !(s > 0) {
		t.Fatalf("weighted score %v", s)
	}
}
