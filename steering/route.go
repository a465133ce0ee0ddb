package steering

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"strings"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/clientaddr"
	"github.com/duetcdn/duet/internal/route"
	"github.com/duetcdn/duet/internal/signedurl"
	"github.com/duetcdn/duet/steering/health"
	"github.com/duetcdn/duet/steering/hrw"
)

// view is the health table as decisions read it: immutable, swapped whole after every change.
type view struct {
	version uint64
	regions []hrw.Region    // the configured regions, in configuration order, with their edges
	edges   [][]health.Edge // edges[r][e] is regions[r].Edges[e]'s table entry
	cost    [][]float64     // cost[r][e]: the load one new viewer adds to regions[r].Edges[e]
	total   int             // edges in the table
	up      int             // edges up
}

// rebuild refreshes the view from the table, when the table changed.
func (s *Server) rebuild() {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	var since uint64
	if v := s.view.Load(); v != nil {
		since = v.version
	}
	snap, changed := s.table.Snapshot(since)
	if !changed && s.view.Load() != nil {
		return
	}
	v := &view{version: snap.Version, regions: make([]hrw.Region, len(s.cfg.Regions)), edges: make([][]health.Edge, len(s.cfg.Regions)),
		cost: make([][]float64, len(s.cfg.Regions))}
	for i, r := range s.cfg.Regions {
		v.regions[i] = hrw.Region{Name: r.Name, Loc: hrw.Point{Lat: r.Lat, Lon: r.Lon}}
	}
	counts := map[hrw.State]int{}
	known := make(map[string]bool, len(snap.Edges))
	for _, e := range snap.Edges {
		i, ok := s.regionIndex(e.Heartbeat.Region)
		if !ok {
			continue // checked in Observe; kept for safety
		}
		key := health.Key(e.Heartbeat.Region, e.Heartbeat.Edge)
		known[key] = true
		p := s.pending[key]
		if p == nil {
			p = new(hrw.Pending)
			s.pending[key] = p
		}
		l := s.edgeLoad(e.Heartbeat)
		he := hrw.Edge{ID: key, State: e.State, Load: l.util, Pending: p}
		if l.known {
			he.Capacity = 1
		}
		v.regions[i].Edges = append(v.regions[i].Edges, he)
		v.cost[i] = append(v.cost[i], l.viewer)
		v.edges[i] = append(v.edges[i], e)
		v.total++
		counts[e.State]++
	}
	for k := range s.pending {
		if !known[k] {
			delete(s.pending, k) // forgotten
		}
	}
	v.up = counts[hrw.Up]
	for _, st := range []hrw.State{hrw.Up, hrw.Draining, hrw.Down} {
		s.m.edges.WithLabelValues(st.String()).Set(float64(counts[st]))
	}
	s.view.Store(v)
}

// edgeLoad is an edge's load as its heartbeat reports it, in utilisation (1 = at capacity).
type edgeLoad struct {
	known  bool    // some capacity is announced (or edge_capacity configured)
	util   float64 // the highest of load/capacity over the announced capacities
	viewer float64 // what one more viewer adds to util (its connection, egress and CPU)
}

// edgeLoad reads hb's load against its capacities: connections (or the configured
// edge_capacity), egress and CPU. One new viewer adds a connection, viewer_bytes_per_sec of
// egress and the CPU that egress costs at the edge's own ratio of CPU to egress.
func (s *Server) edgeLoad(hb bus.Heartbeat) edgeLoad {
	var l edgeLoad
	// A heartbeat is read from the network: a dimension whose figures are not finite and
	// non-negative (a load of 1e308 over a capacity of 1e-308) is left out.
	finite := func(x float64) bool { return x >= 0 && !math.IsInf(x, 0) }
	dim := func(load, capacity, perViewer float64) {
		u, v := load/capacity, perViewer/capacity
		if !(capacity > 0) || !finite(load) || !finite(u) || !finite(v) {
			return
		}
		l.known = true
		l.util = max(l.util, u)
		l.viewer = max(l.viewer, v)
	}
	bitrate := float64(s.cfg.ViewerBytesPerSec)
	dim(float64(hb.Connections), float64(cmp.Or(hb.Capacity, int64(s.cfg.EdgeCapacity))), 1)
	dim(hb.EgressBytesPerSec, hb.CapacityEgressBytesPerSec, bitrate)
	cpuPerViewer := 0.0
	if hb.EgressBytesPerSec > 0 && hb.CPU > 0 {
		cpuPerViewer = hb.CPU / hb.EgressBytesPerSec * bitrate
	}
	dim(hb.CPU, hb.CapacityCPU, cpuPerViewer)
	return l
}

