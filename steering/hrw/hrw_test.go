package hrw

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var (
	paris     = Point{48.8566, 2.3522}
	frankfurt = Point{50.1109, 8.6821}
	virginia  = Point{38.9072, -77.0369}
	tokyo     = Point{35.6762, 139.6503}
	london    = Point{51.5074, -0.1278}
	newYork   = Point{40.7128, -74.0060}
)

func newPicker(t testing.TB, cfg Config) *Picker {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func edges(ids ...string) []Edge {
	out := make([]Edge, len(ids))
	for i, id := range ids {
		out[i] = Edge{ID: id, Capacity: 100}
	}
	return out
}

// topology is three regions with two edges each.
func topology() []Region {
	return []Region{
		{Name: "eu", Loc: frankfurt, Edges: edges("eu-1", "eu-2")},
		{Name: "us", Loc: virginia, Edges: edges("us-1", "us-2")},
		{Name: "ap", Loc: tokyo, Edges: edges("ap-1", "ap-2")},
	}
}

// ids names the chosen edges.
func ids(regions []Region, d Decision) []string {
	out := make([]string, len(d.Choices))
	for i, c := range d.Choices {
		out[i] = regions[c.Region].Edges[c.Edge].ID
	}
	return out
}

func TestDistanceKM(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b Point
		want float64 // km, from published great-circle figures
	}{
		{paris, london, 344},
		{london, newYork, 5570},
		{Point{0, 0}, Point{0, 180}, math.Pi * earthRadiusKM},
		{Point{90, 0}, Point{-90, 0}, math.Pi * earthRadiusKM},
		{tokyo, tokyo, 0},
		{Point{0, 179.5}, Point{0, -179.5}, 111.2}, // across the antimeridian
	} {
		got := DistanceKM(tc.a, tc.b)
		if math.Abs(got-tc.want) > tc.want*0.005+0.01 {
			t.Errorf("DistanceKM(%v, %v) = %.1f, want %.1f", tc.a, tc.b, got, tc.want)
		}
		if back := DistanceKM(tc.b, tc.a); math.Abs(back-got) > 1e-9 {
			t.Errorf("not symmetric: %v vs %v", got, back)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	if got := p.Config(); got.EdgeLoadFactor != 1 || got.RegionLoadFactor != 1 || got.BalanceFactor != 1.25 || got.BalanceFloor != 0.1 {
		t.Fatalf("defaults: %+v", got)
	}
	for _, cfg := range []Config{
		{EdgeLoadFactor: -1},
		{RegionLoadFactor: math.NaN()},
		{EdgeLoadFactor: math.Inf(1)},
		{BalanceFactor: 0.9},
		{BalanceFactor: math.NaN()},
		{BalanceFloor: -0.1},
		{BalanceFloor: 1.5},
		{MaxChoices: -1},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}
}

func TestRouteRegions(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{DefaultRegion: "us"})
	regions := topology()
	// Each region's key edge, as plain rendezvous hashing has it.
	key := "/vod/abc"
	top := func(r int) string { return regions[r].Edges[Rank(key, regions[r].Edges)[0]].ID }

	tests := []struct {
		name       string
		req        Request
		wantRegion []string // the region of each choice, in order
		reason     Reason
	}{
		{"paris goes to eu", Request{Key: key, From: paris, Located: true}, []string{"eu", "eu", "us", "us", "ap", "ap"}, ReasonNearest},
		{"new york goes to us", Request{Key: key, From: newYork, Located: true}, []string{"us", "us", "eu", "eu", "ap", "ap"}, ReasonNearest},
		{"tokyo goes to ap", Request{Key: key, From: tokyo, Located: true}, []string{"ap", "ap", "eu", "eu", "us", "us"}, ReasonNearest},
		{"unknown goes to the default region", Request{Key: key}, []string{"us", "us", "eu", "eu", "ap", "ap"}, ReasonDefaultRegion},
		{"unknown but placed in ap starts there", Request{Key: key, Region: "ap"}, []string{"ap", "ap", "eu", "eu", "us", "us"}, ReasonDefaultRegion},
		{"a located client's region is ignored", Request{Key: key, From: paris, Located: true, Region: "ap"}, []string{"eu", "eu", "us", "us", "ap", "ap"}, ReasonNearest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.Route(nil, tc.req, regions)
			var got []string
			for _, c := range d.Choices {
				got = append(got, regions[c.Region].Name)
			}
			if !slices.Equal(got, tc.wantRegion) || d.Reason != tc.reason {
				t.Fatalf("regions %v reason %s; want %v %s", got, d.Reason, tc.wantRegion, tc.reason)
			}
			first := d.Choices[0]
			if id := regions[first.Region].Edges[first.Edge].ID; id != top(first.Region) {
				t.Fatalf("primary %s, want the key's edge %s", id, top(first.Region))
			}
		})
	}
}

