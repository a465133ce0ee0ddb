package minioproc

import "errors"

// ErrBinaryNotFound is returned by Start when Config.Bin does not exist. The wrapped message names
// the path and the make target that installs the pinned server.
var ErrBinaryNotFound = errors.New("minio server binary not found")

// ErrNotReady is returned by Start and Restart when the server exited, or did not answer its
// readiness probe in time. The wrapped message carries the tail of the server's log.
var ErrNotReady = errors.New("minio server not ready")
