package viewerstate

import "errors"

var (
	// ErrBadInput is a request or stored document that breaks the rules (size, characters,
	// values); the message says what to fix.
	ErrBadInput = errors.New("bad viewer state input")
	// ErrNotFound is a read of state that does not exist (never written, expired or erased).
	ErrNotFound = errors.New("no state stored")
	// ErrBusy is a write that kept losing the race for its key to other writes in its region.
	ErrBusy = errors.New("viewer state busy: concurrent writes, try again")
)