func TestRouteUnknownWithoutDefault(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{DefaultRegion: "nowhere"})
	regions := topology()
	d := p.Route(nil, Request{Key: "/k"}, regions)
	// The regions' own order.
	if r := regions[d.Choices[0].Region].Name; r != "eu" || d.Reason != ReasonDefaultRegion {
		t.Fatalf("got %s %s", r, d.Reason)
	}
	if r := regions[d.Choices[2].Region].Name; r != "us" {
		t.Fatalf("second region %s", r)
	}
}

func TestRouteSpills(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{DefaultRegion: "eu"})
	key := "/live/ch7"
	fromParis := Request{Key: key, From: paris, Located: true}
	base := topology()
	euTop := Rank(key, base[0].Edges)[0]
	euOther := 1 - euTop

	type mutate func(rs []Region)
	tests := []struct {
		name    string
		req     Request
		mut     mutate
		first   string // region/edge of the primary: "eu-top", "eu-other", or a region name for its key edge
		reason  Reason
		missing []string // edge IDs that must not appear
	}{
		{"all well", fromParis, func([]Region) {}, "eu-top", ReasonNearest, nil},
		{"key edge down", fromParis, func(rs []Region) { rs[0].Edges[euTop].State = Down }, "eu-other", ReasonSpillUnhealthy, []string{base[0].Edges[euTop].ID}},
		{"key edge draining", fromParis, func(rs []Region) { rs[0].Edges[euTop].State = Draining }, "eu-other", ReasonSpillUnhealthy, []string{base[0].Edges[euTop].ID}},
		{"key edge full", fromParis, func(rs []Region) { rs[0].Edges[euTop].Load = 100 }, "eu-other", ReasonSpillLoad, nil},
		{"key edge just below full", fromParis, func(rs []Region) { rs[0].Edges[euTop].Load, rs[0].Edges[euOther].Load = 99.9, 90 }, "eu-top", ReasonNearest, nil},
		{"key edge above the balance bound", fromParis, func(rs []Region) { rs[0].Edges[euTop].Load, rs[0].Edges[euOther].Load = 60, 30 }, "eu-other", ReasonSpillLoad, nil},
		{"key edge at the balance bound", fromParis, func(rs []Region) { rs[0].Edges[euTop].Load, rs[0].Edges[euOther].Load = 50, 30 }, "eu-top", ReasonNearest, nil},
		{"pending load counts", fromParis, func(rs []Region) {
			rs[0].Edges[euTop].Pending = new(Pending)
			rs[0].Edges[euTop].Pending.Add(100)
		}, "eu-other", ReasonSpillLoad, nil},
		{"region nearly full is not hot", fromParis, func(rs []Region) { rs[0].Edges[euTop].Load, rs[0].Edges[euOther].Load = 150, 99 }, "eu-other", ReasonSpillLoad, nil},
		{"other edge down: no change", fromParis, func(rs []Region) { rs[0].Edges[euOther].State = Down }, "eu-top", ReasonNearest, []string{base[0].Edges[euOther].ID}},
		{"whole region down", fromParis, func(rs []Region) {
			rs[0].Edges[0].State, rs[0].Edges[1].State = Down, Down
		}, "us", ReasonSpillUnhealthy, []string{"eu-1", "eu-2"}},
		{"region full", fromParis, func(rs []Region) { rs[0].Edges[0].Load, rs[0].Edges[1].Load = 100, 120 }, "us", ReasonSpillLoad, nil},
		{"default region down", Request{Key: key}, func(rs []Region) {
			rs[0].Edges[0].State, rs[0].Edges[1].State = Down, Down
		}, "us", ReasonSpillUnhealthy, nil},
		{"everything full", fromParis, func(rs []Region) {
			for i := range rs {
				for j := range rs[i].Edges {
					rs[i].Edges[j].Load = 200
				}
			}
		}, "eu-top", ReasonOverload, nil},
		{"unknown capacity never fills", fromParis, func(rs []Region) {
			rs[0].Edges[euTop].Capacity, rs[0].Edges[euTop].Load = 0, 1e9
		}, "eu-top", ReasonNearest, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			regions := topology()
			tc.mut(regions)
			d := p.Route(nil, tc.req, regions)
			if d.Reason != tc.reason {
				t.Errorf("reason %s, want %s", d.Reason, tc.reason)
			}
			got := ids(regions, d)
			var want string
			switch tc.first {
			case "eu-top":
				want = regions[0].Edges[euTop].ID
			case "eu-other":
				want = regions[0].Edges[euOther].ID
			default:
				for _, r := range regions {
					if r.Name == tc.first {
						want = r.Edges[Rank(key, r.Edges)[0]].ID
					}
				}
			}
			if len(got) == 0 || got[0] != want {
				t.Fatalf("choices %v, want %s first", got, want)
			}
			for _, m := range tc.missing {
				if slices.Contains(got, m) {
					t.Errorf("choices %v include %s", got, m)
				}
			}
			// Every Up edge appears exactly once.
			up := 0
			for _, r := range regions {
				for _, e := range r.Edges {
					if e.State == Up {
						up++
					}
				}
			}
			if len(got) != up {
				t.Errorf("%d choices for %d up edges: %v", len(got), up, got)
			}
			seen := map[string]bool{}
			for _, id := range got {
				if seen[id] {
					t.Errorf("%s twice in %v", id, got)
				}
				seen[id] = true
			}
		})
	}
}

