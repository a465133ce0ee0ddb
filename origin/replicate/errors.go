package replicate

import "errors"

// ErrInvalidConfig is wrapped by New for a configuration it cannot use; the message names the
// field to fix.
var ErrInvalidConfig = errors.New("invalid replicate config")
