// Package hrw makes steering's routing choice: which edges, in which order,
// serve a request for a piece of content from a client at a place.
//
// The choice has two levels:
//
//   - Regions are ordered by great-circle distance from the client
//     (haversine). A region with no healthy edge is skipped; a region whose
//     every Up edge is full is spilled past: it comes after every region with
//     room.
//   - Inside a region, edges are ordered by rendezvous hashing (highest random
//     weight) of the content key, so one stream's playlists and segments land
//     on one edge and its cache stays hot. Load is bounded (consistent hashing
//     with bounded loads, Mirrokni, Thorup and Zadimoghaddam 2018): an edge
//     whose utilisation (Load/Capacity) is above BalanceFactor × the region's
//     average (and above BalanceFloor), or that is full (at or above its load factor of capacity),
//     passes the key to the next edge in hash order. Draining and down edges
//     are skipped.
//
// The answer is every usable edge, best first: the edges with room, region by
// region (regions with room first, then hot regions), and last, as a last
// resort, healthy edges that are full. A machine-readable Reason says why the
// first choice is what it is.
//
// Rendezvous hashing is stable: taking an edge out moves only the keys that
// were on it (spread over the others in proportion to their weights), and
// putting it back moves them back. The answer depends only on the inputs —
// not on the order of edges in a region, not on time or randomness — so
// steering instances that see the same health agree.
//
// Route does not allocate when given a reused Buffer.
package hrw

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/duetcdn/duet/internal/rendezvous"
)

// Point is a place on Earth, in degrees (WGS 84).
type Point struct {
	Lat, Lon float64
}

// earthRadiusKM is the mean Earth radius (IUGG).
const earthRadiusKM = 6371.0088

// DistanceKM is the great-circle distance between a and b in kilometres, by
// the haversine formula on a spherical Earth (good to about 0.5%).
func DistanceKM(a, b Point) float64 {
	const rad = math.Pi / 180
	lat1, lat2 := a.Lat*rad, b.Lat*rad
	dLat := lat2 - lat1
	dLon := (b.Lon - a.Lon) * rad
	s1, s2 := math.Sin(dLat/2), math.Sin(dLon/2)
	h := s1*s1 + math.Cos(lat1)*math.Cos(lat2)*s2*s2
	if h > 1 {
		h = 1
	}
	return 2 * earthRadiusKM * math.Asin(math.Sqrt(h))
}

// State is an edge's health as steering sees it.
type State uint8

const (
	// Up: serving; gets new viewers.
	Up State = iota
	// Draining: finishing what it serves; gets no new viewers.
	Draining
	// Down: missed heartbeats or failed probes.
	Down
)

// String names the state: "up", "draining", "down".
func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Draining:
		return "draining"
	case Down:
		return "down"
	default:
		return fmt.Sprintf("state(%d)", uint8(s))
	}
}

// Edge is one edge as the routing choice sees it.
type Edge struct {
	// ID names the edge; the rendezvous hash is of (key, ID), so it must be
	// stable across restarts and unique among all edges.
	ID string
	// State is the edge's health.
	State State
	// Capacity is how much load the edge takes, in the caller's unit
	// (connections, egress bytes/s, ...). 0 means unknown: the edge is never
	// full and adds nothing to its region's capacity.
	Capacity float64
	// Load is the edge's current load, in Capacity's unit.
	Load float64
	// Pending, when set, is load sent to the edge since Load was measured (the
	// caller's own recent assignments), in Capacity's unit: Route counts
	// Load + Pending. It lets the caller bound an edge's load between two
	// measurements, which arrive seconds apart.
	Pending *Pending
	// Weight is the edge's relative share of keys (weighted rendezvous
	// hashing, "-w/ln(u)"); 0 means 1. An edge of weight 2 gets about twice
	// the keys of an edge of weight 1.
	Weight float64
}

// load is the edge's load with what is pending.
func (e *Edge) load() float64 {
	if e.Pending != nil {
		return e.Load + e.Pending.Value()
	}
	return e.Load
}

// full reports whether the edge's load is at or above factor × capacity.
func (e *Edge) full(factor float64) bool {
	return e.Capacity > 0 && e.load() >= factor*e.Capacity
}

// Pending accumulates load assigned to an edge since its last measurement.
// It is safe for concurrent use and does not allocate; the zero Pending is 0.
type Pending struct {
	bits atomic.Uint64 // math.Float64bits of the sum
}

// Add adds x to the pending load.
func (p *Pending) Add(x float64) {
	for {
		old := p.bits.Load()
		if p.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+x)) {
			return
		}
	}
}