func TestRouteFullEdgesLast(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	regions := topology()
	regions[0].Edges[0].Load = 150 // eu-1 full; eu (150+0)/200 < 0.9 so eu not hot
	d := p.Route(nil, Request{Key: "/x", From: paris, Located: true}, regions)
	got := ids(regions, d)
	if got[0] != "eu-2" || got[len(got)-1] != "eu-1" {
		t.Fatalf("choices %v: want eu-2 first and the full eu-1 last", got)
	}
	if d.Reason != ReasonSpillLoad && d.Reason != ReasonNearest {
		t.Fatalf("reason %s", d.Reason)
	}
}

func TestRouteNoHealthyEdge(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	regions := topology()
	for i := range regions {
		for j := range regions[i].Edges {
			regions[i].Edges[j].State = Down
		}
	}
	for _, rs := range [][]Region{regions, nil, {{Name: "empty", Loc: paris}}} {
		d := p.Route(nil, Request{Key: "/x", From: paris, Located: true}, rs)
		if len(d.Choices) != 0 || d.Reason != ReasonNoHealthyEdge {
			t.Fatalf("%+v", d)
		}
	}
}

func TestRouteMaxChoices(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{MaxChoices: 3})
	regions := topology()
	d := p.Route(nil, Request{Key: "/x", From: paris, Located: true}, regions)
	got := ids(regions, d)
	if len(got) != 3 || regions[d.Choices[2].Region].Name != "us" {
		t.Fatalf("choices %v", got)
	}
	all := newPicker(t, Config{}).Route(nil, Request{Key: "/x", From: paris, Located: true}, regions)
	if !slices.Equal(got, ids(regions, all)[:3]) {
		t.Fatalf("capped %v is not a prefix of %v", got, ids(regions, all))
	}
}

