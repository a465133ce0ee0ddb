package peers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header marks a request from a peer edge. An edge answers such a request from its cache or its
// origin, never from another peer, so that requests between peers never loop; and it answers
// it only when the signature holds.
//
// The value is "v1 <unix seconds> <edge name> <hex HMAC-SHA256>", the HMAC, keyed with the
// region's peer secret, over "v1\n<seconds>\n<edge>\n<method>\n<path>?<query>\n<range>". HMAC
// rather than a bearer token: peer requests travel on the viewers' listener, maybe in clear
// text, and a captured value then opens only that URL, for MaxSkew; a token would open every
// URL until it is rotated, and the secret never crosses the wire.
const Header = "X-Duet-Peer"

// MaxSkew is how far a signature's time may be from the receiver's clock (the edges of a region
// keep time with NTP).
const MaxSkew = 30 * time.Second

// MinSecretBytes is the shortest secret Sign and Verify accept.
const MinSecretBytes = 16

// Errors of Verify.
var (
	ErrMalformed = errors.New("peer header malformed")
	ErrExpired   = errors.New("peer signature outside the allowed clock skew")
	ErrSignature = errors.New("peer signature does not match")
)

// Request is what a signature covers.
type Request struct {
	Method string
	// URI is the normalised path and query: path, or path + "?" + query.
	URI string
	// Range is the Range header ("" for none).
	Range string
}

// URI joins a normalised path and query as Request.URI wants them.
func URI(path, query string) string {
	if query == "" {
		return path
	}
	return path + "?" + query
}

func mac(secret []byte, secs, from string, r Request) []byte {
	h := hmac.New(sha256.New, secret)
	for _, part := range []string{"v1", secs, from, r.Method, r.URI, r.Range} {
		h.Write([]byte(part))
		h.Write([]byte{'\n'})
	}
	return h.Sum(nil)
}

// Sign returns the Header value for a request from edge from at now.
func Sign(secret []byte, from string, now time.Time, r Request) string {
	secs := strconv.FormatInt(now.Unix(), 10)
	return "v1 " + secs + " " + from + " " + hex.EncodeToString(mac(secret, secs, from, r))
}

// Verify checks a Header value for r at now and returns the peer's name. The comparison of the
// MACs takes constant time.
func Verify(secret []byte, value string, now time.Time, r Request) (from string, err error) {
	parts := strings.Split(value, " ")
	if len(parts) != 4 || parts[0] != "v1" || parts[2] == "" || len(parts[3]) != 2*sha256.Size {
		return "", ErrMalformed
	}
	secs, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || secs < 0 {
		return "", ErrMalformed
	}
	got, err := hex.DecodeString(parts[3])
	if err != nil || hex.EncodeToString(got) != parts[3] { // lower-case hex only: one spelling per MAC
		return "", ErrMalformed
	}
	if d := now.Sub(time.Unix(secs, 0)); d > MaxSkew || d < -MaxSkew {
		return "", ErrExpired
	}
	if !hmac.Equal(got, mac(secret, parts[1], parts[2], r)) {
		return "", ErrSignature
	}
	return parts[2], nil
}