// Value is the pending load.
func (p *Pending) Value() float64 { return math.Float64frombits(p.bits.Load()) }

// Reset sets the pending load to 0: a new measurement includes it.
func (p *Pending) Reset() { p.bits.Store(0) }

// Region is a group of edges at one place.
type Region struct {
	// Name names the region (and is the tie-breaker between regions at the
	// same distance).
	Name string
	// Loc is where the region is.
	Loc Point
	// Edges are the region's edges, in any order.
	Edges []Edge
}

// regionLoad is what the choice needs of a region's load.
type regionLoad struct {
	up             int     // Up edges
	capacity, load float64 // summed over Up edges with a known capacity
	known          int     // Up edges with a known capacity
	util           float64 // their summed utilisation, Load/Capacity
	room           bool    // some Up edge is not full
}

// health sums the region's Up edges' load and capacity.
func (r *Region) health(edgeFactor float64) regionLoad {
	var l regionLoad
	for i := range r.Edges {
		e := &r.Edges[i]
		if e.State != Up {
			continue
		}
		l.up++
		if e.Capacity > 0 {
			load := e.load()
			l.capacity += e.Capacity
			l.load += load
			l.known++
			l.util += load / e.Capacity
		}
		if !e.full(edgeFactor) {
			l.room = true
		}
	}
	return l
}

// Config tunes the choice. The zero Config is usable: see each field's
// default.
type Config struct {
	// EdgeLoadFactor: an edge whose Load is at or above EdgeLoadFactor ×
	// Capacity is full, and its keys spill to the next edge in hash order.
	// 0 means 1 (full at capacity). Must be positive.
	EdgeLoadFactor float64
	// RegionLoadFactor: a region is hot, and spilled past, when every Up
	// edge is full; with a factor under 1, also when the summed Load of its
	// Up edges is at or above RegionLoadFactor × their summed Capacity, so
	// that it sheds new viewers before all its edges are full. 0 means 1
	// (only when every edge is full). Must be positive.
	RegionLoadFactor float64
	// BalanceFactor is the bound on load inside a region (c of consistent
	// hashing with bounded loads): an Up edge of known capacity whose
	// utilisation (Load/Capacity) is above BalanceFactor × the average
	// utilisation of the region's Up edges of known capacity passes the key
	// on to the next edge in hash order, and comes after the region's other
	// edges with room. Lower is more even, higher is stickier. 0 means 1.25.
	// Must be at least 1.
	BalanceFactor float64
	// BalanceFloor is the utilisation below which no edge is over the
	// balance bound: in a quiet region a stream stays on its edge (one
	// cache) rather than being split between idle edges for a handful of
	// viewers. 0 means 0.1 (a tenth of capacity). Must be in [0, 1].
	BalanceFloor float64
	// DefaultRegion is the region to start from when the client's location
	// is unknown (private address, GeoIP miss): regions are then ordered by
	// distance from it, so its neighbours take over when it is down. When it
	// names no region in the input, the regions' own order is used.
	DefaultRegion string
	// MaxChoices caps the length of the answer (primary plus fallbacks).
	// 0 means no cap: every usable edge.
	MaxChoices int
}

// DefaultConfig is the Config with its defaults spelled out.
func DefaultConfig() Config {
	return Config{EdgeLoadFactor: 1, RegionLoadFactor: 1, BalanceFactor: 1.25, BalanceFloor: 0.1}
}

// ErrInvalidConfig is wrapped by New's errors.
var ErrInvalidConfig = errors.New("hrw: invalid config")

// Picker makes routing choices. It holds only its Config and is safe for
// concurrent use.
type Picker struct {
	cfg Config
}

// New checks cfg, fills in its defaults and returns a Picker.
func New(cfg Config) (*Picker, error) {
	if cfg.EdgeLoadFactor == 0 {
		cfg.EdgeLoadFactor = 1
	}
	if cfg.RegionLoadFactor == 0 {
		cfg.RegionLoadFactor = 1
	}
	if cfg.BalanceFactor == 0 {
		cfg.BalanceFactor = 1.25
	}
	if cfg.BalanceFloor == 0 {
		cfg.BalanceFloor = 0.1
	}
	switch {
	case !(cfg.EdgeLoadFactor > 0) || math.IsInf(cfg.EdgeLoadFactor, 0):
		return nil, fmt.Errorf("%w: EdgeLoadFactor %v must be positive", ErrInvalidConfig, cfg.EdgeLoadFactor)
	case !(cfg.RegionLoadFactor > 0) || math.IsInf(cfg.RegionLoadFactor, 0):
		return nil, fmt.Errorf("%w: RegionLoadFactor %v must be positive", ErrInvalidConfig, cfg.RegionLoadFactor)
	case !(cfg.BalanceFactor >= 1) || math.IsInf(cfg.BalanceFactor, 0):
		return nil, fmt.Errorf("%w: BalanceFactor %v must be at least 1", ErrInvalidConfig, cfg.BalanceFactor)
	case !(cfg.BalanceFloor >= 0 && cfg.BalanceFloor <= 1):
		return nil, fmt.Errorf("%w: BalanceFloor %v must be in [0, 1]", ErrInvalidConfig, cfg.BalanceFloor)
	case cfg.MaxChoices < 0:
		return nil, fmt.Errorf("%w: MaxChoices %d is negative", ErrInvalidConfig, cfg.MaxChoices)
	}
	return &Picker{cfg: cfg}, nil
}

