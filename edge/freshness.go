package edge

import (
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/duetcdn/duet/edge/cachecontrol"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/origin"
)

// heuristicFraction is RFC 9111 §4.2.2's typical 10% of the time since Last-Modified.
const heuristicFraction = 10

// dropHeaders are never stored with an entry nor forwarded from a stored entry: hop-by-hop
// headers, framing the edge recomputes, and the surrogate headers the edge consumes itself.
var dropHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Content-Range": true, "Age": true, "Date": true, "Accept-Ranges": true,
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
// Cache-Control when present (RFC 9213 §2.1).
func directivesOf(h http.Header) (cachecontrol.Directives, bool) {
	if v := h.Values("Cdn-Cache-Control"); len(v) > 0 {
		return cachecontrol.Parse(v...), true
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
	m.ETag = h.Get("Etag")
	if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
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
	case r.Status >= 500:
		d.reason = "server-error"
		return d
	}

	explicit := true
	switch {
	case cc.NoCache:
		m.FreshFor = 0
	case cc.HasSMaxAge:
		m.FreshFor = cc.SMaxAge
	case cc.HasMaxAge:
		m.FreshFor = cc.MaxAge
	case h.Get("Expires") != "":
		exp, err := http.ParseTime(h.Get("Expires"))
		date := dateOf(h, respTime)
		if err == nil && exp.After(date) {
			m.FreshFor = exp.Sub(date)
		} // an invalid or past Expires means "already stale" (RFC 9111 §5.3)
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

// defaultFreshness applies, in order: negative caching for 404/410, the video defaults by
// content kind, the Last-Modified heuristic, then the configured default.
func (s *Server) defaultFreshness(reqPath string, status int, h http.Header, respTime time.Time) time.Duration {
	c := &s.cfg.Cache
	if status == http.StatusNotFound || status == http.StatusGone {
		return c.NegativeTTL
	}
	switch kindOf(reqPath) {
	case kindPlaylist:
		return c.PlaylistTTL
	case kindSegment:
		return c.SegmentTTL
	}
	if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
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

func dateOf(h http.Header, fallback time.Time) time.Time {
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		return d
	}
	return fallback
}

// initialAge is RFC 9111 §4.2.3's corrected_initial_age.
func initialAge(h http.Header, reqTime, respTime time.Time) time.Duration {
	apparent := max(0, respTime.Sub(dateOf(h, respTime)))
	var ageValue time.Duration
	if a, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && a > 0 {
		ageValue = time.Duration(min(a, 1<<31)) * time.Second
	}
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
	m.Flags = old.Flags &^ object.SoftPurged
	return m, d.storable
}
