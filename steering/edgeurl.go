package steering

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// edgeURLPattern is one entry of Config.EdgeURLs, parsed.
type edgeURLPattern struct {
	raw    string
	scheme string
	host   string // a glob over the host, '*' within a label; may hold {edge} and {region}
	port   string // explicit or the scheme's default
}

// parseEdgeURLPatterns checks Config.EdgeURLs.
func parseEdgeURLPatterns(raw []string) ([]edgeURLPattern, error) {
	var ps []edgeURLPattern
	for i, r := range raw {
		p, err := parseEdgeURLPattern(r)
		if err != nil {
			return nil, fmt.Errorf("edge_urls[%d] %q: %w", i, r, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func parseEdgeURLPattern(raw string) (edgeURLPattern, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || scheme != "http" && scheme != "https" {
		return edgeURLPattern{}, errors.New(`want "http://host[:port]" or "https://host[:port]"`)
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || strings.ContainsAny(rest, "/?#@") {
		return edgeURLPattern{}, errors.New("want a scheme, a host and at most a port: no path, query or user")
	}
	host, port := rest, defaultPort(scheme)
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return edgeURLPattern{}, fmt.Errorf("port %q is not a number", port)
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1] // an IPv6 address, compared with url.Hostname's form
	}
	host = strings.ToLower(host)
	// Check the glob's syntax once, with the placeholders filled in.
	if _, err := path.Match(globOf(fill(host, "e", "r")), "x"); err != nil || host == "" {
		return edgeURLPattern{}, errors.New("the host is not a valid pattern")
	}
	return edgeURLPattern{raw: raw, scheme: scheme, host: host, port: port}, nil
}

// matches reports whether u (a heartbeat's URL, parsed by checkEdgeURL) is allowed for edge of
// region.
func (p edgeURLPattern) matches(u *url.URL, edge, region string) bool {
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	if u.Scheme != p.scheme || port != p.port {
		return false
	}
	ok, err := path.Match(globOf(fill(p.host, edge, region)), globOf(strings.ToLower(u.Hostname())))
	return err == nil && ok
}

// fill puts the heartbeat's names into a host pattern. Names are valid bus names ([A-Za-z0-9_-]),
// so they bring no glob characters or dots with them.
func fill(host, edge, region string) string {
	return strings.NewReplacer("{edge}", strings.ToLower(edge), "{region}", strings.ToLower(region)).Replace(host)
}

// globOf turns a host into a path for path.Match, so that '*' stops at dots as it stops at '/'.
func globOf(host string) string { return strings.ReplaceAll(host, ".", "/") }

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// checkEdgeURL decides whether steering may send viewers to (and probe) raw, the URL edge of
// region announces: an http(s) base URL (no user, path, query or fragment) that matches one of
// the patterns; without patterns, any such URL whose host is not a link-local, multicast or
// unspecified address.
func checkEdgeURL(raw, edge, region string, patterns []edgeURLPattern) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("edge URL %q is not an http(s) URL", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("edge URL %q: want scheme://host[:port] only", raw)
	}
	if len(patterns) == 0 {
		if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
			if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast() {
				return fmt.Errorf("edge URL %q: a link-local, multicast or unspecified address", raw)
			}
		}
		return nil
	}
	for _, p := range patterns {
		if p.matches(u, edge, region) {
			return nil
		}
	}
	return fmt.Errorf("edge URL %q matches none of edge_urls", raw)
}
