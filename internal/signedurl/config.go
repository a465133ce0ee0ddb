package signedurl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the signed-URL section of an edge's configuration (and what `duet sign` reads).
type Config struct {
	// Keys are the keys whose tokens the edge accepts, each an id and a secret of at least 32
	// bytes. List two to rotate without dropping a viewer: add the new key on every edge, then
	// sign with it (sign_with), then remove the old one once the tokens it signed have expired.
	// In YAML a list of mappings; in DUET_EDGE_SIGNED_URLS_KEYS and --signed_urls.keys the same
	// list in YAML flow form, '[{id: k2, secret: "..."}]'. Default none.
	Keys KeyList `yaml:"keys"`
	// SignWith is the id of the key new tokens are signed with (`duet sign`). Default: the last
	// key listed.
	SignWith string `yaml:"sign_with"`
	// Protect lists the path prefixes whose objects are served only with a valid token, for
	// example "/vod/premium/"; a prefix matches at segment boundaries ("/vod/premium" covers
	// "/vod/premium/a.ts", not "/vod/premium2/a.ts"), against the request's path decoded as the
	// origin reads it (/vod%2Fpremium/a.ts is under /vod/premium/). A request without a valid token is
	// answered 403 with the reason, before the cache is looked at and without an origin fetch.
	// Needs at least one key. Default none: nothing is protected.
	Protect []string `yaml:"protect"`
}

// Enabled tells whether any key is configured: then edges strip tokens from paths and queries.
func (c *Config) Enabled() bool { return len(c.Keys) > 0 }

// SigningKey is the id of the key new tokens are signed with: SignWith, or the last key.
func (c *Config) SigningKey() string {
	if c.SignWith != "" || len(c.Keys) == 0 {
		return c.SignWith
	}
	return c.Keys[len(c.Keys)-1].ID
}

// Validate reports every problem at once; at is the section's name in the configuration
// ("signed_urls").
func (c *Config) Validate(at string) error {
	var errs []error
	if _, err := NewKeys(c.Keys); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", at, err))
	}
	if len(c.Protect) > 0 && len(c.Keys) == 0 {
		errs = append(errs, fmt.Errorf("%w: %s.protect needs at least one key in %s.keys", ErrConfig, at, at))
	}
	for i, p := range c.Protect {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("%s.protect[%d] %q: %w", at, i, p, err))
		}
	}
	if c.SignWith != "" {
		found := false
		for _, k := range c.Keys {
			found = found || k.ID == c.SignWith
		}
		if !found {
			errs = append(errs, fmt.Errorf("%w: %s.sign_with %q names no key in %s.keys", ErrConfig, at, c.SignWith, at))
		}
	}
	return errors.Join(errs...)
}

// Protected tells whether path (Canonical) needs a token. It does not allocate.
func (c *Config) Protected(path string) bool {
	for _, p := range c.Protect {
		if Covers(p, path) {
			return true
		}
	}
	return false
}

// KeyList is a list of keys. From environment variables and flags it reads the YAML flow form
// of the list.
type KeyList []Key

// UnmarshalText reads a YAML list of keys; unknown fields are errors.
func (l *KeyList) UnmarshalText(text []byte) error {
	var out KeyList
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("want a YAML list of keys such as '[{id: k2, secret: \"...\"}]': %w", err)
	}
	*l = out
	return nil
}

// SplitPath takes the path form's token off a request path: "/_t/<token>/a/b.ts" gives
// "<token>" and "/a/b.ts". ok is false when the path does not start with PathMarker; a marker
// without a following '/' leaves the rest empty, which is not a path.
func SplitPath(path string) (tok, rest string, ok bool) {
	if len(path) < len(PathMarker) || path[:len(PathMarker)] != PathMarker {
		return "", path, false
	}
	after := path[len(PathMarker):]
	i := 0
	for i < len(after) && after[i] != '/' {
		i++
	}
	return after[:i], after[i:], true
}

// FromQuery finds the token in a raw query (the first duet_token parameter), without decoding
// it: a token needs no escaping. rest is the query without that parameter when it came first
// or last (a substring: nothing is allocated), the whole query otherwise (the edge's cache key
// leaves QueryParam out anyway).
func FromQuery(rawQuery string) (tok, rest string) {
	q := rawQuery
	for off := 0; q != ""; {
		p, after, more := cut(q, '&')
		if len(p) > len(QueryParam) && p[len(QueryParam)] == '=' && p[:len(QueryParam)] == QueryParam {
			tok = p[len(QueryParam)+1:]
			switch {
			case off == 0:
				return tok, after
			case !more:
				return tok, rawQuery[:off-1]
			}
			return tok, rawQuery
		}
		off += len(p) + 1
		q = after
	}
	return "", rawQuery
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Sign mints a token covering prefix until expires (bound to client when it is valid), with the
// key keyID names, or SigningKey when keyID is empty.
func (c *Config) Sign(keyID, prefix string, expires time.Time, client netip.Addr) (string, error) {
	if keyID == "" {
		keyID = c.SigningKey()
	}
	if keyID == "" {
		return "", fmt.Errorf("%w: no key to sign with: configure signed_urls.keys", ErrConfig)
	}
	ks, err := NewKeys(c.Keys)
	if err != nil {
		return "", err
	}
	return ks.Sign(Claims{KeyID: keyID, Expires: expires, Prefix: prefix, Client: client})
}
