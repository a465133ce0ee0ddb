package steering

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/duetcdn/duet/internal/accesslog"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/clientaddr"
	"github.com/duetcdn/duet/steering/geoip"
	"github.com/duetcdn/duet/steering/manifest"
)

// Config is the steering service's configuration. Every field has a YAML key, a DUET_STEERING_*
// environment variable and a flag (see internal/config); the zero value of a field means its
// default, given in its comment.
type Config struct {
	// Listen is the HTTP address of the APIs and the status page. Default 127.0.0.1:8070.
	Listen string `yaml:"listen"`
	// Regions lists every region and where it is. Required. In YAML a list of
	// {name, lat, lon}; in a flag or environment variable a comma-separated list of
	// "name:lat:lon" (degrees) or "name:CC" (the centre of the country with ISO code CC):
	// "eu:50.11:8.68,us:US".
	Regions []Region `yaml:"regions"`
	// DefaultRegion is where viewers whose location is unknown (private addresses, GeoIP misses)
	// start from; a player's steering reload starts from the region of the pathway it reports
	// instead, so that every region's steering answers it alike. Default: the first region.
	DefaultRegion string `yaml:"default_region"`
	// TrustedProxies lists the proxies (CIDR prefixes or addresses) whose X-Forwarded-For is
	// believed. Empty: the connection's peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// GeoIPDatabase is a GeoIP2/GeoLite2 City or Country database, or a DB-IP lite database.
	// Empty: the embedded country database.
	GeoIPDatabase string `yaml:"geoip_database"`
	// ContentKeyDepth is how many leading path segments name a stream ("/vod/abc/720p/1.ts" →
	// "/vod/abc" at depth 2): one stream's requests go to one edge. Default 2.
	ContentKeyDepth int `yaml:"content_key_depth"`
	// ManifestTTL is the TTL of HLS and DASH steering manifests: how soon players ask again.
	// Whole seconds, at least 1s. Default 10s.
	ManifestTTL time.Duration `yaml:"manifest_ttl"`
	// BasePathway is the pathway a player is taken to be on when its steering request names
	// none: the edges' pathways are cloned from it. Edges give their content a pathway of their
	// own (their name) and players report it, so this matters only for players that do not.
	// Default "." (HLS's pathway of variants without PATHWAY-ID).
	BasePathway string `yaml:"base_pathway"`
	// HeartbeatInterval is how often edges send heartbeats. Default 1s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// MissedHeartbeats: an edge is down after this many intervals without a heartbeat. Default 3.
	MissedHeartbeats int `yaml:"missed_heartbeats"`
	// ProbeInterval is how often each edge is probed. Default 500ms.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeTimeout bounds one probe. Default: ProbeInterval.
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
	// FailedProbes: an edge is down after this many failed probes in a row. Default 2.
	FailedProbes int `yaml:"failed_probes"`
	// ProbePath makes probes HTTP GETs of the edge's public URL + ProbePath that must answer 2xx.
	// Default: the edges' readiness path on their viewer listener (bus.EdgeReadyPath), which
	// fails while an edge drains and never reaches the origin. "tcp": a probe is a TCP connect to
	// the public URL's host and port.
	ProbePath string `yaml:"probe_path"`
	// ProbeCARoots is a PEM file of CA certificates trusted, besides the system's, when probing
	// https edge URLs: edges whose certificates a private CA signs (`duet dev --https`'s).
	// Default "": the system's roots only.
	ProbeCARoots string `yaml:"probe_ca_roots"`
	// EdgeURLs are the only public URLs steering accepts from edges' heartbeats (and so the only
	// ones it probes and sends viewers to): patterns "scheme://host[:port]", where "*" in the
	// host stands for any part of one label (no dots) and "{edge}" and "{region}" for the
	// heartbeat's edge and region names, as in "https://{edge}.cdn.example.com" or
	// "http://127.0.10.*:8080". A heartbeat with another URL is ignored. Empty: any http(s)
	// base URL except link-local, multicast and unspecified addresses (where cloud metadata
	// services live); set it in production.
	EdgeURLs []string `yaml:"edge_urls"`
	// ForgetAfter: an edge not heard from for this long leaves the table. Default 10m.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// EdgeCapacity is how many viewer connections an edge takes when its heartbeat announces no
	// connection capacity of its own (edges announce capacity.conns, by default their
	// max_conns). An edge's load is the highest of connections, egress and CPU over the
	// capacities its heartbeat announces (docs/scale-out.md); with none announced and this 0,
	// its load is unknown: it is never full nor above the balance bound.
	EdgeCapacity int `yaml:"edge_capacity"`
	// EdgeLoadPercent: an edge at or above this percentage of its capacity is full and its
	// streams spill to the next edge. Default 100.
	EdgeLoadPercent int `yaml:"edge_load_percent"`
	// RegionLoadPercent: a region is hot, and new viewers go to the next region, when every up
	// edge is full; under 100, also when its up edges' summed load reaches this percentage of
	// their summed capacity (to shed viewers before its edges fill). Default 100.
	RegionLoadPercent int `yaml:"region_load_percent"`
	// BalancePercent bounds the load inside a region (consistent hashing with bounded loads): a
	// stream's next viewers go to the next edge in its rendezvous order once its edge's load is
	// above this percentage of the region's average load. Lower spreads more evenly, higher
	// keeps streams stickier (fewer edges cache each hot stream). At least 100. Default 125.
	BalancePercent int `yaml:"balance_percent"`
	// BalanceFloorPercent: no edge is above the balance bound while its load is under this
	// percentage of its capacity, so in a quiet region a stream stays on one edge (one cache)
	// instead of being split between idle edges for a handful of viewers. 1 to 100. Default 10.
	BalanceFloorPercent int `yaml:"balance_floor_percent"`
	// ViewerBytesPerSec is what steering expects one new viewer to add to an edge's egress, in
	// bytes per second: between two heartbeats it adds it (and one connection) to the load of
	// the edge it sent the viewer to, so a crowd arriving within one heartbeat does not all go to
	// one edge. Default 625000 (5 Mbit/s).
	ViewerBytesPerSec int `yaml:"viewer_bytes_per_sec"`
	// AccessLog writes one JSON line per request (routes, redirects, steering manifests, the
	// status page), as edges do (same settings; client behind trusted_proxies).
	AccessLog accesslog.Config `yaml:"access_log"`
	// ViewerState serves viewers' resume positions, choices and settings, kept in the region's
	// NATS and replicated to every other region (/v1/viewers/..., see docs/viewer-state.md).
	ViewerState ViewerStateConfig `yaml:"viewer_state"`
}

