// Package signedurl mints and checks Duet's signed-URL tokens: HMAC-SHA256 over an expiry, a
// path prefix, an optional client address and the id of the key that signed it.
//
// A token is one URL-safe string (no '/', so it fits in one path segment):
//
//		1.<key id>.<expires>.<scope>.<client>.<mac>
//
//	  - "1" is the format's version.
//	  - key id names the key that signed it: 1 to 32 of [A-Za-z0-9_-]. Edges accept every key in
//	    their configuration, so keys rotate without downtime: add a key, sign with it, retire the
//	    old one once the last token it signed has expired.
//	  - expires is the Unix time (seconds) from which the token is refused.
//	  - scope is the path prefix the token covers, base64url without padding. The prefix matches
//	    at segment boundaries: "/vod/abc/" and "/vod/abc" both cover "/vod/abc/master.m3u8" and
//	    "/vod/abc/720p/seg1.ts", and neither covers "/vod/abcd/x.ts". One token covers a whole
//	    stream: its playlists and every segment.
//	  - client, when not empty, is the only client address (IPv4 or IPv6) the token is good for.
//	  - mac is base64url (no padding) of HMAC-SHA256(secret, everything before ".<mac>").
//
// Where the token travels: in the path, as /_t/<token>/<path> (PathMarker), or in the query, as
// ?duet_token=<token> (QueryParam). The path form is the one for streams: a player resolves a
// playlist's relative URIs (variant playlists, segments, keys) against the playlist's URL, so
// they inherit the token without any playlist being rewritten, cached playlists stay shared by
// every viewer, and HLS/DASH content steering clones, which replace only the host, carry it to
// every pathway. The query form suits single objects (a download, a progressive MP4): relative
// URIs drop the query, so a stream played with it would lose its token at the first segment.
// Either way the edge removes the token before the cache key is made, so every viewer of an
// object shares one cache entry.
//
// Compared with what operators use elsewhere: nginx secure_link hashes one secret with MD5 and
// has no key id (rotation means a flag day); Akamai's EdgeAuth tokens name no key either (edges
// try a "transition key"), and its acl wildcards need care with delimiters; CloudFront signs
// with RSA/ECDSA key pairs and a key-pair id (rotation is easy), but a canned policy covers one
// exact URL and a custom policy is a base64 JSON document in three query parameters, so HLS is
// usually protected with cookies instead. Here one short parameter or path segment names its
// key, covers a prefix at segment boundaries, and is checked without allocating.
package signedurl

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// QueryParam is the query parameter that carries a token (?duet_token=...). Edges leave it out
// of the cache key and the origin request; logs should redact it.
const QueryParam = "duet_token"

// PathMarker starts the path form of a token: /_t/<token>/<the object's path>. Edges with keys
// configured strip it before anything else reads the path; logs should redact the segment
// after it.
const PathMarker = "/_t/"

// Limits of a token's parts.
const (
	// MaxTokenLen is the longest token accepted.
	MaxTokenLen = 2048
	// MaxPrefixLen is the longest path prefix a token may cover.
	MaxPrefixLen = 1024
	// MaxKeyIDLen is the longest key id.
	MaxKeyIDLen = 32
	// MinSecretLen is the shortest secret accepted, in bytes.
	MinSecretLen = 32
)

const version = "1"

// Errors of Check and Parse, each a reason fit for a 403's body. Test them with errors.Is.
var (
	// ErrMissing: the path is protected and the request carries no token.
	ErrMissing = errors.New("signed URL required: no token")
	// ErrMalformed: the token is not in the format above.
	ErrMalformed = errors.New("malformed token")
	// ErrUnknownKey: the token names a key the edge does not accept (unknown or retired).
	ErrUnknownKey = errors.New("token signed with an unknown or retired key")
	// ErrSignature: the token's MAC does not match (it was altered, or signed with another secret).
	ErrSignature = errors.New("token signature does not match")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("token expired")
	// ErrScope: the token covers another path prefix.
	ErrScope = errors.New("token does not cover this path")
	// ErrClient: the token is bound to another client address.
	ErrClient = errors.New("token is bound to another client address")
	// ErrConfig: a key or a claim given to New or Sign is invalid.
	ErrConfig = errors.New("invalid signed URL config")
)

