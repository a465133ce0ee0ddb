package purge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/duetcdn/duet/internal/purgereq"
)

// Limits on one purge request.
const (
	// DefaultMaxItems bounds urls + prefixes + tags in one request.
	DefaultMaxItems = 1000
	// DefaultMaxBody bounds the request body.
	DefaultMaxBody = 1 << 20
	// maxItemLen bounds one URL, prefix or tag.
	maxItemLen = 4096
	// maxIDLen bounds a client-supplied idempotency id.
	maxIDLen = 64
)

// Request is the body of POST /v1/purge.
type Request struct {
	// ID, when given, makes the request idempotent: the same id is applied once.
	ID string `json:"id,omitempty"`
	// Target is what to purge: urls, prefixes, tags and soft, at the top level of the JSON.
	purgereq.Target
	// Wait, when set ("5s"), answers only after every live edge acknowledged, or the wait ran out.
	Wait string `json:"wait,omitempty"`
}

// ErrBadRequest is wrapped by every validation error; the message says what to fix.
var ErrBadRequest = errors.New("bad purge request")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
}

// DecodeRequest reads and validates a purge request: unknown fields, trailing data, empty
// purges, malformed URLs and prefixes, oversized lists and bad waits are errors, and nothing is
// half-accepted.
func DecodeRequest(r io.Reader, maxItems int, maxWait time.Duration) (Request, time.Duration, error) {
	var req Request
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, 0, bad("body is not a purge object: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, 0, bad("body has data after the purge object")
	}
	wait, err := req.validate(maxItems, maxWait)
	return req, wait, err
}

func (req *Request) validate(maxItems int, maxWait time.Duration) (time.Duration, error) {
	n := req.Items()
	switch {
	case n == 0:
		return 0, bad("name at least one of urls, prefixes, tags")
	case n > maxItems:
		return 0, bad("%d items; at most %d in one request", n, maxItems)
	}
	if req.ID != "" {
		if err := validID(req.ID); err != nil {
			return 0, err
		}
	}
	for i, u := range req.URLs {
		p, err := purgePath(u)
		if err != nil {
			return 0, bad("urls[%d] %q: %v", i, u, err)
		}
		req.URLs[i] = p
	}
	for i, p := range req.Prefixes {
		pp, err := purgePath(p)
		if err != nil {
			return 0, bad("prefixes[%d] %q: %v", i, p, err)
		}
		if strings.Contains(pp, "?") {
			return 0, bad("prefixes[%d] %q: a prefix has no query", i, p)
		}
		req.Prefixes[i] = pp
	}
	for i, t := range req.Tags {
		if t == "" || len(t) > maxItemLen || strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return 0, bad("tags[%d] %q: a tag is a non-empty word without spaces", i, t)
		}
	}
	var wait time.Duration
	if req.Wait != "" {
		d, err := time.ParseDuration(req.Wait)
		if err != nil || d < 0 {
			return 0, bad("wait %q: want a duration such as 5s", req.Wait)
		}
		if d > maxWait {
			return 0, bad("wait %s: at most %s", d, maxWait)
		}
		wait = d
	}
	return wait, nil
}

// purgePath accepts "/path?query" or an absolute http(s) URL, and returns the path and query.
func purgePath(s string) (string, error) {
	if s == "" || len(s) > maxItemLen {
		return "", errors.New("empty or too long")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "", errors.New("control characters")
	}
	if strings.HasPrefix(s, "/") {
		if strings.HasPrefix(s, "//") {
			return "", errors.New("starts with //: give a path or a full URL")
		}
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("want a path starting with / or an http(s) URL")
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p, nil
}

func validID(id string) error {
	if len(id) > maxIDLen {
		return bad("id longer than %d characters", maxIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return bad("id %q: use letters, digits, - and _", id)
		}
	}
	return nil
}

// encodeJSON is json.Marshal with a trailing newline, for HTTP answers.
func encodeJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return b.Bytes()
}