// TestRouteDeterministic: the answer depends on the inputs only, not on the
// order of edges in a region or of regions in the input.
func TestRouteDeterministic(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	rng := rand.New(rand.NewPCG(7, 7))
	for k := range 200 {
		key := fmt.Sprintf("/vod/%d", k)
		req := Request{Key: key, From: Point{rng.Float64()*180 - 90, rng.Float64()*360 - 180}, Located: true}
		regions := topology()
		regions[1].Edges[0].Load = 95
		want := ids(regions, p.Route(nil, req, regions))
		for range 3 {
			shuffled := topology()
			shuffled[1].Edges[0].Load = 95
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			for i := range shuffled {
				es := shuffled[i].Edges
				rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
			}
			if got := ids(shuffled, p.Route(nil, req, shuffled)); !slices.Equal(got, want) {
				t.Fatalf("key %s: %v, then %v after shuffling", key, want, got)
			}
		}
	}
}

func manyEdges(n int) []Edge {
	es := make([]Edge, n)
	for i := range es {
		es[i] = Edge{ID: fmt.Sprintf("edge-%02d.fra.example.net", i), Capacity: 1000}
	}
	return es
}

func primaries(t testing.TB, p *Picker, regions []Region, keys int) map[string]string {
	t.Helper()
	var buf Buffer
	out := make(map[string]string, keys)
	for k := range keys {
		key := fmt.Sprintf("/vod/%08x", k)
		d := p.Route(&buf, Request{Key: key, From: frankfurt, Located: true}, regions)
		c := d.Choices[0]
		out[key] = regions[c.Region].Edges[c.Edge].ID
	}
	return out
}

// TestEvenDistribution: 100k keys over 4 equal edges land within 2% of a
// quarter each (the binomial standard deviation is about 0.5%).
func TestEvenDistribution(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	regions := []Region{{Name: "eu", Loc: frankfurt, Edges: manyEdges(4)}}
	counts := map[string]int{}
	for _, id := range primaries(t, p, regions, 100_000) {
		counts[id]++
	}
	for id, n := range counts {
		if dev := math.Abs(float64(n)-25_000) / 25_000; dev > 0.02 {
			t.Errorf("%s: %d keys, %.1f%% off", id, n, dev*100)
		}
	}
	if len(counts) != 4 {
		t.Fatalf("counts %v", counts)
	}
}

// TestWeightedDistribution: weights 1, 2, 1 give shares of 25%, 50%, 25%.
func TestWeightedDistribution(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	es := manyEdges(3)
	es[1].Weight = 2
	regions := []Region{{Name: "eu", Loc: frankfurt, Edges: es}}
	counts := map[string]int{}
	for _, id := range primaries(t, p, regions, 100_000) {
		counts[id]++
	}
	want := map[string]float64{es[0].ID: 0.25, es[1].ID: 0.5, es[2].ID: 0.25}
	for id, share := range want {
		if got := float64(counts[id]) / 100_000; math.Abs(got-share) > 0.02 {
			t.Errorf("%s: share %.3f, want %.2f", id, got, share)
		}
	}
}

// TestStability: taking one edge out of five moves only the keys that were
// on it, and spreads them evenly over the other four; putting it back moves
// exactly those keys back.
func TestStability(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	const keys = 100_000
	regions := []Region{{Name: "eu", Loc: frankfurt, Edges: manyEdges(5)}}
	before := primaries(t, p, regions, keys)
	gone := regions[0].Edges[2].ID
	for _, how := range []string{"down", "removed"} {
		t.Run(how, func(t *testing.T) {
			after := []Region{{Name: "eu", Loc: frankfurt, Edges: manyEdges(5)}}
			if how == "down" {
				after[0].Edges[2].State = Down
			} else {
				after[0].Edges = slices.Delete(after[0].Edges, 2, 3)
			}
			moved := map[string]int{}
			onGone := 0
			for key, id := range primaries(t, p, after, keys) {
				was := before[key]
				if was == gone {
					onGone++
					moved[id]++
					continue
				}
				if id != was {
					t.Fatalf("key %s moved from %s to %s, though %s was not taken out", key, was, id, was)
				}
			}
			if onGone < keys/5*9/10 {
				t.Fatalf("only %d keys were on the removed edge", onGone)
			}
			for id, n := range moved {
				if share := float64(n) / float64(onGone); math.Abs(share-0.25) > 0.03 {
					t.Errorf("%s took %.1f%% of the moved keys, want about 25%%", id, share*100)
				}
			}
		})
	}
	if again := primaries(t, p, regions, keys); !mapsEqual(again, before) {
		t.Fatal("putting the edge back did not restore every key")
	}
}

