package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Content types of the steering answers.
const (
	// ContentTypeHLS is the IANA media type of an HLS Steering Manifest
	// (draft-pantos-content-steering, IANA considerations).
	ContentTypeHLS = "application/vnd.apple.steering-list"
	// ContentTypeDASH is what DASH clients are served (ETSI TS 103 998
	// uses JSON; no type of its own is registered).
	ContentTypeDASH = "application/json"
)

// DefaultTTL is the TTL used when Input.TTL is zero: the specs' recommended
// 300 seconds. Steering that follows live edge health wants much less (10 to
// 30 s), and sets it.
const DefaultTTL = 300 * time.Second

// ErrInvalidInput is wrapped by the builders' errors: an ID, a clone or the
// TTL breaks the rules.
var ErrInvalidInput = errors.New("manifest: invalid steering input")

// Pathway is one entry of the priority list.
type Pathway struct {
	// ID names the pathway: an HLS PATHWAY-ID, or a DASH
	// BaseURL@serviceLocation. See ValidPathwayID.
	ID string
	// Down marks a pathway whose edges are all unhealthy. Down pathways go
	// to the end of the list, in their given order (see the package doc).
	Down bool
	// Clone, when not nil, declares ID as a clone of another pathway with
	// its URIs rewritten: it is listed in PATHWAY-CLONES.
	Clone *Clone
}

// Clone is a PATHWAY-CLONES entry: a pathway the client makes by copying
// BaseID's variants (HLS) or BaseURLs (DASH) and replacing parts of their
// URIs.
type Clone struct {
	// BaseID is the pathway copied.
	BaseID string
	// Host replaces the URIs' host (URI-REPLACEMENT.HOST), "name" or
	// "name:port". Empty keeps the host.
	Host string
	// Params are added to the URIs' queries (URI-REPLACEMENT.PARAMS),
	// replacing parameters of the same name. Keys must be non-empty.
	Params map[string]string
}

// Input is what the builders need besides the pathways.
type Input struct {
	// TTL is how long the client waits before it reloads, whole seconds (a
	// fraction is dropped); at least 1s. 0 means DefaultTTL.
	TTL time.Duration
	// ReloadURI is where the client asks next, absolute or relative to the
	// steering request's URI; empty omits RELOAD-URI and the client asks the
	// same URI again. Its _HLS_*, _DASH_* and duet_* parameters are
	// dropped, and Request's pathway and throughput are added as
	// duet_pathway and duet_throughput.
	ReloadURI string
	// Request is what this steering request reported (ParseHLSQuery,
	// ParseDASHQuery).
	Request Request
}

// HLS writes an HLS Steering Manifest for the pathways, best first.
func HLS(in Input, order []Pathway) ([]byte, error) {
	return build(in, order, false)
}

// DASH writes a DASH Content Steering response (DCSM) for the pathways
// (service locations), best first. It carries the list as both
// PATHWAY-PRIORITY (ETSI TS 103 998) and SERVICE-LOCATION-PRIORITY (the
// earlier DASH-IF draft's name).
func DASH(in Input, order []Pathway) ([]byte, error) {
	return build(in, order, true)
}

// steeringManifest is the JSON document, fields in the specs' order.
type steeringManifest struct {
	Version                 int            `json:"VERSION"`
	TTL                     int64          `json:"TTL"`
	ReloadURI               string         `json:"RELOAD-URI,omitempty"`
	PathwayPriority         []string       `json:"PATHWAY-PRIORITY"`
	ServiceLocationPriority []string       `json:"SERVICE-LOCATION-PRIORITY,omitempty"`
	PathwayClones           []pathwayClone `json:"PATHWAY-CLONES,omitempty"`
}

type pathwayClone struct {
	BaseID         string         `json:"BASE-ID"`
	ID             string         `json:"ID"`
	URIReplacement uriReplacement `json:"URI-REPLACEMENT"`
}

type uriReplacement struct {
	Host   string            `json:"HOST,omitempty"`
	Params map[string]string `json:"PARAMS,omitempty"` // encoding/json sorts the keys
}

