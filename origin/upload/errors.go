package upload

import "errors"

// Errors that name what the user must fix. Functions wrap them with the details (the region, the
// bucket, the endpoint), so callers test with errors.Is and print the error as it is.
var (
	// ErrInvalidConfig is wrapped when a Region or Config field is missing or wrong.
	ErrInvalidConfig = errors.New("invalid upload config")
	// ErrUnknownRegion is wrapped by FindRegion; the message lists the known regions.
	ErrUnknownRegion = errors.New("unknown region")
	// ErrNoCredentials is wrapped when no credentials could be found for a region.
	ErrNoCredentials = errors.New("no credentials")
	// ErrAccessDenied is wrapped when the bucket refused the credentials (wrong key or secret, or
	// no permission on the bucket).
	ErrAccessDenied = errors.New("access denied")
	// ErrBucketNotFound is wrapped when the region's bucket does not exist.
	ErrBucketNotFound = errors.New("bucket not found")
	// ErrUnreachable is wrapped when the region's endpoint did not answer at all.
	ErrUnreachable = errors.New("endpoint unreachable")
	// ErrNotRegular is wrapped in a failed item whose path is not a regular file (a FIFO, a
	// socket, a device, or a folder where a file was expected).
	ErrNotRegular = errors.New("not a regular file")
)
