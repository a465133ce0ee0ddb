// Package viewerstate keeps per-viewer state that follows the viewer across regions: per title a
// resume position, the last rendition, audio and subtitle choice and a finished flag, and per
// viewer a few settings. Steering serves it (/v1/viewers/...); see docs/viewer-state.md.
//
// # Storage
//
// Each region writes in its own JetStream key-value bucket (bus.EnsureViewerBucket), and only
// keys that start with its own name: "<region>.<viewer>.t.<title>" (base64url), ".s" (settings),
// ".x" (erasure). Each region's bucket sources every other region's own keys, so every bucket
// holds one copy per region of each key, and no region ever overwrites another's copy. A read
// gets every region's copy from the local bucket and merges them (Merge); a write merges, applies
// the change with a new stamp, and stores the result as the region's own copy (compare and set,
// so concurrent writes in a region do not lose each other). Merging is a join: it does not
// depend on the order in which copies arrived nor on one arriving twice, so two regions that have
// received the same copies read the same state, whatever happened in between. That is why the
// copies are merged on read rather than replicated into one value: a sourced value would
// overwrite the local one in arrival order, which differs between regions.
//
// # Conflict rule
//
// Every field is stamped by the writer's hybrid logical clock (Clock: wall milliseconds, a
// counter, and the region breaking ties), and the clock observes every stamp a region reads, so
// a write made after reading a state is newer than all of it even when the writer's wall clock
// lags. Choices, the finished flag and each setting: the newest stamp wins. The resume position:
// a later epoch wins, then the further position; a viewer's explicit seek (back) begins a new
// epoch, so the newest intent wins, and replication order never moves a position backwards.
// An erasure is a stamp too: it hides every field stamped at or before it, in every region, when
// it arrives (older writes arriving later stay hidden), and it begins a new position epoch.
// Writes after the erasure show again. Everything, erasures included, expires Retention after
// its last write (the bucket's TTL).
package viewerstate
