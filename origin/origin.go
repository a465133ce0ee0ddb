// Package origin fetches objects from the places that hold the master copies: its Request and
// Response are what every origin client speaks, and HTTP is the plain HTTP origin (package
// s3origin is the S3 one). It knows nothing about caching; the edge decides what to keep.
package origin

import (
	"io"
	"net/http"
	"time"
)

// Defaults of the origin clients' Timeout and MaxConns (HTTPConfig, s3origin.Config).
const (
	DefaultTimeout  = 10 * time.Second
	DefaultMaxConns = 256
)

// Request is one read of an object at an origin.
type Request struct {
	// Path is the object's path below the origin's root: normalised, starting with "/", no query.
	Path string
	// Query is the normalised raw query string (without "?"). HTTP origins forward it; S3 ignores it.
	Query string
	// Range is a byte-range header value such as "bytes=0-4194303", or "" for the whole object.
	Range string
	// IfNoneMatch and IfModifiedSince make the read conditional (revalidation): the origin answers
	// 304 when the object has not changed. The zero values mean "unconditional".
	IfNoneMatch     string
	IfModifiedSince time.Time
	// IfMatch pins the read to one version of the object (used for slices of a large object): the
	// origin answers 412 when the object's ETag differs.
	IfMatch string
	// Head asks for the object's headers only (an HTTP HEAD, an S3 HeadObject): the Response has
	// the status and headers a read would have, Content-Length included, and an empty Body.
	// Range is ignored.
	Head bool
	// Header holds extra request headers forwarded to HTTP origins (for example Accept-Encoding,
	// which a Vary response depends on). S3 origins ignore it. May be nil.
	Header http.Header
}

// Response is an origin's answer. Status carries HTTP semantics for both kinds of origin: an S3
// "NoSuchKey" is a 404, a failed If-None-Match a 304, a failed If-Match a 412, an unsatisfiable
// range a 416. Errors (the error return of Fetch) are reserved for failures to get any answer:
// connection refused, timeouts, cancelled contexts.
type Response struct {
	Status int
	// Header uses canonical names. S3 origins synthesise it from the object's attributes:
	// Content-Type, Content-Length, Content-Range, Content-Encoding, ETag, Last-Modified,
	// Cache-Control, Expires, and Surrogate-Key from the object's x-amz-meta-surrogate-key.
	Header http.Header
	// Body is never nil; the caller must close it. Reading it may fail mid-way (a cut
	// connection): callers must treat a short read as a failure, never as the end of the object.
	Body io.ReadCloser
	// ContentLength is the length of Body, or -1 when unknown.
	ContentLength int64
}
