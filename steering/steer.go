package steering

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/duetcdn/duet/steering/hrw"
	"github.com/duetcdn/duet/steering/manifest"
)

// Pathways for content steering: one per edge, named after it (EdgePathway), so a player can move
// to another edge of its region when one dies: players bench a failed pathway for minutes and
// ignore a clone whose ID they already have (see package manifest's doc), so pathways shared by a
// region's edges would send the viewers of a dead edge to another region. An edge gives the
// content it serves its own pathway ID (the edge's steering.pathway) and names it in the steering
// URI it injects (ParamBase); every other edge is a clone of that pathway, with the edge's host
// as URI-REPLACEMENT HOST.
//
// The priority: the player's own pathway first while its edge is up and in the region the
// routing decision puts first (or in a region the decision spilled past for load: a full
// region keeps the viewers it has), and on the first answer of a session whatever it is (a switch
// while the first segments load stalls hls.js for good); then the decision's edges, region by
// region (at most pathwaysPerRegion each, rendezvous hashing of the content key, as /v1/route);
// last the player's own pathway when its edge is down (listed, never dropped: see package
// manifest).
//
// RELOAD-URI goes to the steering service of another region than the one the answer puts first
// (Region.SteeringURL), so the player's next reload does not depend on the region it plays from:
// hls.js retries a failed reload at the same URI for good, so the URI must be chosen before the
// loss. Every instance must therefore agree on where a player plays: one that GeoIP cannot
// place is taken to be in the region of its pathway (not in the instance's default region),
// or each region's steering would pull it home and send its reloads to the other, in turn.
//
// The player's reported pathway and throughput are checked (400 when malformed) and carried to
// the next request in RELOAD-URI.

// ParamBase is the steering request's parameter that names the pathway of the playlist or MPD
// (the edge's own: see EdgePathway); edges write it into the steering URI they inject, and
// RELOAD-URI keeps it. Clones are made of it: players keep the playlist's own pathways for good,
// while Shaka, for one, clones only those.
const ParamBase = "base"

// pathwaysPerRegion bounds the edges of one region listed in an answer: each is a clone of every
// variant, so a player holds pathwaysPerRegion × regions copies of the level list.
const pathwaysPerRegion = 3

