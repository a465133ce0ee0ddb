package steering

import (
	"cmp"
	_ "embed"
	"net/http"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/cmcd"
	"github.com/duetcdn/duet/steering/hrw"
)

// Topology is /v1/topology's answer: every region and its edges as this instance sees them.
type Topology struct {
	At            time.Time        `json:"at"`
	DefaultRegion string           `json:"default_region"`
	Regions       []TopologyRegion `json:"regions"`
}

// TopologyRegion is one region: "up" when every known edge is up, "degraded" when some are,
// "down" when none is (or none is known).
type TopologyRegion struct {
	Name     string  `json:"name"`
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	Health   string  `json:"health"`
	EdgesUp  int     `json:"edges_up"`
	Load     float64 `json:"load"`     // summed connections of up edges
	Capacity float64 `json:"capacity"` // summed capacity of up edges; 0: unknown
	HitRatio float64 `json:"hit_ratio"`
	// QoE sums up the up edges' viewers (sessions and rebuffering sessions added, medians
	// weighted by sessions); nil when no player reported CMCD.
	QoE   *cmcd.Summary  `json:"qoe,omitempty"`
	Edges []TopologyEdge `json:"edges"`

	// SteeringURL is the region's steering service (Region.SteeringURL): the status page asks
	// every region's steering for its view.
	SteeringURL string `json:"steering_url,omitempty"`
}

// TopologyEdge is one edge: the table's verdict and its last heartbeat.
type TopologyEdge struct {
	Name              string    `json:"name"`
	URL               string    `json:"url"`
	State             string    `json:"state"` // up, draining, down
	DownReason        string    `json:"down_reason,omitempty"`
	Announced         string    `json:"announced"` // serving or draining, as the edge says
	Since             time.Time `json:"since"`
	HeartbeatAgeMS    int64     `json:"heartbeat_age_ms"`
	FailedProbes      int       `json:"failed_probes"`
	LastProbeError    string    `json:"last_probe_error,omitempty"`
	Connections       int64     `json:"connections"`
	RequestsPerSec    float64   `json:"requests_per_sec"`
	EgressBytesPerSec float64   `json:"egress_bytes_per_sec"`
	CPU               float64   `json:"cpu"`
	HitRatio          float64   `json:"hit_ratio"`
	OriginHealthy     bool      `json:"origin_healthy"`
	// QoE is what the edge's viewers' players report (CMCD), from its last heartbeat.
	QoE *cmcd.Summary `json:"qoe,omitempty"`
	// Capacity (connections), CapacityEgressBytesPerSec and CapacityCPU are what the edge
	// announces (0: not announced).
	Capacity                  int64   `json:"capacity"`
	CapacityEgressBytesPerSec float64 `json:"capacity_egress_bytes_per_sec"`
	CapacityCPU               float64 `json:"capacity_cpu"`
	// Load is the edge's load as steering estimates it now, 1 at capacity: the highest of its
	// heartbeat's load over its capacities, plus the viewers sent to it since; -1 when unknown
	// (no capacity announced).
	Load float64 `json:"load"`
	// Origins is each origin's circuit breaker, as the edge's heartbeat reports them.
	Origins []bus.OriginHealth `json:"origins,omitempty"`
}

// Topology describes the regions and edges now.
func (s *Server) Topology() Topology {
	v := s.view.Load()
	now := s.now()
	t := Topology{At: now.UTC(), DefaultRegion: s.cfg.DefaultRegion, Regions: make([]TopologyRegion, len(v.regions))}
	for i, r := range v.regions {
		tr := TopologyRegion{Name: r.Name, SteeringURL: s.cfg.Regions[i].SteeringURL, Lat: r.Loc.Lat, Lon: r.Loc.Lon, Edges: make([]TopologyEdge, 0, len(r.Edges))}
		var reqs, hits float64
		var qoe []*cmcd.Summary
		for j, e := range v.edges[i] {
			hb := e.Heartbeat
			tr.Edges = append(tr.Edges, TopologyEdge{Name: hb.Edge, URL: hb.URL, State: e.State.String(), DownReason: e.DownReason,
				Announced: hb.State, Since: e.Since.UTC(), HeartbeatAgeMS: now.Sub(e.LastHeartbeat).Milliseconds(),
				FailedProbes: e.FailedProbes, LastProbeError: e.LastProbeError, Connections: hb.Connections,
				RequestsPerSec: hb.RequestsPerSec, EgressBytesPerSec: hb.EgressBytesPerSec, CPU: hb.CPU,
				HitRatio: hb.HitRatio, OriginHealthy: hb.OriginHealthy, QoE: hb.QoE, Origins: hb.Origins,
				Capacity: cmp.Or(hb.Capacity, int64(s.cfg.EdgeCapacity)), CapacityEgressBytesPerSec: hb.CapacityEgressBytesPerSec,
				CapacityCPU: hb.CapacityCPU, Load: edgeUtil(r.Edges[j])})
			if r.Edges[j].State.String() == "up" {
				qoe = append(qoe, hb.QoE)
				tr.EdgesUp++
				tr.Load += float64(hb.Connections)
				tr.Capacity += float64(cmp.Or(hb.Capacity, int64(s.cfg.EdgeCapacity)))
				reqs += hb.RequestsPerSec
				hits += hb.HitRatio * hb.RequestsPerSec
			}
		}
		if reqs > 0 {
			tr.HitRatio = hits / reqs // weighted by request rate
		}
		tr.QoE = regionQoE(qoe)
		switch {
		case tr.EdgesUp == 0:
			tr.Health = "down"
		case tr.EdgesUp < len(tr.Edges):
			tr.Health = "degraded"
		default:
			tr.Health = "up"
		}
		t.Regions[i] = tr
	}
	return t
}

// edgeUtil is e's estimated load (Load plus Pending), or -1 when unknown.
func edgeUtil(e hrw.Edge) float64 {
	if e.Capacity <= 0 {
		return -1
	}
	l := e.Load
	if e.Pending != nil {
		l += e.Pending.Value()
	}
	return l / e.Capacity
}

// regionQoE adds up the edges' summaries: sessions and rebuffering sessions add, medians are
// averaged weighted by each edge's sessions (an approximation of the region's median that needs
// no per-session data), the recent sessions are the edges' newest.
func regionQoE(edges []*cmcd.Summary) *cmcd.Summary {
	var out cmcd.Summary
	var bufW, tpW, buf, tp float64
	for _, q := range edges {
		if q == nil {
			continue
		}
		out.Sessions += q.Sessions
		out.Rebuffering += q.Rebuffering
		if q.MedianBufferMS >= 0 {
			buf += float64(q.MedianBufferMS) * float64(q.Sessions)
			bufW += float64(q.Sessions)
		}
		if q.MedianThroughputKbps >= 0 {
			tp += float64(q.MedianThroughputKbps) * float64(q.Sessions)
			tpW += float64(q.Sessions)
		}
	}
	if out.Sessions == 0 {
		return nil
	}
	out.MedianBufferMS, out.MedianThroughputKbps = -1, -1
	if bufW > 0 {
		out.MedianBufferMS = int64(buf / bufW)
	}
	if tpW > 0 {
		out.MedianThroughputKbps = int64(tp / tpW)
	}
	return &out
}

func (s *Server) handleTopology(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*") // every region's status page reads every region's view
	writeJSON(w, http.StatusOK, s.Topology())
}

//go:embed status.html
var statusPage []byte

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(statusPage)
}