// ViewerStateConfig configures the viewer state API.
type ViewerStateConfig struct {
	// Region is the region this steering instance serves (one of Regions): it writes viewer
	// state to that region's bucket (duet_viewers_<region> in its NATS), which sources every
	// other region's. Empty: the viewer state API is off (404).
	Region string `yaml:"region"`
	// Retention is how long a viewer's state lives after its last write, erasures included (an
	// erasure must outlive the longest partition, or older writes cut off for longer come
	// back). Default 2160h (90 days).
	Retention time.Duration `yaml:"retention"`
	// MaxBytes caps the region's bucket (every region's copies); writes fail with 503 when it
	// is full. Default 1073741824 (1 GiB).
	MaxBytes int64 `yaml:"max_bytes"`
	// RequestsPerMinute is how many viewer state requests one viewer id may make per minute,
	// in bursts of up to a quarter of it; more are answered 429. Default 120.
	RequestsPerMinute int `yaml:"requests_per_minute"`
}

// Region is one region and where it is.
type Region struct {
	// Name is the region's name, as its edges announce it.
	Name string `yaml:"name"`
	// Lat and Lon are the region's position in degrees (WGS 84).
	Lat float64 `yaml:"lat"`
	Lon float64 `yaml:"lon"`
	// SteeringURL is the public base URL of the region's steering service
	// (https://steer-eu.example.net). Steering answers send a player's next reload (RELOAD-URI)
	// to another region's steering than the region it plays from, so that losing that region
	// does not lose the player's steering (players retry a failed reload at the same URL, for
	// good). A name that itself fails over between regions (anycast, health-checked DNS) may be
	// given to every region instead. Empty: reloads come back to the steering that answered.
	// YAML only.
	SteeringURL string `yaml:"steering_url"`
}

