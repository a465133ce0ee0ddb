package bus

import "errors"

// ErrInvalidName is returned (wrapped) by ValidName, and by every function that checks a region,
// edge or purge id with it.
var ErrInvalidName = errors.New("invalid name")

// ErrInvalidPurge is returned (wrapped) by PublishPurge for a purge that must not be stored: no id,
// or an id or region that is not a valid name.
var ErrInvalidPurge = errors.New("invalid purge")

// ErrInvalidConfig is returned (wrapped) by Connect and natsserver.Start for a configuration they
// cannot use.
var ErrInvalidConfig = errors.New("invalid config")
