package edge

import (
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/duetcdn/duet/edge/cachecontrol"
	"github.com/duetcdn/duet/edge/httpdate"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/origin"
)

// heuristicFraction is RFC 9111 §4.2.2's typical 10% of the time since Last-Modified.
const heuristicFraction = 10

// dropHeaders are never stored with an entry nor forwarded from a stored entry: hop-by-hop
// headers, framing the edge recomputes, and the surrogate headers the edge consumes itself.
// Date and Content-Range are not among them: a stored response keeps the origin's (RFC 9111
// §3.1), Date for Age and Expires arithmetic downstream, Content-Range for a stored 206.
var dropHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Age": true, "Accept-Ranges": true,
	"Cdn-Cache-Control": true, "Surrogate-Control": true, "Surrogate-Key": true, "Set-Cookie": true,
	"Server": true,
}

// heuristicStatus lists the statuses RFC 9110 §15.1 calls heuristically cacheable.
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// contentKind classifies a path for the video defaults.
type contentKind int

const (
	kindOther contentKind = iota
	kindPlaylist
	kindSegment
)

func kindOf(p string) contentKind {
	switch strings.ToLower(path.Ext(p)) {
	case ".m3u8", ".mpd":
		return kindPlaylist
	case ".ts", ".m4s", ".mp4", ".m4a", ".m4v", ".aac", ".cmfv", ".cmfa", ".cmft", ".vtt", ".webvtt", ".mp3", ".webm", ".key":
		return kindSegment
	}
	return kindOther
}

// storeDecision is what the edge makes of an origin response.
type storeDecision struct {
	meta     object.Meta
	storable bool
	// reason says why a response is not stored (for logs and Cache-Status detail).
	reason string
}

// directivesOf returns the directives that govern the edge: CDN-Cache-Control wins over
// Cache-Control when present and valid (RFC 9213 §2.1); one that is not a valid Structured
// Field Dictionary is ignored as a whole.
func directivesOf(h http.Header) (cachecontrol.Directives, bool) {
	if v := h.Values("Cdn-Cache-Control"); len(v) > 0 {
		if d, ok := cachecontrol.ParseCDN(v...); ok {
			return d, true
		}
	}
	return cachecontrol.Parse(h.Values("Cache-Control")...), false
}

// decide turns an origin response into an entry's Meta and says whether a shared cache may
// store it (RFC 9111 §3), applying the video defaults and negative caching when the origin gives
// no freshness of its own.
func (s *Server) decide(key, reqPath string, reqTime, respTime time.Time, r *origin.Response) storeDecision {
	h := r.Header
	d := storeDecision{meta: object.Meta{Key: key, Status: r.Status, RequestTime: reqTime, ResponseTime: respTime}}
	cc, _ := directivesOf(h)
	m := &d.meta
	m.Header = storedHeaders(h)
	if d := h.Values("Date"); len(d) != 1 || !validDate(d[0], respTime) {
		// RFC 9110 §6.6.1: a response cached without a (valid) Date gets one, the time it was
		// received, so that every hit sends the same Date with its Age.
		m.Header = setField(m.Header, "Date", respTime.UTC().Format(http.TimeFormat))
	}
	m.ETag = h.Get("Etag")
	if lm, ok := httpdate.Parse(strings.TrimSpace(h.Get("Last-Modified")), respTime); ok {
		m.LastModified = lm
	}
	m.Tags = surrogateKeys(h)
	m.InitialAge = initialAge(h, reqTime, respTime)
	m.StaleWhileRevalidate = s.cfg.Cache.DefaultStaleWhileRevalidate
	m.StaleIfError = s.cfg.Cache.DefaultStaleIfError
	if cc.HasStaleWhileRevalidate {
		m.StaleWhileRevalidate = cc.StaleWhileRevalidate
	}
	if cc.HasStaleIfError {
		m.StaleIfError = cc.StaleIfError
	}
	m.MustRevalidate = cc.MustRevalidate || cc.ProxyRevalidate || cc.HasSMaxAge || cc.NoCache
	if authShareable(h) {
		m.Flags |= object.AuthReusable
	}

	switch {
	case cc.NoStore:
		d.reason = "no-store"
		return d
	case cc.Private:
		d.reason = "private"
		return d
	case h.Get("Set-Cookie") != "":
		d.reason = "set-cookie"
		return d
	case hasVaryStar(h):
		d.reason = "vary-star"
		return d
	}
	// A 5xx is stored like any other status when the origin gives it explicit freshness (RFC
	// 9111 §3); 501 is heuristically cacheable and gets the negative TTL.

	explicit := true
	switch {
	case cc.NoCache:
		m.FreshFor = 0
	case cc.HasSMaxAge:
		m.FreshFor = cc.SMaxAge
	case cc.HasMaxAge:
		m.FreshFor = cc.MaxAge
	case len(h.Values("Expires")) > 0:
		// An invalid or past Expires, or several Expires lines, mean "already stale" (RFC
		// 9111 §5.3 and §4.2.1).
		if exp, ok := expiresOf(h, respTime); ok {
			if date := dateOf(h, respTime); exp.After(date) {
				m.FreshFor = exp.Sub(date)
			}
		}
	default:
		explicit = false
	}
	if !explicit && !heuristicStatus(r.Status) {
		d.reason = "not-heuristically-cacheable"
		return d
	}
	if !explicit {
		m.FreshFor = s.defaultFreshness(reqPath, r.Status, h, respTime)
	}
	d.storable = true
	return d
}

