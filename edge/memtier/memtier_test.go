package memtier

import (
	"strconv"
	"sync"
	"testing"

	"github.com/duetcdn/duet/edge/object"
)

func entry(key string, size int) *Entry {
	return &Entry{Meta: object.Meta{Key: key, Size: int64(size)}, Body: make([]byte, size)}
}

func TestConfigIsValidated(t *testing.T) {
	for _, c := range []Config{{}, {MaxBytes: -1}, {MaxBytes: 10, MaxObjectBytes: 11}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestSetGetDel(t *testing.T) {
	tier, err := New(Config{MaxBytes: 1 << 20, MaxObjectBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer tier.Close()
	if !tier.Set(entry("/a", 1000)) {
		t.Fatal("small entry refused")
	}
	if e, ok := tier.Get("/a"); !ok || len(e.Body) != 1000 {
		t.Fatal("entry not found")
	}
	if tier.Set(entry("/big", 65<<10)) || tier.Fits(65<<10) {
		t.Fatal("object above MaxObjectBytes accepted")
	}
	if tier.Len() != 1 || tier.Bytes() != Cost(entry("/a", 1000)) {
		t.Fatalf("len %d bytes %d", tier.Len(), tier.Bytes())
	}
	tier.Del("/a")
	if _, ok := tier.Get("/a"); ok || tier.Len() != 0 {
		t.Fatal("deleted entry still there")
	}
}

// TestBudgetUnderConcurrentSets: bursts of Sets from many goroutines never take the tier over
// its budget (Set waits for ristretto to apply the write).
func TestBudgetUnderConcurrentSets(t *testing.T) {
	const budget = 2 << 20
	var evicted sync.Map
	tier, err := New(Config{MaxBytes: budget, MaxObjectBytes: 128 << 10, OnEvict: func(k string) { evicted.Store(k, true) }})
	if err != nil {
		t.Fatal(err)
	}
	defer tier.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tier.Set(entry("/"+strconv.Itoa(g)+"/"+strconv.Itoa(i), 32<<10))
				if b := tier.Bytes(); b > budget {
					t.Errorf("tier holds %d bytes, budget %d", b, budget)
					return
				}
			}
		}()
	}
	wg.Wait()
	if tier.Evictions() == 0 {
		t.Fatal("no evictions while writing 25x the budget")
	}
	n := 0
	evicted.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Fatal("OnEvict never called")
	}
}

func TestNilTier(t *testing.T) {
	var tier *Tier
	if _, ok := tier.Get("/x"); ok || tier.Set(entry("/x", 1)) || tier.Fits(1) || tier.Bytes() != 0 {
		t.Fatal("nil tier misbehaves")
	}
	tier.Del("/x")
	tier.Close()
}
