package geoip

import "errors"

var (
	// ErrInvalidDatabase: the file is not a MaxMind DB, or it is damaged.
	ErrInvalidDatabase = errors.New("geoip: invalid database")
	// ErrUnsupportedDatabase: a MaxMind DB without country data (an ASN,
	// ISP, domain or anonymous-IP database, for example).
	ErrUnsupportedDatabase = errors.New("geoip: unsupported database type")
)
