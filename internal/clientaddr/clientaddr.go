// Package clientaddr finds the address of the client behind a request: the
// connection's peer, or, when that peer is a trusted proxy, the right-most
// address in X-Forwarded-For that is not a trusted proxy.
//
// Only the hops that trusted proxies appended are believed. A client can put
// anything at the left of X-Forwarded-For, so the walk goes from the right
// (the hop appended by the proxy nearest to us) and stops at the first
// address that is not a trusted proxy: that is the address the last trusted
// proxy saw, and the client. When every hop is a trusted proxy, the left-most
// hop is the answer.
//
// The Forwarded header (RFC 7239) is not read.
package clientaddr

import (
	"errors"
	"net/netip"
	"strings"
)

var (
	// ErrBadPeer: the connection's remote address is not an IP address (with
	// or without a port).
	ErrBadPeer = errors.New("clientaddr: bad peer address")
	// ErrBadForwardedFor: X-Forwarded-For, sent by a trusted proxy, has a hop
	// that is not an IP address before an untrusted one was found, or is too
	// long. Serve 400: a trusted proxy should not send it.
	ErrBadForwardedFor = errors.New("clientaddr: bad X-Forwarded-For")
)

// Limits on X-Forwarded-For.
const (
	// MaxForwardedFor is the longest X-Forwarded-For accepted, in bytes.
	MaxForwardedFor = 4096
	// MaxHops is the most hops walked.
	MaxHops = 64
)

// Parse returns the client's address. remote is the connection's peer as
// net/http's Request.RemoteAddr or fasthttp's RemoteAddr().String() give it:
// "ip:port", "[ipv6]:port", or a bare address. xff is the X-Forwarded-For
// value; a request with several X-Forwarded-For header lines is passed as
// their values joined with ",", in order. trusted lists the proxies whose
// X-Forwarded-For is believed; with none, xff is ignored.
//
// IPv4-mapped IPv6 addresses are returned as IPv4, and zones are dropped, so
// the result can be compared and looked up directly.
//
// Parse does not allocate.
func Parse(remote, xff string, trusted []netip.Prefix) (netip.Addr, error) {
	peer, ok := parseHost(remote)
	if !ok {
		return netip.Addr{}, ErrBadPeer
	}
	if !isTrusted(peer, trusted) {
		return peer, nil
	}
	if len(xff) > MaxForwardedFor {
		return netip.Addr{}, ErrBadForwardedFor
	}
	client := peer
	rest := xff
	for hops := 0; ; hops++ {
		if hops == MaxHops {
			return netip.Addr{}, ErrBadForwardedFor
		}
		var hop string
		if i := strings.LastIndexByte(rest, ','); i >= 0 {
			hop, rest = rest[i+1:], rest[:i]
		} else {
			hop, rest = rest, ""
		}
		hop = strings.Trim(hop, " \t")
		if hop == "" {
			// Empty elements ("a,,b", a trailing comma, an empty
			// header) carry nothing; RFC 7230's list syntax allows
			// them.
			if rest == "" {
				return client, nil
			}
			continue
		}
		addr, ok := parseHost(hop)
		if !ok {
			return netip.Addr{}, ErrBadForwardedFor
		}
		client = addr
		if !isTrusted(addr, trusted) {
			return addr, nil
		}
		if rest == "" {
			return client, nil
		}
	}
}

// parseHost parses "ip", "ip:port", "[ip]:port" or "[ip]" (the forms peers
// and X-Forwarded-For hops come in).
func parseHost(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		if tail := s[end+1:]; tail != "" && !isPort(tail) {
			return netip.Addr{}, false
		}
		s = s[1:end]
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() {
			return netip.Addr{}, false
		}
		return normal(a), true
	}
	// One colon: "1.2.3.4:80". None: an IPv4 address. More: IPv6. Telling
	// them apart first saves a failed parse, which allocates its error.
	i := strings.IndexByte(s, ':')
	if i >= 0 && strings.IndexByte(s[i+1:], ':') < 0 {
		if !isPort(s[i:]) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[:i])
		if err != nil || !a.Is4() {
			return netip.Addr{}, false
		}
		return a, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return normal(a), true
}

// isPort reports whether s is ":" followed by 1-5 digits.
func isPort(s string) bool {
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func normal(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses a trusted-proxy list from configuration: CIDR prefixes
// ("10.0.0.0/8", "2001:db8::/32") or single addresses ("192.0.2.7").
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, err
			}
			// An IPv4 prefix written in IPv4-mapped form would never
			// match: Parse unmaps addresses.
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		a = normal(a)
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
