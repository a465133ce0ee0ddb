package main

import (
	"net/url"
	"path"
	"strings"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/steering"
	"github.com/duetcdn/duet/steering/manifest"
)

// steeringInjectConfig turns on content steering injection at the edge.
type steeringInjectConfig struct {
	// HLSServerURI is the steering service's HLS endpoint (https://steer.example.net/v1/steer/hls),
	// written, with ?path=<the playlist's path>, into #EXT-X-CONTENT-STEERING:SERVER-URI of every
	// multivariant playlist. Empty: no HLS injection.
	HLSServerURI string `yaml:"hls_server_uri"`
	// DASHServerURI is the steering service's DASH endpoint, written likewise into the
	// <ContentSteering> of every MPD. Empty: no DASH injection.
	DASHServerURI string `yaml:"dash_server_uri"`
	// Pathway is the pathway ID the edge gives the content. Steering gives every edge a pathway
	// of its own, named after the edge, and makes the others clones of the one a player is on,
	// so that a player moves to another edge of its region when its edge dies. Default: the
	// edge's name (the pathway steering knows it by); "." puts the variants in HLS's default
	// pathway, which steering keeps only until a player's second steering request.
	Pathway string `yaml:"pathway"`
}

// rewriter returns the manifest rewriter of the edge called name, or nil when injection is off.
func (c steeringInjectConfig) rewriter(name, publicURL string) edge.ManifestRewriter {
	if c.HLSServerURI == "" && c.DASHServerURI == "" {
		return nil
	}
	p := c.Pathway
	if p == "" {
		p = steering.EdgePathway(name)
	}
	return steeringRewriter{cfg: c, pathway: p, publicURL: strings.TrimSuffix(publicURL, "/")}
}

// steeringRewriter injects content steering with steering/manifest.
type steeringRewriter struct {
	cfg       steeringInjectConfig
	pathway   string
	publicURL string
}

func (r steeringRewriter) Rewrite(p string, body []byte) ([]byte, bool) {
	switch strings.ToLower(path.Ext(p)) {
	case ".m3u8":
		if r.cfg.HLSServerURI == "" {
			return nil, false
		}
		out, err := manifest.InjectHLS(body, withPath(r.cfg.HLSServerURI, p, r.pathway), r.pathway, func(string) string { return r.pathway })
		return out, err == nil
	case ".mpd":
		if r.cfg.DASHServerURI == "" {
			return nil, false
		}
		base := r.publicURL + path.Dir(p) + "/"
		out, err := manifest.InjectDASH(body, withPath(r.cfg.DASHServerURI, p, r.pathway), r.pathway, []manifest.ServiceLocation{{ID: r.pathway, BaseURL: base}})
		return out, err == nil
	}
	return nil, false
}

// withPath adds the manifest's path to the steering URI, so steering keeps the stream on its
// edge (rendezvous hashing on the stream's folder), and the manifest's pathway, of which steering
// makes the other edges' pathways clones.
func withPath(uri, p, pathway string) string {
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + "path=" + url.QueryEscape(p) + "&" + steering.ParamBase + "=" + url.QueryEscape(pathway)
}

var _ edge.ManifestRewriter = steeringRewriter{}