// UnmarshalText reads "name:lat:lon" or "name:CC" (a country's centre).
func (r *Region) UnmarshalText(b []byte) error {
	parts := strings.Split(string(b), ":")
	switch len(parts) {
	case 2:
		loc, ok := geoip.CountryCentre(strings.ToUpper(parts[1]))
		if !ok {
			return fmt.Errorf("region %q: unknown country code %q", b, parts[1])
		}
		*r = Region{Name: parts[0], Lat: loc.Lat, Lon: loc.Lon}
		return nil
	case 3:
		lat, err1 := strconv.ParseFloat(parts[1], 64)
		lon, err2 := strconv.ParseFloat(parts[2], 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("region %q: want name:lat:lon in degrees", b)
		}
		*r = Region{Name: parts[0], Lat: lat, Lon: lon}
		return nil
	}
	return fmt.Errorf("region %q: want name:lat:lon or name:CC", b)
}

// String writes the form UnmarshalText reads.
func (r Region) String() string {
	return r.Name + ":" + strconv.FormatFloat(r.Lat, 'f', -1, 64) + ":" + strconv.FormatFloat(r.Lon, 'f', -1, 64)
}

// DefaultConfig is the Config with its defaults spelled out (Regions still to be given).
func DefaultConfig() Config {
	return Config{
		Listen:              "127.0.0.1:8070",
		ContentKeyDepth:     2,
		ManifestTTL:         10 * time.Second,
		BasePathway:         manifest.DefaultPathway,
		HeartbeatInterval:   time.Second,
		MissedHeartbeats:    3,
		ProbeInterval:       500 * time.Millisecond,
		FailedProbes:        2,
		ForgetAfter:         10 * time.Minute,
		EdgeLoadPercent:     100,
		RegionLoadPercent:   100,
		BalancePercent:      125,
		BalanceFloorPercent: 10,
		ViewerBytesPerSec:   625_000,
		AccessLog:           accesslog.DefaultConfig(),
		ViewerState:         ViewerStateConfig{Retention: 90 * 24 * time.Hour, MaxBytes: 1 << 30, RequestsPerMinute: 120},
	}
}

// validBaseURL accepts an absolute http or https URL with a host and neither query nor fragment.
func validBaseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil &&
		u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""
}