// Wrapped errors, made once so that refusing a request does not allocate.
var (
	errTooLong    = fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenLen)
	errFields     = fmt.Errorf("%w: want 6 fields separated by '.'", ErrMalformed)
	errVersion    = fmt.Errorf("%w: unknown version (want %q)", ErrMalformed, version)
	errKeyID      = fmt.Errorf("%w: bad key id", ErrMalformed)
	errExpires    = fmt.Errorf("%w: bad expiry", ErrMalformed)
	errScope      = fmt.Errorf("%w: bad scope", ErrMalformed)
	errClient     = fmt.Errorf("%w: bad client address", ErrMalformed)
	errMAC        = fmt.Errorf("%w: bad signature encoding", ErrMalformed)
	errBadPrefix  = fmt.Errorf("%w: path prefix must be a clean, decoded absolute path (\"/vod/abc/\"; no %%, ?, #, \\, control characters, empty, . or .. segments) of at most %d bytes", ErrConfig, MaxPrefixLen)
	errBadExpires = fmt.Errorf("%w: expiry must be after 1970 and before 2^40 s", ErrConfig)
)

var b64 = base64.RawURLEncoding

// macLen is the length of the encoded MAC.
var macLen = b64.EncodedLen(sha256.Size)

// Claims are what a token says.
type Claims struct {
	// KeyID names the key that signs (or signed) the token.
	KeyID string
	// Expires is when the token stops being accepted (whole seconds).
	Expires time.Time
	// Prefix is the path prefix the token covers (see the package doc).
	Prefix string
	// Client, when valid, is the only client address the token is good for.
	Client netip.Addr
}

// token is a parsed token; its strings alias the token's text.
type token struct {
	keyID   string
	expires int64
	scope   string // base64url of the prefix
	client  string
	signed  string // the text the MAC covers
	mac     string
}