// authShareable tells whether a response to a request with Authorization may be stored and
// reused for other requests (RFC 9111 §3.5): its Cache-Control (or CDN-Cache-Control) must
// say public, s-maxage or must-revalidate.
func authShareable(h http.Header) bool {
	ok := func(d cachecontrol.Directives) bool { return d.Public || d.HasSMaxAge || d.MustRevalidate }
	if cdn, isCDN := directivesOf(h); isCDN && ok(cdn) {
		return true
	}
	return ok(cachecontrol.Parse(h.Values("Cache-Control")...))
}

// defaultFreshness applies, in order: negative caching for 4xx and 5xx, the video defaults by
// content kind, the Last-Modified heuristic, then the configured default.
func (s *Server) defaultFreshness(reqPath string, status int, h http.Header, respTime time.Time) time.Duration {
	c := &s.cfg.Cache
	if status >= 400 {
		// 404, 410, and the other heuristically cacheable errors (405, 414, 501): never the
		// segment TTL of the path they were asked for.
		return c.NegativeTTL
	}
	switch kindOf(reqPath) {
	case kindPlaylist:
		return c.PlaylistTTL
	case kindSegment:
		return c.SegmentTTL
	}
	if lm, ok := httpdate.Parse(strings.TrimSpace(h.Get("Last-Modified")), respTime); ok {
		if since := dateOf(h, respTime).Sub(lm); since > 0 {
			return min(since/heuristicFraction, c.MaxHeuristicTTL)
		}
	}
	return c.DefaultTTL
}

func hasVaryStar(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(f) == "*" {
				return true
			}
		}
	}
	return false
}

// dateOf is the response's Date, or fallback (the time it was received, RFC 9110 §6.6.1) when
// it has none, several, or an invalid one.
func dateOf(h http.Header, fallback time.Time) time.Time {
	if v := h.Values("Date"); len(v) == 1 {
		if d, ok := httpdate.Parse(strings.TrimSpace(v[0]), fallback); ok {
			return d
		}
	}
	return fallback
}

// expiresOf reads Expires strictly: exactly one field line holding one HTTP-date (RFC 9110
// §5.6.7 and RFC 9111 §5.3). ok is false for anything else, which the caller reads as
// "already expired". A list such as "Thu, 01 Dec 2026 16:00:00 GMT, 0" is not a date either.
func expiresOf(h http.Header, now time.Time) (time.Time, bool) {
	v := h.Values("Expires")
	if len(v) != 1 {
		return time.Time{}, false
	}
	return httpdate.Parse(strings.TrimSpace(v[0]), now)
}