// fill checks c and fills in the defaults of its zero fields.
func (c *Config) fill() error {
	d := DefaultConfig()
	if c.AccessLog.Sink != "" {
		if err := c.AccessLog.Validate("access_log"); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if len(c.Regions) == 0 {
		return fmt.Errorf("%w: regions: at least one region is required (name:lat:lon)", ErrInvalidConfig)
	}
	seen := map[string]bool{}
	for i, r := range c.Regions {
		switch {
		case bus.ValidRegion(r.Name) != nil:
			return fmt.Errorf("%w: regions[%d]: name %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalidConfig, i, r.Name)
		case !manifest.ValidPathwayID(r.Name):
			return fmt.Errorf("%w: regions[%d]: name %q is not a valid pathway ID", ErrInvalidConfig, i, r.Name)
		case seen[r.Name]:
			return fmt.Errorf("%w: regions: %q listed twice", ErrInvalidConfig, r.Name)
		case math.IsNaN(r.Lat) || r.Lat < -90 || r.Lat > 90:
			return fmt.Errorf("%w: regions[%d] %s: latitude %v is not in [-90, 90]", ErrInvalidConfig, i, r.Name, r.Lat)
		case math.IsNaN(r.Lon) || r.Lon < -180 || r.Lon > 180:
			return fmt.Errorf("%w: regions[%d] %s: longitude %v is not in [-180, 180]", ErrInvalidConfig, i, r.Name, r.Lon)
		case r.SteeringURL != "" && !validBaseURL(r.SteeringURL):
			return fmt.Errorf("%w: regions[%d] %s: steering_url %q: want http(s)://host[:port] and no query", ErrInvalidConfig, i, r.Name, r.SteeringURL)
		}
		seen[r.Name] = true
	}
	if c.DefaultRegion == "" {
		c.DefaultRegion = c.Regions[0].Name
	} else if !seen[c.DefaultRegion] {
		return fmt.Errorf("%w: default_region %q is not one of the regions", ErrInvalidConfig, c.DefaultRegion)
	}
	if _, err := clientaddr.ParsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("%w: trusted_proxies: %w", ErrInvalidConfig, err)
	}
	if c.Listen == "" {
		c.Listen = d.Listen
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: listen %q is not host:port", ErrInvalidConfig, c.Listen)
	}
	if c.BasePathway == "" {
		c.BasePathway = d.BasePathway
	}
	if !manifest.ValidPathwayID(c.BasePathway) {
		return fmt.Errorf("%w: base_pathway %q is not a valid pathway ID", ErrInvalidConfig, c.BasePathway)
	}
	if seen[c.BasePathway] {
		return fmt.Errorf("%w: base_pathway %q is a region's name: region pathways are its clones", ErrInvalidConfig, c.BasePathway)
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"manifest_ttl", &c.ManifestTTL, d.ManifestTTL},
		{"heartbeat_interval", &c.HeartbeatInterval, d.HeartbeatInterval},
		{"probe_interval", &c.ProbeInterval, d.ProbeInterval},
		{"probe_timeout", &c.ProbeTimeout, c.ProbeInterval},
		{"forget_after", &c.ForgetAfter, d.ForgetAfter},
	} {
		if *f.v < 0 {
			return fmt.Errorf("%w: %s %v is negative", ErrInvalidConfig, f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = c.ProbeInterval
	}
	if c.ManifestTTL < time.Second {
		return fmt.Errorf("%w: manifest_ttl %v is under a second", ErrInvalidConfig, c.ManifestTTL)
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"content_key_depth", &c.ContentKeyDepth, d.ContentKeyDepth},
		{"missed_heartbeats", &c.MissedHeartbeats, d.MissedHeartbeats},
		{"failed_probes", &c.FailedProbes, d.FailedProbes},
		{"edge_capacity", &c.EdgeCapacity, 0},
		{"edge_load_percent", &c.EdgeLoadPercent, d.EdgeLoadPercent},
		{"region_load_percent", &c.RegionLoadPercent, d.RegionLoadPercent},
		{"balance_percent", &c.BalancePercent, d.BalancePercent},
		{"balance_floor_percent", &c.BalanceFloorPercent, d.BalanceFloorPercent},
		{"viewer_bytes_per_sec", &c.ViewerBytesPerSec, d.ViewerBytesPerSec},
	} {
		if *f.v < 0 {
			return fmt.Errorf("%w: %s %d is negative", ErrInvalidConfig, f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.BalancePercent < 100 {
		return fmt.Errorf("%w: balance_percent %d is under 100: no edge can be above the average of all", ErrInvalidConfig, c.BalancePercent)
	}
	if c.BalanceFloorPercent > 100 {
		return fmt.Errorf("%w: balance_floor_percent %d is over 100", ErrInvalidConfig, c.BalanceFloorPercent)
	}
	if _, err := parseEdgeURLPatterns(c.EdgeURLs); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.ProbePath == "" {
		c.ProbePath = bus.EdgeReadyPath
	}
	if err := c.ViewerState.fill(seen, d.ViewerState); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.ProbePath != "tcp" && !strings.HasPrefix(c.ProbePath, "/") {
		return fmt.Errorf("%w: probe_path %q must start with /", ErrInvalidConfig, c.ProbePath)
	}
	return nil
}

// fill checks the viewer state settings and fills in the defaults; regions are the names of the
// configured regions.
func (v *ViewerStateConfig) fill(regions map[string]bool, d ViewerStateConfig) error {
	if v.Region != "" && !regions[v.Region] {
		return fmt.Errorf("viewer_state.region %q is not one of the regions", v.Region)
	}
	switch {
	case v.Retention < 0:
		return fmt.Errorf("viewer_state.retention %v is negative", v.Retention)
	case v.MaxBytes < 0:
		return fmt.Errorf("viewer_state.max_bytes %d is negative", v.MaxBytes)
	case v.RequestsPerMinute < 0:
		return fmt.Errorf("viewer_state.requests_per_minute %d is negative", v.RequestsPerMinute)
	}
	if v.Retention == 0 {
		v.Retention = d.Retention
	}
	if v.Retention < time.Minute {
		return fmt.Errorf("viewer_state.retention %v is under a minute", v.Retention)
	}
	if v.MaxBytes == 0 {
		v.MaxBytes = d.MaxBytes
	}
	if v.RequestsPerMinute == 0 {
		v.RequestsPerMinute = d.RequestsPerMinute
	}
	return nil
}
