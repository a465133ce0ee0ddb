// Package replicate keeps the origin buckets of Duet's regions in step: one Replicator per
// region copies into its own bucket the objects created or changed in the other regions,
// replicates their deletes, heals whatever an event missed with a periodic anti-entropy sweep,
// and purges every edge of its region of each object that changed in its own bucket.
//
// # Events
//
// Each region's MinIO publishes its bucket notifications (put, delete) to its region's origin
// stream (bus.OriginEventSubject, through MinIO's NATS notification target with JetStream; see
// minioproc.NotifyNATS and EnsureNotification). Each region's origin stream sources the other
// regions' (bus.EnsureOriginStream), so a replicator reads every region's events from its local
// NATS with one durable consumer, and catches up after a partition.
//
// # The conflict rule
//
// The logical version of an object is (mtime, ETag) of the write that created it in the region
// where it was written first: a replica carries that version in its metadata
// (duet-source-region, duet-source-etag, duet-source-mtime, RFC 3339 with nanoseconds), a native
// object's version is its own Last-Modified (millisecond precision) and ETag. A delete is a
// version too: a tombstone with the delete's time, kept for TombstoneTTL in a JetStream
// key-value bucket per region (bus-backed, so it survives restarts and needs no other store).
//
//   - Of two object versions, the one with the later mtime wins; equal mtimes are broken by the
//     larger ETag string, so every region picks the same winner.
//   - A delete beats an object version whose mtime is not later than the delete's time.
//
// Every decision compares versions, so it does not depend on the order events arrive in, and
// applying an event twice is harmless.
//
// # No ping-pong
//
// The replicator's S3 client identifies itself (its User-Agent carries "app/duet-replicate", which
// MinIO puts in the event) and stamps the duet-source-* metadata on every replica. Events of
// writes and deletes made by a replicator are never replicated again; they only trigger the
// automatic purge in the bucket's own region.
//
// # Failures
//
// An event that cannot be applied (own MinIO down, source region unreachable) is Nak'ed with a
// backoff (1 s doubling up to a minute) and redelivered without limit: a bounded number of
// redeliveries would drop it, and nothing may be lost. The sweep would heal a dropped put, but
// a dropped delete only while its tombstone lives.
package replicate
