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
