// Package route is the JSON of steering's GET /v1/route answer: steering writes it, and the load
// generator's viewers read it (the roles do not import each other, so the type lives here).
package route

// Answer is /v1/route's answer.
type Answer struct {
	// Path is the content path asked about, Key its content key.
	Path string `json:"path"`
	Key  string `json:"key"`
	// Client is the client's address as steering saw it; Country where GeoIP put it (may be
	// empty); Located whether it had a position (false: the default region was the start).
	Client  string `json:"client"`
	Country string `json:"country,omitempty"`
	Located bool   `json:"located"`
	// Region is the first choice's region.
	Region string `json:"region,omitempty"`
	// Reason says why the first choice is first (hrw.Reason values).
	Reason string `json:"reason"`
	// Edges are the usable edges, best first.
	Edges []Edge `json:"edges"`
}

// Edge is one edge of an answer.
type Edge struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	URL    string `json:"url"`
	State  string `json:"state"`
}
