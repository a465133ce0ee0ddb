package loadtest

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Guard refuses URLs that would send load off this machine. A load generator pointed at the
// wrong URL is a denial-of-service tool: a typo in --control, a cluster JSON that names a
// production edge, or a steering answer that routes to a public CDN must not turn a dev run
// into an attack on someone else. Only 127.0.0.0/8, ::1 and "localhost" pass, unless the
// operator opted in with --allow-remote (for a staging cluster they own).
type Guard struct {
	AllowRemote bool
}

// Check returns nil when raw may receive load.
func (g Guard) Check(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%w: %s %q is not an http(s) URL with a host", ErrConfig, what, raw)
	}
	if g.AllowRemote {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %s %s: only 127.0.0.0/8, ::1 and localhost receive load unless --allow-remote is given "+
		"(use it only against a cluster you own)", ErrRemoteTarget, what, raw)
}
