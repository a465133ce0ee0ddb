// Package adminguard protects operator HTTP endpoints (an edge's admin port, `duet dev`'s control
// API) from the two kinds of caller that reach a loopback or private port without being the
// operator: anyone else on the network, kept out by a bearer token, and a web page in the
// operator's own browser, kept out by refusing cross-site requests (Origin, Sec-Fetch-Site), a
// Host that names no address of ours (DNS rebinding) and a body that is not JSON (what an HTML
// form or a "simple" fetch can send without a CORS preflight).
package adminguard

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// MinTokenLen is the shortest bearer token Validate accepts.
const MinTokenLen = 16

// Config says what a Guard accepts.
type Config struct {
	// Tokens are the accepted bearer tokens (several, to rotate one without downtime). With none,
	// every endpoint that needs a token is refused with NoTokenReason.
	Tokens []string
	// Hosts are the host names (no port) the listener may be addressed by besides IP literals and
	// "localhost", which are always accepted: a name in Host that is not listed may be a DNS
	// rebinding of the attacker's own domain to this address.
	Hosts []string
	// Realm names the API in WWW-Authenticate.
	Realm string
	// NoTokenReason is the 401's reason when no token is configured (say which setting enables
	// the endpoint).
	NoTokenReason string
	// Reply writes a refusal. Default: http.Error (text/plain).
	Reply func(w http.ResponseWriter, status int, reason string)
}

// Guard wraps handlers with the checks. It is safe for concurrent use.
type Guard struct {
	tokens [][sha256.Size]byte // hashed, so every compare takes the same time whatever the length
	hosts  map[string]bool
	cfg    Config
	cop    *http.CrossOriginProtection
}

// ValidateToken reports what is wrong with a token an operator configured.
func ValidateToken(t string) error {
	switch {
	case len(t) < MinTokenLen:
		return fmt.Errorf("a token needs at least %d characters", MinTokenLen)
	case strings.TrimSpace(t) != t || strings.ContainsAny(t, " \t\r\n"):
		return errors.New("a token must not contain white space")
	}
	return nil
}

// New builds a Guard; tokens are checked with ValidateToken.
func New(cfg Config) (*Guard, error) {
	g := &Guard{hosts: map[string]bool{"localhost": true}, cfg: cfg, cop: http.NewCrossOriginProtection()}
	for i, t := range cfg.Tokens {
		if err := ValidateToken(t); err != nil {
			return nil, fmt.Errorf("token %d: %w", i+1, err)
		}
		g.tokens = append(g.tokens, sha256.Sum256([]byte(t)))
	}
	for _, h := range cfg.Hosts {
		if h == "" || strings.ContainsAny(h, ":/ ") {
			return nil, fmt.Errorf("host %q: give a host name without port or scheme", h)
		}
		g.hosts[normHost(h)] = true
	}
	if g.cfg.Reply == nil {
		g.cfg.Reply = func(w http.ResponseWriter, status int, reason string) { http.Error(w, reason, status) }
	}
	if g.cfg.NoTokenReason == "" {
		g.cfg.NoTokenReason = "no token is configured for this endpoint, so it is off"
	}
	return g, nil
}

// Token wraps h: it answers only requests that pass Browser's checks and carry
// "Authorization: Bearer <one of the tokens>".
func (g *Guard) Token(h http.Handler) http.Handler {
	return g.Browser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason, ok := g.authorised(r); !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+g.cfg.Realm+`"`)
			g.cfg.Reply(w, http.StatusUnauthorized, reason)
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// Browser wraps h with the checks that keep a web page from driving it: the Host must be an IP
// literal, localhost or a configured name; a state-changing request (any method but GET, HEAD
// and OPTIONS) must not be cross-origin and must say Content-Type: application/json.
func (g *Guard) Browser(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, reason := g.Check(r); status != 0 {
			g.cfg.Reply(w, status, reason)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Check applies Browser's checks to r: 0 when it passes, else the status and reason to answer.
func (g *Guard) Check(r *http.Request) (int, string) {
	if !g.hostAllowed(r.Host) {
		return http.StatusForbidden, fmt.Sprintf("Host %q is not an address of this listener: use its IP address or localhost, or list the name in the allowed hosts", r.Host)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return 0, ""
	}
	if err := g.cop.Check(r); err != nil {
		return http.StatusForbidden, "cross-site request refused (Origin or Sec-Fetch-Site names another site): " + err.Error()
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send application/json (also with an empty body)", ct)
	}
	return 0, ""
}

func (g *Guard) authorised(r *http.Request) (string, bool) {
	if len(g.tokens) == 0 {
		return g.cfg.NoTokenReason, false
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "missing bearer token: send Authorization: Bearer <token>", false
	}
	sum := sha256.Sum256([]byte(secret))
	match := 0
	// Every token is compared, and the loop does not stop at a match: the time taken says nothing
	// about which token, or how much of one, was right.
	for i := range g.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], g.tokens[i][:])
	}
	if match != 1 {
		return "wrong bearer token", false
	}
	return "", true
}

// hostAllowed: IP literals cannot be rebound (DNS rebinding needs a name the attacker controls),
// so any IP is fine, as are localhost and the configured names.
func (g *Guard) hostAllowed(hostport string) bool {
	if hostport == "" {
		return true // HTTP/1.0 without Host: no browser sends that
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return g.hosts[normHost(host)]
}

func normHost(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }
