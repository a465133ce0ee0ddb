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
	// ErrViewerStateOff: the viewer state API is not configured (viewer_state.region). Served as
	// 404.
	ErrViewerStateOff = errors.New("viewer state is off on this steering: set viewer_state.region")
	// ErrViewerStateUnavailable: the viewer state store is not open yet (NATS unreachable).
	// Served as 503.
	ErrViewerStateUnavailable = errors.New("viewer state unavailable: the region's NATS is not reachable yet")
	// ErrTooManyRequests: a viewer made more requests than viewer_state.requests_per_minute.
	// Served as 429.
	ErrTooManyRequests = errors.New("too many viewer state requests for this viewer: slow down")
)