// EdgePathway is the pathway ID of the edge called name: its name, with any character a pathway
// ID may not hold replaced by '_' (edge names are [A-Za-z0-9_-] already).
func EdgePathway(name string) string {
	if manifest.ValidPathwayID(name) {
		return name
	}
	b := []byte(name)
	if len(b) > manifest.MaxPathwayIDLen {
		b = b[:manifest.MaxPathwayIDLen]
	}
	for i, c := range b {
		if !manifest.ValidPathwayID(string(c)) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// steerPathways builds the priority list for the content key and client, whose steering request
// is req, for a playlist or MPD whose own pathway is base; and picks the steering URL for the
// next reload.
func (s *Server) steerPathways(key string, c client, api string, req manifest.Request, base string) ([]manifest.Pathway, string, error) {
	buf := s.bufs.Get().(*hrw.Buffer)
	defer s.bufs.Put(buf)
	v := s.view.Load()
	// The pathway the player is on: the one it reports, else (Shaka's first request reports
	// none) the playlist's own.
	cur := cmp.Or(req.Pathway, base)
	curRegion, curEdge := v.edgeOfPathway(cur)
	if !c.Located && curRegion >= 0 {
		// A player GeoIP cannot place is taken to be where it plays. Each instance's own
		// default region would otherwise decide: a player reloading from another region's
		// steering (RELOAD-URI) would be moved to that region, and its next RELOAD-URI sent
		// back to the region it just left, which is the one whose loss then takes its steering.
		c.Region = v.regions[curRegion].Name
	}
	d, err := s.decide(buf, v, key, c, api)
	if err != nil {
		return nil, "", err
	}
	var out []manifest.Pathway
	seen := map[string]bool{}
	add := func(p manifest.Pathway) {
		if !seen[p.ID] {
			seen[p.ID] = true
			out = append(out, p)
		}
	}
	pathway := func(r, e int, down bool) manifest.Pathway {
		ed := v.edges[r][e]
		p := manifest.Pathway{ID: EdgePathway(ed.Heartbeat.Edge), Down: down}
		if p.ID != base {
			p.Clone = &manifest.Clone{BaseID: base, Host: urlHost(ed.Heartbeat.URL)}
		}
		return p
	}
	lead := d.Choices[0].Region // the region the player will play from
	curUp := curRegion >= 0 && v.edges[curRegion][curEdge].State == hrw.Up
	firstAnswer := req.PrevPathway == ""
	switch {
	// A full region sheds new viewers, not the ones it already serves: moving them all on their
	// next reload would empty it, and the next reloads would fill it again.
	case curUp && (firstAnswer || curRegion == lead || d.Reason == hrw.ReasonSpillLoad && s.picker.Hot(&v.regions[curRegion])):
		add(pathway(curRegion, curEdge, false)) // its edge is up: stay
		lead = curRegion
	case curRegion < 0 && firstAnswer:
		add(manifest.Pathway{ID: cur}) // a pathway of no edge steering knows: do not move yet
	}
	perRegion := make([]int, len(v.regions))
	for _, ch := range d.Choices {
		if perRegion[ch.Region] < pathwaysPerRegion {
			perRegion[ch.Region]++
			add(pathway(ch.Region, ch.Edge, false))
		}
	}
	// Last, listed (never dropped) though down or not chosen: where the player is, and the
	// pathway of its playlist.
	for _, id := range []string{cur, base} {
		if r, e := v.edgeOfPathway(id); r >= 0 {
			add(pathway(r, e, true))
		} else {
			add(manifest.Pathway{ID: id, Down: true})
		}
	}
	// A player that moves to another edge is a new viewer there.
	if r, e := v.edgeOfPathway(out[0].ID); r >= 0 && (r != curRegion || e != curEdge) && v.edges[r][e].State == hrw.Up {
		v.assign(hrw.Choice{Region: r, Edge: e})
	}
	return out, s.reloadBase(d, lead), nil
}

// reloadBase is the steering service the player's next reload goes to: that of the first region
// of the decision other than lead, so that losing the region a player plays from does not lose
// its steering too. "" (this service) when no other region is usable or it has no SteeringURL.
func (s *Server) reloadBase(d hrw.Decision, lead int) string {
	for _, ch := range d.Choices {
		if ch.Region != lead {
			return strings.TrimSuffix(s.cfg.Regions[ch.Region].SteeringURL, "/")
		}
	}
	return ""
}

// edgeOfPathway finds the edge whose pathway is id: its region and index, or -1, -1.
func (v *view) edgeOfPathway(id string) (int, int) {
	if id == "" {
		return -1, -1
	}
	for r := range v.edges {
		for e := range v.edges[r] {
			if EdgePathway(v.edges[r][e].Heartbeat.Edge) == id {
				return r, e
			}
		}
	}
	return -1, -1
}

// urlHost is the host name an HLS clone puts in URI-REPLACEMENT HOST. The HLS specification
// replaces only the host name there (players such as hls.js write it into URL.hostname, where
// a ":port" is ignored), so pathways must differ by name or address, not by port: the edges of
// one deployment listen on the same port (443 in production; `duet dev` gives each edge its own
// loopback address).
func urlHost(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return ""
	}
	if h := pu.Hostname(); strings.Contains(h, ":") {
		return "[" + h + "]" // an IPv6 address
	}
	return pu.Hostname()
}

func (s *Server) handleSteer(w http.ResponseWriter, r *http.Request, dash bool) {
	api := "hls"
	if dash {
		api = "dash"
	}
	// Players fetch steering from pages and edges of other origins, and their reloads go to
	// another region's steering (RELOAD-URI): the answers are public.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, fmt.Errorf("%w: malformed query: %w", ErrBadRequest, err), api)
		return
	}
	var req manifest.Request
	if dash {
		req, err = manifest.ParseDASHQuery(q)
	} else {
		req, err = manifest.ParseHLSQuery(q)
	}
	if err != nil {
		s.writeError(w, err, api)
		return
	}
	path, err := oneQuery(q, "path")
	if err == nil && path != "" {
		err = checkPath(path)
	}
	if err != nil {
		s.writeError(w, err, api)
		return
	}
	c, err := s.clientOf(r)
	if err != nil {
		s.writeError(w, err, api)
		return
	}
	base, err := oneQuery(q, ParamBase)
	if err == nil && base != "" && !manifest.ValidPathwayID(base) {
		err = fmt.Errorf("%w: %s %q is not a pathway ID", ErrBadRequest, ParamBase, base)
	}
	if err != nil {
		s.writeError(w, err, api)
		return
	}
	order, reload, err := s.steerPathways(s.contentKey(path), c, api, req, cmp.Or(base, s.cfg.BasePathway))
	if err != nil {
		s.writeError(w, err, api)
		return
	}
	in := manifest.Input{TTL: s.cfg.ManifestTTL, ReloadURI: reload + r.URL.RequestURI(), Request: req}
	var body []byte
	ctype := manifest.ContentTypeHLS
	if dash {
		body, err = manifest.DASH(in, order)
		ctype = manifest.ContentTypeDASH
	} else {
		body, err = manifest.HLS(in, order)
	}
	if err != nil {
		s.writeError(w, err, api)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body) //nolint:gosec // G705: a manifest or JSON with its own Content-Type, never HTML
}
