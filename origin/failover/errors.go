package failover

import "errors"

// ErrConfig is wrapped by New when the config is wrong; the message names what to fix.
var ErrConfig = errors.New("invalid origin failover config")

// ErrAllFailed is wrapped by Fetch and Forward when no member gave an answer (every attempt ended
// in a connection error or a timeout). The error also wraps each attempt's error, so
// errors.Is(err, origin.ErrTimeout) still works.
var ErrAllFailed = errors.New("every origin failed")

// ErrNotForwarding is returned by Forward when some member cannot forward (an S3 member): wire
// such a group as a read-only origin (see Group.Forwarding).
var ErrNotForwarding = errors.New("origin group has a member that cannot forward")