// Config returns the Picker's Config, defaults filled in.
func (p *Picker) Config() Config { return p.cfg }

// Reason says why the first choice is what it is. The values are stable,
// lower-case and few, fit for a metric label.
type Reason string

const (
	// ReasonNearest: the first choice is the key's edge in the region
	// nearest the client.
	ReasonNearest Reason = "nearest"
	// ReasonDefaultRegion: the client's location is unknown; the first
	// choice is the key's edge in the default region.
	ReasonDefaultRegion Reason = "default-region"
	// ReasonSpillUnhealthy: the key's edge in the starting region (nearest,
	// or default), or that whole region, is draining or down.
	ReasonSpillUnhealthy Reason = "spill-unhealthy"
	// ReasonSpillLoad: the key's edge in the starting region is full or above
	// the balance bound, or that region is hot.
	ReasonSpillLoad Reason = "spill-load"
	// ReasonOverload: every healthy edge is full; the first choice is the
	// best of them anyway, rather than nothing.
	ReasonOverload Reason = "overload"
	// ReasonNoHealthyEdge: no edge is Up; the answer is empty. Serve 503.
	ReasonNoHealthyEdge Reason = "no-healthy-edge"
)

// Reasons lists every Reason, for pre-declaring metric series.
func Reasons() []Reason {
	return []Reason{ReasonNearest, ReasonDefaultRegion, ReasonSpillUnhealthy, ReasonSpillLoad, ReasonOverload, ReasonNoHealthyEdge}
}

// Request is what one choice is about.
type Request struct {
	// Key is the content key, usually ContentKey(path, depth).
	Key string
	// From is the client's location; used when Located.
	From Point
	// Located is false when the client's location is unknown.
	Located bool
	// Region, when the client is not Located, names the region to start from instead of
	// Config.DefaultRegion: where an unlocated client already is (steering's players report
	// their pathway), so that every instance, whatever its own default, decides alike.
	Region string
}

// Choice points at one edge of the input: regions[Region].Edges[Edge].
type Choice struct {
	Region, Edge int
}

// Decision is the answer: usable edges, best first, and why the first is
// first.
type Decision struct {
	// Choices is primary first, then fallbacks. It is empty only with
	// ReasonNoHealthyEdge. It aliases the Buffer passed to Route.
	Choices []Choice
	// Reason explains Choices[0].
	Reason Reason
}

// Buffer is scratch space for Route, reused across calls to avoid
// allocation. One Buffer serves one goroutine at a time (keep them in a
// sync.Pool, for example). The zero Buffer is ready.
type Buffer struct {
	choices []Choice
	regions []regionRank
	edges   []edgeRank
	full    []Choice
	over    []Choice
}

type regionRank struct {
	idx     int
	dist    float64
	healthy bool
	hot     bool
	bound   float64 // utilisation above which an edge is over the balance bound; +Inf: none
}

type edgeRank struct {
	idx   int
	score float64
}

