package steering

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/duetcdn/duet/steering/hrw"
	"github.com/duetcdn/duet/steering/manifest"
)

// Pathways for content steering: one per region, named after it. Each region's pathway is a
// clone of the base pathway (Config.BasePathway: the pathway of the content the edges serve)
// whose URI-REPLACEMENT HOST is the host of the region's edge for the stream (rendezvous hashing
// of the content key, as /v1/route). The priority follows the routing decision: healthy regions
// nearest first, then the base pathway itself (the edge the playlist came from), then regions
// whose edges are all down or draining (listed, never dropped: see package manifest).
//
// The player's reported pathway and throughput are checked (400 when malformed) and carried to
// the next request in RELOAD-URI; the order itself follows health, load and location.

// steerPathways builds the priority list for the content key and client.
func (s *Server) steerPathways(key string, c client, api string) ([]manifest.Pathway, error) {
	buf := s.bufs.Get().(*hrw.Buffer)
	defer s.bufs.Put(buf)
	v := s.view.Load()
	d, err := s.decide(buf, v, key, c, api)
	if err != nil {
		return nil, err
	}
	base := s.cfg.BasePathway
	listed := make([]bool, len(v.regions))
	var out []manifest.Pathway
	for _, ch := range d.Choices {
		if listed[ch.Region] {
			continue
		}
		listed[ch.Region] = true
		e := v.edges[ch.Region][ch.Edge]
		out = append(out, manifest.Pathway{ID: v.regions[ch.Region].Name, Clone: &manifest.Clone{BaseID: base, Host: urlHost(e.Heartbeat.URL)}})
	}
	out = append(out, manifest.Pathway{ID: base})
	for i, r := range v.regions {
		if listed[i] || len(r.Edges) == 0 {
			continue // a region with no known edge has no host to clone to
		}
		e := v.edges[i][hrw.Rank(key, r.Edges)[0]]
		out = append(out, manifest.Pathway{ID: r.Name, Down: true, Clone: &manifest.Clone{BaseID: base, Host: urlHost(e.Heartbeat.URL)}})
	}
	return out, nil
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
	order, err := s.steerPathways(s.contentKey(path), c, api)
	if err != nil {
		s.writeError(w, err, api)
		return
	}
	in := manifest.Input{TTL: s.cfg.ManifestTTL, ReloadURI: r.URL.RequestURI(), Request: req}
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