// ageOf reads the Age field as RFC 9111 §5.1 says: a non-negative integer of seconds
// (1*DIGIT, any length: a huge value saturates at 2^31 s instead of failing to parse and
// making the response look new). Of a list, a comma-separated value or several lines
// ("7200, 0"), the first member counts. ok is false when there is no Age or its first member
// is not 1*DIGIT ("-5", "1.5", "+3", ""), and the field is then ignored, as §5.1 says: the
// age then comes from Date and the request's round trip alone, never less than that.
func ageOf(values []string) (a time.Duration, ok bool) {
	if len(values) == 0 {
		return 0, false
	}
	first, _, _ := strings.Cut(values[0], ",")
	first = strings.Trim(first, " \t")
	if first == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(first); i++ {
		c := first[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<31 {
			n = n*10 + int64(c-'0')
		}
	}
	return time.Duration(min(n, 1<<31)) * time.Second, true
}

// initialAge is RFC 9111 §4.2.3's corrected_initial_age.
func initialAge(h http.Header, reqTime, respTime time.Time) time.Duration {
	apparent := max(0, respTime.Sub(dateOf(h, respTime)))
	ageValue, _ := ageOf(h.Values("Age"))
	corrected := ageValue + respTime.Sub(reqTime)
	return max(apparent, corrected)
}

// storedHeaders keeps the end-to-end headers of a response, in a stable order.
func storedHeaders(h http.Header) []object.Field {
	out := make([]object.Field, 0, len(h))
	for name, vals := range h {
		// Canonical names let respond hand them to fasthttp as they are, and let the edge's own
		// headers (CORS, Age) replace an origin's same-named one whatever case it came in.
		name = http.CanonicalHeaderKey(name)
		if dropHeaders[name] || strings.HasPrefix(name, "X-Amz-") {
			continue
		}
		for _, v := range vals {
			out = append(out, object.Field{Name: name, Value: v})
		}
	}
	sortFields(out)
	return out
}

func validDate(v string, now time.Time) bool {
	_, ok := httpdate.Parse(strings.TrimSpace(v), now)
	return ok
}

// setField replaces every field called name with one holding value, keeping the order.
func setField(f []object.Field, name, value string) []object.Field {
	out := f[:0]
	for _, x := range f {
		if x.Name != name {
			out = append(out, x)
		}
	}
	out = append(out, object.Field{Name: name, Value: value})
	sortFields(out)
	return out
}

func sortFields(f []object.Field) {
	// Insertion sort: header lists are short, and this keeps the order stable for tests.
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j].Name < f[j-1].Name; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
}

// surrogateKeys reads the space-separated Surrogate-Key header (Fastly's convention).
func surrogateKeys(h http.Header) []string {
	var tags []string
	for _, v := range h.Values("Surrogate-Key") {
		tags = append(tags, strings.Fields(v)...)
	}
	return tags
}

// age is the entry's current age (RFC 9111 §4.2.3).
func age(m *object.Meta, now time.Time) time.Duration {
	return m.InitialAge + max(0, now.Sub(m.ResponseTime))
}

// freshness tells how an entry may be used now.
type freshness int

const (
	fresh freshness = iota
	staleRevalidateAsync
	expired
)

func freshnessOf(m *object.Meta, now time.Time) freshness {
	a := age(m, now)
	if m.Flags&object.SoftPurged == 0 && a < m.FreshFor {
		return fresh
	}
	if m.Flags&object.SoftPurged == 0 && !m.MustRevalidate && a < m.FreshFor+m.StaleWhileRevalidate {
		return staleRevalidateAsync
	}
	return expired
}

// usableOnError tells whether stale-if-error lets the entry stand in for a failed origin.
func usableOnError(m *object.Meta, now time.Time) bool {
	return age(m, now) < m.FreshFor+m.StaleIfError
}

// merge304 updates a stored entry with the headers of a 304 (RFC 9111 §4.3.4) and recomputes its
// freshness as if the full response had arrived now. It reports false when the merged headers no
// longer allow storing the entry.
func (s *Server) merge304(old object.Meta, reqPath string, reqTime, respTime time.Time, r *origin.Response) (object.Meta, bool) {
	h := make(http.Header, len(old.Header)+len(r.Header))
	for _, f := range old.Header {
		h.Add(f.Name, f.Value)
	}
	for name, vals := range r.Header {
		if name == "Content-Length" || name == "Content-Range" {
			continue
		}
		h[name] = vals
	}
	if d := r.Header.Values("Date"); len(d) != 1 || !validDate(d[0], respTime) {
		// The 304 is the newer response: without a Date of its own it gets the time it arrived
		// (RFC 9110 §6.6.1), never the stored one, which would make the entry as old as before.
		h.Set("Date", respTime.UTC().Format(http.TimeFormat))
	}
	if len(old.Tags) > 0 && h.Get("Surrogate-Key") == "" {
		h.Set("Surrogate-Key", strings.Join(old.Tags, " "))
	}
	d := s.decide(old.Key, reqPath, reqTime, respTime, &origin.Response{Status: old.Status, Header: h})
	m := d.meta
	m.Size, m.Checksum, m.Total, m.Offset = old.Size, old.Checksum, old.Total, old.Offset
	if m.ETag == "" {
		m.ETag = old.ETag
	}
	if m.LastModified.IsZero() {
		m.LastModified = old.LastModified
	}
	m.Flags = old.Flags&^(object.SoftPurged|object.AuthReusable) | d.meta.Flags&object.AuthReusable
	return m, d.storable
}