// Route chooses the edges for req among regions. buf may be nil (Route then
// allocates); the returned Choices alias buf until its next use.
func (p *Picker) Route(buf *Buffer, req Request, regions []Region) Decision {
	if buf == nil {
		buf = new(Buffer)
	}
	choices := buf.choices[:0]
	limit := p.cfg.MaxChoices
	if limit == 0 {
		limit = math.MaxInt
	}

	start, ranks := p.rankRegions(buf, req, regions)

	keyHash := xxhash.Sum64String(req.Key)
	full := buf.full[:0]
	ideal := -1 // the key's edge in the start region, when ranked below

	// Regions with room, then hot regions: their non-full Up edges in hash
	// order. Full Up edges are kept for the end.
	for pass := 0; pass < 2 && len(choices) < limit; pass++ {
		hot := pass == 1
		for _, rank := range ranks {
			if len(choices) >= limit {
				break
			}
			if rank.hot != hot || !rank.healthy {
				continue
			}
			edges := regions[rank.idx].Edges
			order := rankEdges(buf, keyHash, edges)
			if rank.idx == start && len(order) > 0 {
				ideal = order[0].idx
			}
			// Edges over the balance bound still have room: after the
			// region's others, before the next region.
			over := buf.over[:0]
			for _, er := range order {
				e := &edges[er.idx]
				if e.State != Up {
					continue
				}
				c := Choice{Region: rank.idx, Edge: er.idx}
				switch {
				case e.full(p.cfg.EdgeLoadFactor):
					full = append(full, c)
				case e.Capacity > 0 && e.load()/e.Capacity > rank.bound:
					over = append(over, c)
				case len(choices) < limit:
					choices = append(choices, c)
				}
			}
			for _, c := range over {
				if len(choices) < limit {
					choices = append(choices, c)
				}
			}
			buf.over = over
		}
	}
	// Last resort: full edges, nearest region first, hash order within.
	// full was filled in region order (room, then hot); put it back in
	// distance order.
	if len(choices) < limit && len(full) > 0 {
		for _, rank := range ranks {
			for _, c := range full {
				if c.Region == rank.idx && len(choices) < limit {
					choices = append(choices, c)
				}
			}
		}
	}
	buf.choices, buf.full = choices, full

	return Decision{Choices: choices, Reason: p.reason(buf, regions, start, ideal, req.Located, keyHash)}
}

// rankRegions orders the regions into buf.regions: healthy ones (with an Up
// edge) first, then by distance from the client (or from the default region,
// or in input order), then by name. It returns the start region too: the one
// the client would use if everything were well (-1 without regions).
func (p *Picker) rankRegions(buf *Buffer, req Request, regions []Region) (int, []regionRank) {
	from, located := req.From, req.Located
	start := -1
	if !located {
		name := p.cfg.DefaultRegion
		if req.Region != "" {
			name = req.Region
		}
		for i := range regions {
			if regions[i].Name == name {
				from, located, start = regions[i].Loc, true, i
				break
			}
		}
		if start < 0 && len(regions) > 0 {
			start = 0
		}
	}
	ranks := buf.regions[:0]
	for i := range regions {
		r := &regions[i]
		rank := regionRank{idx: i, dist: float64(i)} // input order, when nothing else applies
		if located {
			rank.dist = DistanceKM(from, r.Loc)
		}
		l := r.health(p.cfg.EdgeLoadFactor)
		rank.healthy = l.up > 0
		rank.hot = p.hot(l)
		rank.bound = math.Inf(1)
		if l.known > 1 {
			rank.bound = max(p.cfg.BalanceFactor*l.util/float64(l.known), p.cfg.BalanceFloor)
		}
		ranks = append(ranks, rank)
		if start < 0 || (req.Located && rankLess(regions, &rank, &ranks[start])) {
			start = i
		}
	}
	// Insertion sort: few regions, no allocation.
	for i := 1; i < len(ranks); i++ {
		for j := i; j > 0 && regionLess(regions, &ranks[j], &ranks[j-1]); j-- {
			ranks[j], ranks[j-1] = ranks[j-1], ranks[j]
		}
	}
	buf.regions = ranks
	return start, ranks
}

// reason explains choices[0] against the ideal: the key's edge in the start
// region, as if every edge were up and idle.
func (p *Picker) reason(buf *Buffer, regions []Region, start, ideal int, clientLocated bool, keyHash uint64) Reason {
	choices := buf.choices
	if len(choices) == 0 {
		return ReasonNoHealthyEdge
	}
	first := choices[0]
	if regions[first.Region].Edges[first.Edge].full(p.cfg.EdgeLoadFactor) {
		return ReasonOverload
	}
	if start < 0 || len(regions[start].Edges) == 0 {
		// No ideal to compare with (no regions, or an empty start region).
		return ReasonSpillUnhealthy
	}
	sr := &regions[start]
	if ideal < 0 {
		ideal = rankEdges(buf, keyHash, sr.Edges)[0].idx
	}
	if first.Region == start && first.Edge == ideal {
		if clientLocated {
			return ReasonNearest
		}
		return ReasonDefaultRegion
	}
	if sr.health(p.cfg.EdgeLoadFactor).up == 0 || sr.Edges[ideal].State != Up {
		return ReasonSpillUnhealthy
	}
	return ReasonSpillLoad
}