// TestBoundedLoadMovesOnlyTheFullEdgesKeys: a full edge's keys go to their
// second choice; nobody else moves.
func TestBoundedLoadMovesOnlyTheFullEdgesKeys(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	regions := []Region{{Name: "eu", Loc: frankfurt, Edges: manyEdges(4)}}
	before := primaries(t, p, regions, 20_000)
	regions[0].Edges[1].Load = 1000
	after := primaries(t, p, regions, 20_000)
	full := regions[0].Edges[1].ID
	for key, id := range after {
		switch {
		case id == full:
			t.Fatalf("key %s still on the full edge", key)
		case before[key] != full && id != before[key]:
			t.Fatalf("key %s moved from %s to %s", key, before[key], id)
		case before[key] == full:
			if order := Rank(key, regions[0].Edges); regions[0].Edges[order[1]].ID != id {
				t.Fatalf("key %s went to %s, not its second choice", key, id)
			}
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestNearest(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	regions := topology()
	regions[2].Edges[0].State, regions[2].Edges[1].State = Down, Draining // ap: no healthy capacity
	regions[0].Edges[0].Load, regions[0].Edges[1].Load = 100, 100         // eu: hot
	var got []string
	for _, r := range p.Nearest(paris, regions) {
		got = append(got, r.Name)
	}
	if !slices.Equal(got, []string{"us", "eu"}) {
		t.Fatalf("Nearest = %v", got)
	}
}

func TestContentKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path  string
		depth int
		want  string
	}{
		{"/vod/abc/720p/seg1.ts", 2, "/vod/abc"},
		{"/vod/abc/master.m3u8", 2, "/vod/abc"},
		{"/vod/abc/720p/seg1.ts", 3, "/vod/abc/720p"},
		{"/vod/abc/720p/seg1.ts", 1, "/vod"},
		{"/vod/x.mp4", 2, "/vod/x.mp4"},
		{"/vod/abc/", 2, "/vod/abc"},
		{"/vod/abc/720p/seg1.ts", 0, "/vod/abc/720p/seg1.ts"},
		{"/vod/abc/720p/seg1.ts", -1, "/vod/abc/720p/seg1.ts"},
		{"/live/ch1/seg.ts?t=1", 1, "/live"},
		{"/vod/abc?x=/a/b/c", 5, "/vod/abc"},
		{"/vod/abc#frag/x", 2, "/vod/abc"},
		{"/", 2, "/"},
		{"", 2, ""},
	} {
		if got := ContentKey(tc.path, tc.depth); got != tc.want {
			t.Errorf("ContentKey(%q, %d) = %q, want %q", tc.path, tc.depth, got, tc.want)
		}
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	p := newPicker(t, Config{DefaultRegion: "eu"})
	regions := topology()
	regions[0].Edges[0].State = Down
	var buf Buffer
	for _, req := range []Request{
		{Key: "/vod/abc", From: paris, Located: true},
		{Key: "/vod/abc"},
	} {
		p.Route(&buf, req, regions)
		if n := testing.AllocsPerRun(100, func() { p.Route(&buf, req, regions) }); n != 0 {
			t.Errorf("%+v: %v allocs", req, n)
		}
	}
	// A large region (sorted by pdqsort), with pending loads.
	big := manyEdges(200)
	for i := range big {
		big[i].Load, big[i].Pending = float64(i), new(Pending)
	}
	regions = append(regions, Region{Name: "big", Loc: paris, Edges: big})
	req := Request{Key: "/vod/abc", From: paris, Located: true}
	p.Route(&buf, req, regions)
	if n := testing.AllocsPerRun(100, func() { p.Route(&buf, req, regions) }); n != 0 {
		t.Errorf("200 edges: %v allocs", n)
	}
}

func BenchmarkRoute(b *testing.B) {
	for _, bc := range []struct {
		name    string
		regions []Region
	}{
		{"2x2", topology()[:2]},
		{"3x2", topology()},
		{"5x20", func() []Region {
			var rs []Region
			for i, loc := range []Point{frankfurt, virginia, tokyo, london, newYork} {
				es := manyEdges(20)
				for j := range es {
					es[j].ID = fmt.Sprintf("r%d-%s", i, es[j].ID)
				}
				rs = append(rs, Region{Name: fmt.Sprintf("r%d", i), Loc: loc, Edges: es})
			}
			return rs
		}()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPicker(b, Config{})
			var buf Buffer
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = fmt.Sprintf("/vod/%d", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Route(&buf, Request{Key: keys[i%len(keys)], From: paris, Located: true}, bc.regions)
				i++
			}
		})
	}
}

// TestRegionLoadFactorShedsEarly: with a region factor under 1, a region at
// that share of its capacity is hot though no edge is full.
func TestRegionLoadFactorShedsEarly(t *testing.T) {
	t.Parallel()
	regions := topology()
	regions[0].Edges[0].Load, regions[0].Edges[1].Load = 95, 90
	d := newPicker(t, Config{RegionLoadFactor: 0.9}).Route(nil, Request{Key: "/x", From: paris, Located: true}, regions)
	if r := regions[d.Choices[0].Region].Name; r != "us" || d.Reason != ReasonSpillLoad {
		t.Fatalf("factor 0.9: first %s (%s), want us", r, d.Reason)
	}
	d = newPicker(t, Config{}).Route(nil, Request{Key: "/x", From: paris, Located: true}, regions)
	if r := regions[d.Choices[0].Region].Name; r != "eu" {
		t.Fatalf("default factor: first %s (%s), want eu: no edge is full", r, d.Reason)
	}
}

// crowd sends n viewers of one stream, one after another, each to the
// decision's first choice, adding cost to its Pending as steering does, and
// returns how many each edge got (by ID) and the region of every viewer in
// order.
func crowd(p *Picker, regions []Region, key string, n int, cost float64) (map[string]int, []string) {
	for r := range regions {
		for e := range regions[r].Edges {
			regions[r].Edges[e].Pending = new(Pending)
		}
	}
	var buf Buffer
	got := map[string]int{}
	var where []string
	for range n {
		d := p.Route(&buf, Request{Key: key, From: paris, Located: true}, regions)
		c := d.Choices[0]
		e := &regions[c.Region].Edges[c.Edge]
		e.Pending.Add(cost)
		got[e.ID]++
		where = append(where, regions[c.Region].Name)
	}
	return got, where
}

// TestBoundedLoadSpreadsOneStream: 2,000 viewers of one stream, arriving
// before any edge reports its load, spread over the region's edges within
// the balance bound, in hash order from the stream's own edge; none goes to
// another region while the region has room.
func TestBoundedLoadSpreadsOneStream(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 4, 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			p := newPicker(t, Config{})
			regions := topology()
			regions[0].Edges = manyEdges(n) // capacity 1000 viewers each
			const viewers = 2000
			got, where := crowd(p, regions, "/live/final", viewers, 1)
			if slices.ContainsFunc(where, func(r string) bool { return r != "eu" }) {
				t.Fatalf("viewers left eu with room: %v", got)
			}
			avg := float64(viewers) / float64(n)
			for id, v := range got {
				if float64(v) > 1.25*avg+1 {
					t.Errorf("%s got %d viewers, over 1.25 × the average %.0f", id, v, avg)
				}
			}
			// At the bound, ⌈n/1.25⌉ edges carry the whole crowd.
			if want := int(math.Ceil(float64(n) / 1.25)); len(got) < want {
				t.Errorf("%d of %d edges served, want at least %d: %v", len(got), n, want, got)
			}
			// The stream's own edge is the busiest: stickiness first.
			top := regions[0].Edges[Rank("/live/final", regions[0].Edges)[0]].ID
			for id, v := range got {
				if v > got[top] {
					t.Errorf("%s got %d, more than the stream's own edge %s (%d)", id, v, top, got[top])
				}
			}
		})
	}
}

