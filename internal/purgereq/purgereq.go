// Package purgereq is what one purge names, the same JSON wherever a purge travels: in the body
// of the purge API's POST /v1/purge (purge.Request), in the purge streams (bus.Purge), and in the
// body of an edge's local admin POST /purge, which edge.Server.Purge applies. The roles do not
// import each other, so the type lives here, in a leaf package without dependencies.
package purgereq

// Target names what a purge removes (or, Soft, marks stale). Each role validates it to its own
// rule: the purge API refuses a request with one bad item, an edge applies the good items and
// reports the bad ones.
type Target struct {
	// URLs are request paths with an optional query ("/vod/abc/seg1.ts?x=1"), or absolute
	// http(s) URLs whose path and query are used.
	URLs []string `json:"urls,omitempty"`
	// Prefixes purge every URL whose path starts with one of them ("/vod/abc/").
	Prefixes []string `json:"prefixes,omitempty"`
	// Tags purge every object carrying one of these surrogate keys.
	Tags []string `json:"tags,omitempty"`
	// Soft marks the entries stale instead of removing them: the next request revalidates, and
	// stale-if-error can still serve them while the origin is down.
	Soft bool `json:"soft,omitempty"`
}

// Items is how many URLs, prefixes and tags t names.
func (t Target) Items() int { return len(t.URLs) + len(t.Prefixes) + len(t.Tags) }
