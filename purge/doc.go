// Package purge is Duet's verifiable purge: the HTTP API that accepts purges and stores them in
// the region's JetStream purge stream (from where every other region's stream sources them), the
// consumer every edge runs to apply them and acknowledge each one, and the client the CLI uses.
//
// The promise: once the API answers 2xx, the purge is stored durably; each edge applies it within
// milliseconds and says so (a PurgeAck on core NATS, which the API collects per purge). An edge cut
// off from its purge stream, or from any region's purges, for longer than its staleness bound
// stops trusting its cache until it has caught up (it serves an entry only once the origin has
// confirmed it, then for at most the staleness bound; see edge/trust.go), so that no edge serves
// purged bytes even while it cannot hear about the purge.
package purge