// TestBoundedLoadSpillsOnlyWhenRegionFull: with 4 edges of 300 viewers, a
// crowd of 2,000 fills every eu edge (none over its capacity) before the
// first viewer goes to us.
func TestBoundedLoadSpillsOnlyWhenRegionFull(t *testing.T) {
	t.Parallel()
	p := newPicker(t, Config{})
	regions := topology()
	regions[0].Edges = manyEdges(4)
	for i := range regions[0].Edges {
		regions[0].Edges[i].Capacity = 300
	}
	for _, r := range regions[1:] {
		for i := range r.Edges {
			r.Edges[i].Capacity = 1000 // room for the rest
		}
	}
	got, where := crowd(p, regions, "/live/final", 2000, 1)
	first := slices.IndexFunc(where, func(r string) bool { return r != "eu" })
	if first != 1200 {
		t.Fatalf("first viewer out of eu is number %d, want 1200 (eu's capacity); %v", first, got)
	}
	if slices.ContainsFunc(where[first:], func(r string) bool { return r == "eu" }) {
		t.Fatalf("a viewer went to the full eu after the spill: %v", got)
	}
	for _, e := range regions[0].Edges {
		if got[e.ID] != 300 {
			t.Errorf("%s got %d, want its capacity 300", e.ID, got[e.ID])
		}
	}
}

