package peers

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
)

func beat(edge, region, state string) bus.Heartbeat {
	return bus.Heartbeat{Edge: edge, Region: region, URL: "http://" + edge + ":8080", State: state}
}

// TestOwnerFollowsHealth: every edge of a region computes the same owner for a key; an edge
// that drains, stops beating or failed a request loses its keys at once, to the same successor
// on every edge, and only its keys move.
func TestOwnerFollowsHealth(t *testing.T) {
	now := time.Now()
	names := []string{"a", "b", "c", "d"}
	sets := map[string]*Set{}
	for _, n := range names {
		s, err := New(Config{Self: n, Region: "eu"})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range names {
			s.Observe(beat(o, "eu", bus.StateServing), now)
		}
		s.Observe(beat("x", "us", bus.StateServing), now) // another region: never an owner
		sets[n] = s
	}
	ownerSeenBy := func(self, key string, at time.Time) string {
		p, ok := sets[self].Owner(key, at)
		if !ok {
			return self
		}
		return p.Name
	}
	owners := map[string]string{}
	count := map[string]int{}
	for i := range 4000 {
		key := "/v/" + strconv.Itoa(i) + ".ts"
		o := ownerSeenBy("a", key, now)
		for _, n := range names[1:] {
			if got := ownerSeenBy(n, key, now); got != o {
				t.Fatalf("%s: a says %s owns it, %s says %s", key, o, n, got)
			}
		}
		owners[key] = o
		count[o]++
	}
	for _, n := range names {
		if count[n] < 800 || count[n] > 1200 {
			t.Errorf("%s owns %d of 4000 keys, want about 1000", n, count[n])
		}
	}
	// d drains: a, b and c move d's keys, and only those, to the same edges.
	for _, n := range names[:3] {
		sets[n].Observe(beat("d", "eu", bus.StateDraining), now)
	}
	for key, was := range owners {
		o := ownerSeenBy("a", key, now)
		if was != "d" && o != was {
			t.Fatalf("%s moved from %s to %s although %s is up", key, was, o, was)
		}
		if o == "d" {
			t.Fatalf("%s still owned by the draining edge", key)
		}
		for _, n := range names[1:3] {
			if got := ownerSeenBy(n, key, now); got != o {
				t.Fatalf("%s: a says %s, %s says %s", key, o, n, got)
			}
		}
	}
	// c fails a request seen from a: a leaves it out for the cooldown, then takes it back.
	sets["a"].Failed("c", now)
	for key, was := range owners {
		if was == "c" && ownerSeenBy("a", key, now.Add(time.Second)) == "c" {
			t.Fatalf("%s: c failed a second ago and still owns it", key)
		}
		if was == "c" && ownerSeenBy("a", key, now.Add(2900*time.Millisecond)) == "c" {
			t.Fatalf("%s: c is back before its cooldown ended", key)
		}
	}
	if alive := sets["a"].Alive(now.Add(2 * time.Second)); len(alive) != 1 || alive[0].Name != "b" { // c broken, d drains
		t.Fatalf("alive during c's cooldown: %v", alive)
	}
	// c beats again after its cooldown and is back; b has been silent for three heartbeats and
	// is gone.
	sets["a"].Observe(beat("c", "eu", bus.StateServing), now.Add(3100*time.Millisecond))
	if alive := sets["a"].Alive(now.Add(3100 * time.Millisecond)); len(alive) != 1 || alive[0].Name != "c" {
		t.Fatalf("alive with c back and b silent for 3.1s: %v", alive)
	}
	// A lone edge owns everything.
	lone, _ := New(Config{Self: "z", Region: "eu"})
	if _, ok := lone.Owner("/k", now); ok {
		t.Fatal("an edge with no peer sent a key to a peer")
	}
	b, _ := json.Marshal(beat("y", "eu", bus.StateServing))
	if err := lone.HandleHeartbeat(b, now); err != nil || len(lone.Alive(now)) != 1 {
		t.Fatalf("heartbeat message: %v %v", err, lone.Alive(now))
	}
	if err := lone.HandleHeartbeat([]byte("{"), now); err == nil {
		t.Fatal("a broken heartbeat was read")
	}
	if _, err := New(Config{Self: "a b", Region: "eu"}); err == nil {
		t.Fatal("an invalid edge name was accepted")
	}
}

func TestSignVerify(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	now := time.Unix(1_800_000_000, 0)
	r := Request{Method: "GET", URI: URI("/v/a.ts", "x=1"), Range: "bytes=0-9"}
	v := Sign(secret, "e1", now, r)
	if from, err := Verify(secret, v, now.Add(5*time.Second), r); err != nil || from != "e1" {
		t.Fatalf("verify: %q %v", from, err)
	}
	for name, c := range map[string]struct {
		secret []byte
		value  string
		at     time.Time
		r      Request
		want   error
	}{
		"other secret": {[]byte("another-secret-0123"), v, now, r, ErrSignature},
		"other URL":    {secret, v, now, Request{Method: "GET", URI: "/v/b.ts?x=1", Range: r.Range}, ErrSignature},
		"other range":  {secret, v, now, Request{Method: "GET", URI: r.URI}, ErrSignature},
		"other method": {secret, v, now, Request{Method: "HEAD", URI: r.URI, Range: r.Range}, ErrSignature},
		"too old":      {secret, v, now.Add(MaxSkew + time.Second), r, ErrExpired},
		"from future":  {secret, v, now.Add(-MaxSkew - time.Second), r, ErrExpired},
		"garbage":      {secret, "v1 x e1 00", now, r, ErrMalformed},
		"empty":        {secret, "", now, r, ErrMalformed},
		"v2":           {secret, "v2" + v[2:], now, r, ErrMalformed},
	} {
		if _, err := Verify(c.secret, c.value, c.at, c.r); err != c.want { //nolint:errorlint // sentinels, returned as they are
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// FuzzVerify: Verify reads a header any viewer can send; it never panics, and accepts a value
// only when it is exactly what Sign makes.
func FuzzVerify(f *testing.F) {
	secret := []byte("0123456789abcdef0123")
	now := time.Unix(1_800_000_000, 0)
	r := Request{Method: "GET", URI: "/a"}
	f.Add(Sign(secret, "e1", now, r))
	f.Add("v1 1800000000 e1 " + string(make([]byte, 64)))
	f.Add("v1 -1 e 00")
	f.Add("v1 99999999999999999999 e1 ab")
	f.Add("v1  e1 ")
	f.Fuzz(func(t *testing.T, value string) {
		from, err := Verify(secret, value, now, r)
		if err != nil {
			return
		}
		if Sign(secret, from, now.Add(time.Duration(0)), r) != value && !sameSecond(secret, from, value, now, r) {
			t.Fatalf("accepted %q, which Sign does not make", value)
		}
	})
}

// sameSecond: value is what Sign made for from at some second within MaxSkew of now.
func sameSecond(secret []byte, from, value string, now time.Time, r Request) bool {
	for d := -MaxSkew; d <= MaxSkew; d += time.Second {
		if Sign(secret, from, now.Add(d), r) == value {
			return true
		}
	}
	return false
}
