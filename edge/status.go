package edge

// cacheStatus is how a request was answered; it drives the Cache-Status header (RFC 9211),
// X-Cache and the request metrics.
type cacheStatus int

const (
	csHit cacheStatus = iota
	csStaleWhileRevalidate
	csStaleIfError
	csMiss
	csRefetched
	csRevalidated
	csPass
	csError
	numCacheStatus
)

var cacheStatusInfo = [numCacheStatus]struct{ label, header, xcache string }{
	csHit:                  {"hit", "duet; hit", "HIT"},
	csStaleWhileRevalidate: {"stale", "duet; hit; detail=stale-while-revalidate", "STALE"},
	csStaleIfError:         {"stale_if_error", "duet; hit; fwd=stale; detail=stale-if-error", "STALE"},
	csMiss:                 {"miss", "duet; fwd=uri-miss; stored", "MISS"},
	csRefetched:            {"refetched", "duet; fwd=stale; fwd-status=200; stored", "MISS"},
	csRevalidated:          {"revalidated", "duet; fwd=stale; fwd-status=304", "REVALIDATED"},
	csPass:                 {"pass", "duet; fwd=uri-miss; detail=uncacheable", "PASS"},
	csError:                {"error", "duet; fwd=uri-miss; detail=error", "ERROR"},
}

func (c cacheStatus) label() string  { return cacheStatusInfo[c].label }
func (c cacheStatus) header() string { return cacheStatusInfo[c].header }
func (c cacheStatus) xcache() string { return cacheStatusInfo[c].xcache }

// Canonical header names and pre-rendered values for the hit path's SetCanonical and
// PeekCanonical calls, which neither copy nor normalise the name per request (fasthttp has
// already normalised the request's names while parsing). Read-only after package initialisation.
var (
	hdrRange           = []byte("Range")
	hdrIfNoneMatch     = []byte("If-None-Match")
	hdrIfModifiedSince = []byte("If-Modified-Since")
	hdrIfRange         = []byte("If-Range")
	hdrIfMatch         = []byte("If-Match")
	hdrIfUnmodSince    = []byte("If-Unmodified-Since")
	hdrAuthorization   = []byte("Authorization")
	hdrAge             = []byte("Age")
	hdrCacheStatus     = []byte("Cache-Status")
	hdrXCache          = []byte("X-Cache")
	hdrAcceptRanges    = []byte("Accept-Ranges")
	valBytes           = []byte("bytes")
	cacheStatusBytes   = func() (b [numCacheStatus]struct{ header, xcache []byte }) {
		for i, info := range cacheStatusInfo {
			b[i].header, b[i].xcache = []byte(info.header), []byte(info.xcache)
		}
		return b
	}()
)
