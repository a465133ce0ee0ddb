package disktier

import "errors"

// Sentinel errors. Methods wrap them with the operation and the cache key, so compare with
// errors.Is.
var (
	// ErrNotFound: the key has no entry in the tier.
	ErrNotFound = errors.New("disktier: not found")
	// ErrCorrupt: the entry's file failed a check (body checksum, length, missing file). The
	// entry has been removed; the caller should refetch the object.
	ErrCorrupt = errors.New("disktier: corrupt entry")
	// ErrTooLarge: the object's file would be larger than MaxBytes/MaxObjectFraction, or its
	// metadata larger than MaxMetaBytes. Nothing was stored.
	ErrTooLarge = errors.New("disktier: object too large")
	// ErrNoSpace: a fill could not reserve budget because everything that could be evicted is
	// itself in use (in-flight fills, open entries). Nothing is stored; the bytes already written
	// stay readable through the Writer until Abort.
	ErrNoSpace = errors.New("disktier: no space")
	// ErrClosed: the Store, the Writer or the Handle was closed (or the Writer already finished).
	ErrClosed = errors.New("disktier: closed")
)
