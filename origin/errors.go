package origin

import (
	"errors"

	"github.com/duetcdn/duet/origin/internal/fetch"
)

// ErrInvalidConfig is wrapped by s3origin.New and NewHTTP when a config field is missing or wrong; the
// message names the field.
var ErrInvalidConfig = errors.New("invalid origin config")

// ErrTimeout is wrapped by Fetch and Forward when the origin did not answer (response headers, or
// for S3 the object's metadata) within the configured Timeout. A body that stalls after that is
// bounded only by the caller's context.
var ErrTimeout = fetch.ErrTimeout