func build(in Input, order []Pathway, dash bool) ([]byte, error) {
	ttl := in.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	secs := int64(ttl / time.Second)
	if secs < 1 {
		return nil, fmt.Errorf("%w: TTL %v is under a second", ErrInvalidInput, in.TTL)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("%w: no pathways (PATHWAY-PRIORITY needs at least one)", ErrInvalidInput)
	}
	m := steeringManifest{Version: 1, TTL: secs}
	if in.ReloadURI != "" {
		u, err := reloadURI(in.ReloadURI, in.Request)
		if err != nil {
			return nil, err
		}
		m.ReloadURI = u
	}
	seen := make(map[string]bool, len(order))
	for _, p := range order {
		if !ValidPathwayID(p.ID) {
			return nil, fmt.Errorf("%w: %w: %q", ErrInvalidInput, ErrInvalidPathway, p.ID)
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("%w: pathway %q listed twice", ErrInvalidInput, p.ID)
		}
		seen[p.ID] = true
	}
	m.PathwayPriority = make([]string, 0, len(order))
	for _, down := range []bool{false, true} {
		for _, p := range order {
			if p.Down == down {
				m.PathwayPriority = append(m.PathwayPriority, p.ID)
			}
		}
	}
	if dash {
		m.ServiceLocationPriority = m.PathwayPriority
	}
	for _, p := range order {
		if p.Clone == nil {
			continue
		}
		c, err := clone(p)
		if err != nil {
			return nil, err
		}
		m.PathwayClones = append(m.PathwayClones, c)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // URIs keep their '&'
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func clone(p Pathway) (pathwayClone, error) {
	c := p.Clone
	switch {
	case !ValidPathwayID(c.BaseID):
		return pathwayClone{}, fmt.Errorf("%w: clone %q: %w: BASE-ID %q", ErrInvalidInput, p.ID, ErrInvalidPathway, c.BaseID)
	case c.BaseID == p.ID:
		return pathwayClone{}, fmt.Errorf("%w: clone %q is its own BASE-ID", ErrInvalidInput, p.ID)
	case c.Host != "" && !validHost(c.Host):
		return pathwayClone{}, fmt.Errorf("%w: clone %q: bad HOST %q", ErrInvalidInput, p.ID, c.Host)
	case c.Host == "" && len(c.Params) == 0:
		return pathwayClone{}, fmt.Errorf("%w: clone %q replaces nothing", ErrInvalidInput, p.ID)
	}
	for k := range c.Params {
		if k == "" {
			return pathwayClone{}, fmt.Errorf("%w: clone %q: empty PARAMS key", ErrInvalidInput, p.ID)
		}
	}
	return pathwayClone{
		BaseID:         c.BaseID,
		ID:             p.ID,
		URIReplacement: uriReplacement{Host: c.Host, Params: c.Params},
	}, nil
}

// validHost accepts "name", "name:port", "1.2.3.4:port" and "[v6]:port":
// no scheme, path, query, user info or spaces.
func validHost(h string) bool {
	if h == "" || len(h) > 261 {
		return false
	}
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.User == nil && u.Path == "" && u.RawQuery == "" &&
		u.Fragment == "" && !strings.ContainsAny(h, " \t\r\n\"\\") && u.Hostname() != ""
}

// reloadURI drops client and session parameters from base and adds the
// session's.
func reloadURI(base string, r Request) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("%w: RELOAD-URI %q: %w", ErrInvalidInput, base, err)
	}
	q := u.Query()
	for k := range q {
		if strings.HasPrefix(k, "_HLS_") || strings.HasPrefix(k, "_DASH_") || strings.HasPrefix(k, "duet_") {
			delete(q, k)
		}
	}
	if r.Pathway != "" {
		q.Set(ParamPrevPathway, r.Pathway)
	}
	if r.Throughput > 0 {
		q.Set(ParamPrevThroughput, strconv.FormatInt(r.Throughput, 10))
	}
	u.RawQuery = q.Encode()
	u.ForceQuery = false
	return u.String(), nil
}
