// Package object describes a cached response independent of where its bytes live: the memory
// tier, the disk tier and the serving code all speak in terms of Meta.
package object

import "time"

// Field is one stored response header, in the order the origin sent it.
type Field struct {
	Name  string
	Value string
}

// Flags record state an entry gains after it was stored.
type Flags uint32

const (
	// SoftPurged marks an entry that a soft purge made stale: it must be revalidated before it
	// is served again, but may still be served under stale-if-error.
	SoftPurged Flags = 1 << iota
	// AuthReusable marks a response whose Cache-Control lets a shared cache reuse it for a
	// request with Authorization (public, s-maxage or must-revalidate; RFC 9111 §3.5).
	AuthReusable
)

// Meta is everything about a cached response except its body. A Meta is immutable once it has
// been handed to a tier: changing an entry means storing a new Meta.
type Meta struct {
	// Key is the full cache key of the entry (primary key plus variant or slice suffix).
	Key string
	// Status is the HTTP status the entry answers with: 200, 203, 206 (a slice), 301, 404, 410...
	Status int
	// Header holds the stored end-to-end response headers (hop-by-hop headers removed).
	Header []Field
	// ETag and LastModified are the validators used for revalidation and client conditionals.
	ETag         string
	LastModified time.Time
	// RequestTime and ResponseTime bracket the origin exchange that produced the entry;
	// InitialAge is the corrected initial age of RFC 9111 §4.2.3 at ResponseTime.
	RequestTime  time.Time
	ResponseTime time.Time
	InitialAge   time.Duration
	// FreshFor is the freshness lifetime (RFC 9111 §4.2.1) measured from the entry's age zero.
	FreshFor time.Duration
	// StaleWhileRevalidate and StaleIfError are the RFC 5861 windows past freshness.
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration
	// MustRevalidate forbids serving the entry stale (must-revalidate, proxy-revalidate,
	// s-maxage, no-cache).
	MustRevalidate bool
	// Size is the body length in bytes.
	Size int64
	// Total is, for a slice of a large object (Status 206), the whole object's length; the slice
	// covers bytes [Offset, Offset+Size). Zero for whole objects.
	Total  int64
	Offset int64
	// Tags are the surrogate keys the origin attached to the object.
	Tags []string
	// Checksum is the xxhash64 of the body, checked when the bytes are read back from disk.
	Checksum uint64
	Flags    Flags
}