// parse splits a token without allocating.
func parse(tok string) (token, error) {
	var t token
	if len(tok) > MaxTokenLen {
		return t, errTooLong
	}
	// Four fields end at the first four dots and the MAC follows the last one; the client
	// address, which has dots of its own, is what lies between.
	var f [6]string
	rest := tok
	for i := range 4 {
		j := strings.IndexByte(rest, '.')
		if j < 0 {
			return t, errFields
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	j := strings.LastIndexByte(rest, '.')
	if j < 0 {
		return t, errFields
	}
	f[4], f[5] = rest[:j], rest[j+1:]
	if f[0] != version {
		return t, errVersion
	}
	if !validKeyID(f[1]) {
		return t, errKeyID
	}
	exp, ok := parseExpires(f[2])
	if !ok {
		return t, errExpires
	}
	if f[3] == "" || len(f[3]) > b64.EncodedLen(MaxPrefixLen) || !isB64(f[3]) {
		return t, errScope
	}
	if f[4] != "" {
		var canon [64]byte // the canonical spelling only: one address, one token
		if a, err := netip.ParseAddr(f[4]); err != nil || a.Zone() != "" || string(a.AppendTo(canon[:0])) != f[4] {
			return t, errClient
		}
	}
	if len(f[5]) != macLen || !isB64(f[5]) {
		return t, errMAC
	}
	return token{keyID: f[1], expires: exp, scope: f[3], client: f[4], signed: tok[:len(tok)-len(f[5])-1], mac: f[5]}, nil
}

// maxExpires bounds expiries to what fits any clock (about year 36812).
const maxExpires = 1 << 40

// parseExpires reads decimal seconds: digits, no sign, no leading zero.
func parseExpires(s string) (int64, bool) {
	if s == "" || len(s) > 13 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n < maxExpires
}

func validKeyID(id string) bool {
	if id == "" || len(id) > MaxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func isB64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Parse reads a token's claims without checking its signature (for tools and tests: edges use
// Keys.Check).
func Parse(tok string) (Claims, error) {
	t, err := parse(tok)
	if err != nil {
		return Claims{}, err
	}
	var buf [MaxPrefixLen]byte
	prefix, ok := decodeScope(&buf, t.scope)
	if !ok || checkPrefix(prefix) != nil {
		return Claims{}, errScope
	}
	c := Claims{KeyID: t.keyID, Expires: time.Unix(t.expires, 0), Prefix: string(prefix)}
	if t.client != "" {
		c.Client = netip.MustParseAddr(t.client) // parse checked it
	}
	return c, nil
}

// decodeScope decodes a scope into buf; ok is false for a bad encoding.
func decodeScope(buf *[MaxPrefixLen]byte, scope string) ([]byte, bool) {
	if b64.DecodedLen(len(scope)) > len(buf) {
		return nil, false
	}
	var src [MaxPrefixLen*4/3 + 4]byte
	n := copy(src[:], scope)
	m, err := b64.Decode(buf[:], src[:n])
	if err != nil {
		return nil, false
	}
	return buf[:m], true
}

// checkPrefix accepts clean absolute paths in their decoded form (see Canonical): a leading
// '/', no control character, '%', '?', '#' or '\', and no empty, "." or ".." segment (a
// trailing '/' is fine).
func checkPrefix[T string | []byte](p T) error {
	if len(p) == 0 || len(p) > MaxPrefixLen || p[0] != '/' {
		return errBadPrefix
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c < 0x20 || c == 0x7f || c == '%' || c == '?' || c == '#' || c == '\\' {
				return errBadPrefix
			}
			if c != '/' {
				continue
			}
		}
		seg := p[start:i]
		if (len(seg) == 0 && i < len(p)) || string(seg) == "." || string(seg) == ".." {
			return errBadPrefix
		}
		start = i + 1
	}
	return nil
}

// Canonical is the path that protection and token scopes are matched against: a normalised
// request path (edge/cachekey) percent-decoded, with '\' read as '/', as origins read it: S3
// takes "%2F" for the '/' of a key, and some HTTP servers take '\' for a separator. Matching the
// normalised spelling instead would let /vod%2Fpremium/a.ts past a "/vod/premium/" prefix. It
// allocates only when path has a '%'. An undecodable path is returned as is (the edge refuses
// it before).
func Canonical(path string) string {
	if strings.IndexByte(path, '%') < 0 {
		return path
	}
	p, err := url.PathUnescape(path)
	if err != nil {
		return path
	}
	return strings.ReplaceAll(p, "\\", "/")
}

// Covers reports whether prefix covers path at a segment boundary: path is prefix, or continues
// it after a '/' (prefix's own trailing '/', or the next byte of path).
func Covers[T string | []byte](prefix T, path string) bool {
	if len(path) < len(prefix) || path[:len(prefix)] != string(prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// Key is one signing key.
type Key struct {
	// ID names the key in the tokens it signs: 1 to 32 letters, digits, '-' or '_'.
	ID string `yaml:"id"`
	// Secret is the HMAC key: at least 32 bytes (`openssl rand -hex 32` makes one). Keep it
	// out of files others can read.
	Secret string `yaml:"secret"`
}

// key is a Key ready for HMAC-SHA256 (RFC 2104) without allocating: the secret XOR the inner
// and outer pads.
type key struct {
	id           string
	inner, outer [sha256.BlockSize]byte
}

// Keys are the keys an edge accepts and signs with. The zero value accepts nothing.
type Keys struct {
	keys []key
}

// NewKeys checks and prepares keys; ids must be unique.
func NewKeys(ks []Key) (*Keys, error) {
	out := &Keys{}
	var errs []error
	seen := map[string]bool{}
	for i, k := range ks {
		switch {
		case !validKeyID(k.ID):
			errs = append(errs, fmt.Errorf("%w: keys[%d].id %q must be 1 to %d letters, digits, '-' or '_'", ErrConfig, i, k.ID, MaxKeyIDLen))
		case seen[k.ID]:
			errs = append(errs, fmt.Errorf("%w: keys[%d].id %q is listed twice", ErrConfig, i, k.ID))
		case len(k.Secret) < MinSecretLen:
			errs = append(errs, fmt.Errorf("%w: keys[%d] (%s): the secret is %d bytes, want at least %d (`openssl rand -hex 32` makes one)",
				ErrConfig, i, k.ID, len(k.Secret), MinSecretLen))
		}
		seen[k.ID] = true
		secret := []byte(k.Secret)
		if len(secret) > sha256.BlockSize {
			s := sha256.Sum256(secret)
			secret = s[:]
		}
		pk := key{id: k.ID}
		copy(pk.inner[:], secret)
		copy(pk.outer[:], secret)
		for j := range pk.inner {
			pk.inner[j] ^= 0x36
			pk.outer[j] ^= 0x5c
		}
		out.keys = append(out.keys, pk)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Len is how many keys there are.
func (ks *Keys) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.keys)
}

func (ks *Keys) find(id string) *key {
	if ks == nil {
		return nil
	}
	for i := range ks.keys {
		if ks.keys[i].id == id {
			return &ks.keys[i]
		}
	}
	return nil
}

// mac is HMAC-SHA256(k, msg), base64url-encoded into out. msg is at most MaxTokenLen bytes.
func (k *key) mac(msg string, out *[44]byte) []byte {
	var buf [sha256.BlockSize + MaxTokenLen]byte
	n := copy(buf[:], k.inner[:])
	n += copy(buf[n:], msg)
	in := sha256.Sum256(buf[:n])
	var ob [sha256.BlockSize + sha256.Size]byte
	copy(ob[:], k.outer[:])
	copy(ob[sha256.BlockSize:], in[:])
	sum := sha256.Sum256(ob[:])
	b64.Encode(out[:], sum[:])
	return out[:macLen]
}

// Check verifies tok for a request of path (Canonical, without the token) from client at now.
// The signature is checked first, in constant time, so that nothing an attacker wrote is
// believed before it is authenticated. It does not allocate. The error is one of the package's
// sentinels, wrapped at most once.
func (ks *Keys) Check(tok, path string, client netip.Addr, now time.Time) error {
	if tok == "" {
		return ErrMissing
	}
	t, err := parse(tok)
	if err != nil {
		return err
	}
	k := ks.find(t.keyID)
	if k == nil {
		return ErrUnknownKey
	}
	var want [44]byte
	var got [44]byte
	copy(got[:], t.mac)
	if subtle.ConstantTimeCompare(k.mac(t.signed, &want), got[:macLen]) != 1 {
		return ErrSignature
	}
	if now.Unix() >= t.expires {
		return ErrExpired
	}
	var buf [MaxPrefixLen]byte
	prefix, ok := decodeScope(&buf, t.scope)
	if !ok {
		return errScope
	}
	if !Covers(prefix, path) {
		return ErrScope
	}
	if t.client != "" {
		a, err := netip.ParseAddr(t.client)
		if err != nil || a.Unmap() != client.Unmap() {
			return ErrClient
		}
	}
	return nil
}

// Sign mints a token for c with the key c.KeyID names.
func (ks *Keys) Sign(c Claims) (string, error) {
	k := ks.find(c.KeyID)
	if k == nil {
		return "", fmt.Errorf("%w: no key %q to sign with", ErrConfig, c.KeyID)
	}
	if err := checkPrefix(c.Prefix); err != nil {
		return "", fmt.Errorf("prefix %q: %w", c.Prefix, err)
	}
	exp := c.Expires.Unix()
	if exp <= 0 || exp >= maxExpires {
		return "", errBadExpires
	}
	var client string
	if c.Client.IsValid() {
		client = c.Client.WithZone("").String()
	}
	signed := version + "." + c.KeyID + "." + strconv.FormatInt(exp, 10) + "." + b64.EncodeToString([]byte(c.Prefix)) + "." + client
	if len(signed)+1+macLen > MaxTokenLen {
		return "", fmt.Errorf("%w: the token would be longer than %d bytes", ErrConfig, MaxTokenLen)
	}
	var out [44]byte
	return signed + "." + string(k.mac(signed, &out)), nil
}
