package main

import (
	"path"
	"strings"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/steering/manifest"
)

// steeringInjectConfig turns on content steering injection at the edge.
type steeringInjectConfig struct {
	// HLSServerURI is the steering server's HLS endpoint, written into
	// #EXT-X-CONTENT-STEERING:SERVER-URI of every multivariant playlist. Empty: no HLS injection.
	HLSServerURI string `yaml:"hls_server_uri"`
	// DASHServerURI is the steering server's DASH endpoint, written into <ContentSteering> of
	// every MPD. Empty: no DASH injection.
	DASHServerURI string `yaml:"dash_server_uri"`
	// Pathway is the pathway id of this edge's content (default: the edge's region).
	Pathway string `yaml:"pathway"`
}

// rewriter returns the edge's manifest rewriter, or nil when injection is off.
func (c steeringInjectConfig) rewriter(region, publicURL string) edge.ManifestRewriter {
	if c.HLSServerURI == "" && c.DASHServerURI == "" {
		return nil
	}
	p := c.Pathway
	if p == "" {
		p = region
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
		out, err := manifest.InjectHLS(body, r.cfg.HLSServerURI, r.pathway, func(string) string { return r.pathway })
		return out, err == nil
	case ".mpd":
		if r.cfg.DASHServerURI == "" {
			return nil, false
		}
		base := r.publicURL + path.Dir(p) + "/"
		out, err := manifest.InjectDASH(body, r.cfg.DASHServerURI, r.pathway, []manifest.ServiceLocation{{ID: r.pathway, BaseURL: base}})
		return out, err == nil
	}
	return nil, false
}

var _ edge.ManifestRewriter = steeringRewriter{}
