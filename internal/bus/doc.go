// Package bus is Duet's NATS backbone between regions: the subjects and message types every role
// shares, client connections, and the purge streams with their cross-region sourcing. The embedded
// server for `duet dev` and tests is package natsserver, so that the roles do not link it.
//
// # Regions and links
//
// Each region runs its own NATS (embedded by natsserver.Start in dev and tests; the operators'
// own in production) with JetStream in its own domain, named after the region. Regions are linked with
// leafnodes: region B's server is a leafnode of region A's (natsserver.Config.LeafRemotes dials A's
// natsserver.Config.LeafPort listener). Leafnodes rather than gateways, because:
//
//   - A JetStream domain is the leafnode's unit of independence. Servers joined by gateways form
//     one super-cluster with one JetStream meta layer: a region cut off from the others loses
//     that layer's quorum and can no longer create streams or consumers (every starting edge
//     creates its durable consumer), and its streams would have to be placed by the super-cluster.
//     Across a leafnode link each region's JetStream is its own: it keeps accepting purges and
//     serving its edges when cut off.
//   - Core subjects cross a leafnode link both ways, by interest (a subscriber in A to
//     HealthWildcard gets B's heartbeats and A's; acknowledgements likewise), and a region's
//     JetStream API is reachable from the others as "$JS.<region>.API", which is what a stream
//     needs to source another region's stream.
//   - The link works through NAT and firewalls in one direction (only the spoke dials), with TLS
//     and a password (natsserver.Config.TLS, LeafUser, LeafPassword).
//
// Links must form a tree: a loop (C dialling both A and B while B dials A) makes the servers drop
// the links involved and wait 30 s before each retry; seen here, all three links went down. Two
// regions: B dials A. A third region C also dials A (hub and spoke): B and C then reach each
// other through A, core subjects and JetStream APIs alike (TestThirdRegion), and C's purge stream
// sources both A's and B's. The hub carries all traffic between spokes, so if A fails, B and C
// are cut from each other too (each keeps working alone and catches up afterwards, as below). In
// production, make the hub a cluster of several servers (an entry of LeafRemotes may list all of a
// cluster's URLs, comma-separated), or a dedicated small hub cluster that is no region at all.
// Servers do not advertise other leafnode URLs (NoAdvertise): a spoke dials only what it is
// given, so a proxy, NAT or load balancer in between keeps working.
//
// # Identities
//
// Whoever can publish on NATS can purge, steer viewers and keep caches trusted, so every client
// authenticates (ConnConfig.NKeyFile, or a creds file, a user or a token) and each Identity may
// use only what its Role needs (Identity.Permissions): an edge publishes only its own heartbeat
// and acknowledgement subjects and reads the region's purge stream through its own durable
// consumer; only the purge service writes ticks; steering only reads heartbeats (and publishes
// its edge events) and keeps its region's viewer state bucket, writing only its own region's
// keys there (viewers.go). natsserver.Config.Identities enforces this in the embedded server, and
// RenderAuthorization writes the same for a nats-server.conf. The subjects name their sender
// (HealthSubject, PurgeAckSubject), so a reader that checks a message against its subject knows
// the server let only that sender publish it.
//
// # Purge streams
//
// A purge is stored in the stream of the region whose purge API accepted it
// (PurgeStreamName(region), subjects "duet.purge.<region>.>", see EnsurePurgeStream), with its id
// as Nats-Msg-Id so a repeated publish is dropped. Every region's stream sources every other
// region's, through that region's domain and filtered to that region's own subjects (so a purge is
// never sourced twice through a third region, nor sourced back home), and edges consume their own
// region's stream with a durable consumer. The purge service also stores a Tick every few seconds:
// an edge that has seen a recent tick from every region knows it has every purge older than that.
//
// # Catching up after a partition
//
// Stream sourcing catches up by itself after a link heals, but late. A source that stops hearing
// from its region (heartbeats every second) declares itself stalled 10-20 s later and asks the
// region's JetStream for a new consumer; if the link is still down, that request is lost and the
// source waits 30 s for the answer, then backs off (10 s, 20 s, … up to 2 minutes) between
// further attempts. A source set up while its region is unreachable (a region's server restarting
// before its link is up) has the same fate. Measured on this package's tests (PartitionCatchUp,
// RegionGone; DUET_BUS_BASELINE=1 runs the baseline): the stream caught up 40-49 s after the
// link healed, while core NATS crossed the link again within 0.1-0.6 s. (A restarted spoke is the
// lucky case: its link is up before its stream asks, and it caught up in under 0.5 s.)
//
// What was evaluated:
//
//   - Leafnode reconnection is not the problem: the link is back within 0.25 s + jitter of healing
//     (natsserver.Config sets LeafNode.ReconnectInterval to 250 ms; NATS's default of 1 s took 0.9 s).
//   - Re-applying the stream's configuration (UpdateStream with the same configuration) does not
//     touch running sources: still 40 s, with 40 re-applies.
//   - The server keeps the 30 s wait and the backoff in unexported settings.
//   - Durable sourcing (nats-server 2.14+, StreamSource.Consumer) watches a durable consumer's
//     delivery subject while backing off and retries as soon as it hears from it; but it needs a
//     consumer with AckFlowControl made in every source region for every sourcing region, and it
//     was not measured here.
//   - Removing a source and adding it back restarts it at once, from where the stream left off (the
//     server tracks each source's position and recovers it from the stored messages), so nothing is
//     skipped or stored twice. KickSources does that for the stalled sources only; WatchSources
//     does it by itself, for sources that are stalled while their region's JetStream answers.
//
// After the fix, measured the same way: 0.3-0.6 s with KickSources called once the link is back,
// 0.8-2 s with WatchSources (it acts on the second of its one-second checks that sees a stalled
// source whose region answers), up to 6 s on a machine loaded far beyond its cores. The purge
// service should run WatchSources beside its stream.
package bus
