package loadtest

import "errors"

// Errors a run can fail with; each is wrapped with what to fix.
var (
	// ErrConfig: a setting is out of range or missing.
	ErrConfig = errors.New("invalid loadtest config")
	// ErrUnknownScenario: --scenario names no scenario; the message lists the valid ones.
	ErrUnknownScenario = errors.New("unknown scenario")
	// ErrRemoteTarget: a URL the run would send load to is not a loopback address, and
	// AllowRemote is off.
	ErrRemoteTarget = errors.New("target is not on loopback")
	// ErrUnreachable: the dev control API did not answer.
	ErrUnreachable = errors.New("control API unreachable")
)