func TestPendingConcurrent(t *testing.T) {
	t.Parallel()
	var p Pending
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 1000 {
				p.Add(0.5)
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if p.Value() != 2000 {
		t.Fatalf("pending %v, want 2000", p.Value())
	}
	p.Reset()
	if p.Value() != 0 {
		t.Fatalf("after Reset: %v", p.Value())
	}
}

// BenchmarkBoundedLoad is the decision as steering makes it for a new viewer:
// Route over a region of n edges (loaded unevenly, each with its Pending)
// and a second region, then the viewer's cost added to the chosen edge's
// Pending. Keys cycle over 64 streams, so some edges are over the balance
// bound as the run goes on.
func BenchmarkBoundedLoad(b *testing.B) {
	for _, n := range []int{2, 20, 200} {
		b.Run(fmt.Sprintf("edges=%d", n), func(b *testing.B) {
			p := newPicker(b, Config{})
			es := manyEdges(n)
			for i := range es {
				es[i].Load = float64(100 + 37*i%500)
				es[i].Pending = new(Pending)
			}
			regions := []Region{{Name: "eu", Loc: frankfurt, Edges: es}, {Name: "us", Loc: virginia, Edges: edges("us-1", "us-2")}}
			keys := make([]string, 64)
			for i := range keys {
				keys[i] = fmt.Sprintf("/live/ch%d", i)
			}
			var buf Buffer
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d := p.Route(&buf, Request{Key: keys[i%len(keys)], From: paris, Located: true}, regions)
				c := d.Choices[0]
				if e := &regions[c.Region].Edges[c.Edge]; e.Pending != nil {
					e.Pending.Add(0.01)
				}
				i++
			}
		})
	}
}

// TestBalanceFloorKeepsQuietStreamsSticky: in an idle region a stream's first viewers all go to
// its edge until it is above the floor (a tenth of capacity), before any moves on.
func TestBalanceFloorKeepsQuietStreamsSticky(t *testing.T) {
	t.Parallel()
	regions := []Region{{Name: "eu", Loc: frankfurt, Edges: manyEdges(4)}} // 1000 each
	got, _ := crowd(newPicker(t, Config{}), regions, "/live/quiet", 101, 1)
	if len(got) != 1 {
		t.Fatalf("101 viewers in an idle region of 4 × 1000 went to %v, want one edge", got)
	}
	got, _ = crowd(newPicker(t, Config{}), regions, "/live/quiet", 102, 1)
	if len(got) != 2 {
		t.Fatalf("102 viewers: %v, want the 102nd (the first above the floor) on a second edge", got)
	}
}