// assign counts a new viewer sent to the edge ch of v: its load, until the edge's next
// heartbeat reports it.
func (v *view) assign(ch hrw.Choice) {
	if p := v.regions[ch.Region].Edges[ch.Edge].Pending; p != nil {
		p.Add(v.cost[ch.Region][ch.Edge])
	}
}

// client is who a decision is for.
type client struct {
	Addr    netip.Addr
	Country string
	Located bool
	From    hrw.Point
	// Region, for a client not Located, is the region it plays from (its pathway's), which the
	// decision starts from instead of the default region.
	Region string
}

// locate finds the client of a request: its address (remote is the connection's peer, xff the
// X-Forwarded-For header) and where it is.
func (s *Server) locate(remote, xff string) (client, error) {
	ip, err := clientaddr.Parse(remote, xff, s.trusted)
	if err != nil {
		return client{}, fmt.Errorf("%w: client address: %w", ErrBadRequest, err)
	}
	c := client{Addr: ip}
	loc, ok := s.geo.Lookup(ip)
	c.Country = loc.Country
	if ok {
		c.Located, c.From = true, hrw.Point{Lat: loc.Lat, Lon: loc.Lon}
	} else {
		s.m.geoipMisses.Inc()
	}
	return c, nil
}

// MaxPathLen is the longest content path accepted.
const MaxPathLen = 4096

// checkPath refuses paths that are not clean absolute paths: the content key must not depend on
// how a client spells a path.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: path is required", ErrBadRequest)
	case len(p) > MaxPathLen:
		return fmt.Errorf("%w: path is longer than %d bytes", ErrBadRequest, MaxPathLen)
	case p[0] != '/':
		return fmt.Errorf("%w: path %q does not start with /", ErrBadRequest, p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '?' || c == '#' || c == '\\' {
			return fmt.Errorf("%w: path has a control character, '?', '#' or '\\' at byte %d", ErrBadRequest, i)
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w: path %q has a %q segment", ErrBadRequest, p, seg)
		}
	}
	if strings.Contains(p, "//") {
		return fmt.Errorf("%w: path %q has an empty segment", ErrBadRequest, p)
	}
	return nil
}

// decide routes the content at path for c over v. buf must come from s.bufs; the Decision
// aliases it. api labels the metric.
func (s *Server) decide(buf *hrw.Buffer, v *view, key string, c client, api string) (hrw.Decision, error) {
	if v.total == 0 {
		return hrw.Decision{Reason: hrw.ReasonNoHealthyEdge}, ErrNoEdges
	}
	d := s.picker.Route(buf, hrw.Request{Key: key, From: c.From, Located: c.Located, Region: c.Region}, v.regions)
	s.m.decisions.WithLabelValues(string(d.Reason), api).Inc()
	if len(d.Choices) == 0 {
		return d, ErrNoHealthyEdge
	}
	return d, nil
}

// Route is the routing decision for path, for a client at addr: the edges in order.
func (s *Server) Route(path string, addr netip.Addr) (RouteAnswer, error) {
	if err := checkPath(path); err != nil {
		return RouteAnswer{}, err
	}
	c, err := s.locate(addr.String(), "")
	if err != nil {
		return RouteAnswer{}, err
	}
	return s.route(path, c, "route")
}

func (s *Server) route(path string, c client, api string) (RouteAnswer, error) {
	key := s.contentKey(path)
	buf := s.bufs.Get().(*hrw.Buffer)
	defer s.bufs.Put(buf)
	v := s.view.Load()
	d, err := s.decide(buf, v, key, c, api)
	a := RouteAnswer{Path: path, Key: key, Client: c.Addr.String(), Country: c.Country, Located: c.Located, Reason: string(d.Reason),
		Edges: make([]RouteEdge, 0, len(d.Choices))}
	if err != nil {
		return a, err
	}
	for _, ch := range d.Choices {
		e := &v.edges[ch.Region][ch.Edge]
		a.Edges = append(a.Edges, RouteEdge{Name: e.Heartbeat.Edge, Region: e.Heartbeat.Region, URL: e.Heartbeat.URL, State: e.State.String()})
	}
	a.Region = a.Edges[0].Region
	v.assign(d.Choices[0])
	return a, nil
}

// contentKey is the key rendezvous hashing places path's stream by. A signed URL's path form
// (/_t/<token>/vod/abc/...) is keyed without its token, so that every viewer of a stream,
// whatever their token, lands on the stream's edge (and its warm cache); the token stays in
// the URL the viewer is sent to.
func (s *Server) contentKey(path string) string {
	if _, rest, ok := signedurl.SplitPath(path); ok && rest != "" {
		path = rest
	}
	return hrw.ContentKey(path, s.cfg.ContentKeyDepth)
}

// RouteAnswer is /v1/route's answer (its JSON is shared with the load generator).
type RouteAnswer = route.Answer

// RouteEdge is one edge of an answer.
type RouteEdge = route.Edge