// regionLess orders healthy regions first, then by rankLess.
func regionLess(regions []Region, a, b *regionRank) bool {
	if a.healthy != b.healthy {
		return a.healthy
	}
	return rankLess(regions, a, b)
}

// rankLess orders by distance, then name.
func rankLess(regions []Region, a, b *regionRank) bool {
	if a.dist != b.dist {
		return a.dist < b.dist
	}
	return regions[a.idx].Name < regions[b.idx].Name
}

// rankEdges orders all of edges for the key, highest random weight first,
// into buf.edges (overwriting it).
func rankEdges(buf *Buffer, keyHash uint64, edges []Edge) []edgeRank {
	weighted := false
	for i := range edges {
		if w := edges[i].Weight; w > 0 && w != 1 {
			weighted = true
			break
		}
	}
	order := buf.edges[:0]
	for i := range edges {
		order = append(order, edgeRank{idx: i, score: score(keyHash, &edges[i], weighted)})
	}
	if len(order) > insertionSortMax {
		slices.SortFunc(order, func(a, b edgeRank) int {
			switch {
			case edgeLess(edges, &a, &b):
				return -1
			case edgeLess(edges, &b, &a):
				return 1
			}
			return 0
		})
	} else {
		// Insertion sort: quicker for the few edges of a usual region.
		for i := 1; i < len(order); i++ {
			for j := i; j > 0 && edgeLess(edges, &order[j], &order[j-1]); j-- {
				order[j], order[j-1] = order[j-1], order[j]
			}
		}
	}
	buf.edges = order
	return order
}

// insertionSortMax is the most edges rankEdges sorts by insertion; larger
// regions (200 edges: 36 µs by insertion) use pdqsort.
const insertionSortMax = 32

func edgeLess(edges []Edge, a, b *edgeRank) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return edges[a.idx].ID < edges[b.idx].ID
}

// score is the edge's weighted rendezvous score for the key (internal/rendezvous, shared with
// the edges' peer fill).
func score(keyHash uint64, e *Edge, weighted bool) float64 {
	return rendezvous.Score(keyHash, xxhash.Sum64String(e.ID), e.Weight, weighted)
}

// Rank returns the indexes of edges in rendezvous order for key, highest
// first, whatever their state and load: the order Route walks inside a
// region. For tests, tools and the status page.
func Rank(key string, edges []Edge) []int {
	var buf Buffer
	order := rankEdges(&buf, xxhash.Sum64String(key), edges)
	out := make([]int, len(order))
	for i, r := range order {
		out[i] = r.idx
	}
	return out
}

// Hot reports whether r is spilled past for load: every Up edge is full, or
// (RegionLoadFactor under 1) its summed load is at that share of capacity.
func (p *Picker) Hot(r *Region) bool {
	l := r.health(p.cfg.EdgeLoadFactor)
	return p.hot(l)
}

func (p *Picker) hot(l regionLoad) bool {
	return l.up > 0 && (!l.room || p.cfg.RegionLoadFactor < 1 && l.capacity > 0 && l.load >= p.cfg.RegionLoadFactor*l.capacity)
}

// Nearest returns the regions that have an Up edge, nearest to from first,
// with hot regions (every edge full, or at the Picker's RegionLoadFactor)
// after all the others. It allocates; Route is the hot path.
func (p *Picker) Nearest(from Point, regions []Region) []Region {
	var buf Buffer
	_, ranks := p.rankRegions(&buf, Request{From: from, Located: true}, regions)
	out := make([]Region, 0, len(ranks))
	for pass := 0; pass < 2; pass++ {
		for _, r := range ranks {
			if r.hot == (pass == 1) && r.healthy {
				out = append(out, regions[r.idx])
			}
		}
	}
	return out
}

// ContentKey is the key that keeps one stream on one edge: the first depth
// segments of the path, which for a packaged stream is its folder.
//
//	ContentKey("/vod/abc/720p/seg1.ts", 2) == "/vod/abc"
//	ContentKey("/vod/abc/master.m3u8", 2)  == "/vod/abc"
//	ContentKey("/vod/x.mp4", 2)            == "/vod/x.mp4"
//	ContentKey("/live/ch1/seg.ts?t=1", 1)  == "/live"
//
// A query or fragment is dropped. A path with fewer segments, and depth <= 0,
// give the whole path. The path should be clean (no "//", "." or "..":
// steering refuses such paths before this); ContentKey does not clean it. It
// returns a substring of path and does not allocate.
func ContentKey(path string, depth int) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if depth <= 0 {
		return path
	}
	seen := 0
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			seen++
			if seen == depth {
				return path[:i]
			}
		}
	}
	return path
}
