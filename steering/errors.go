package steering

import "errors"

// Errors of the steering service. The HTTP API maps them to statuses in one place (writeError).
var (
	// ErrInvalidConfig is wrapped by New's errors.
	ErrInvalidConfig = errors.New("steering: invalid config")
	// ErrBadRequest: a path, query value or client address is malformed. Served as 400 with the
	// error's text.
	ErrBadRequest = errors.New("bad request")
	// ErrNoEdges: the health table is empty (no heartbeat received yet). Served as 503.
	ErrNoEdges = errors.New("no edges known: no heartbeat received from any edge")
	// ErrNoHealthyEdge: every known edge is down or draining. Served as 503.
	ErrNoHealthyEdge = errors.New("no healthy edge: every known edge is down or draining")
)
