package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/cmcd"
	"github.com/duetcdn/duet/internal/purgereq"
)

// Purge is one purge request as stored in the purge streams (JSON, subject
// PurgeSubject(Region, ID)). Applying the same purge twice is harmless.
type Purge struct {
	// ID names the purge uniquely (a valid name, see ValidName). It is also the message's
	// Nats-Msg-Id, so a repeated publish within the stream's duplicate window is dropped.
	ID string `json:"id"`
	// Region is the region whose purge API accepted the purge; its stream is where the purge is
	// stored first, and every other region's stream sources it from there.
	Region string `json:"region"`
	// Target is what the purge names: urls, prefixes, tags and soft, at the top level of the
	// JSON, as the purge API received them (after its checks).
	purgereq.Target
	// Accepted is when the purge API accepted the purge (UTC); lags are measured from it.
	Accepted time.Time `json:"accepted"`
	// By names who asked (the API token's name), for the audit trail.
	By string `json:"by,omitempty"`
}

// Tick is a region's purge-path liveness mark (JSON, subject PurgeTickSubject(Region)). The purge
// service stores one every few seconds; the stream keeps only the latest per region, so an edge
// that sees a recent tick from every region knows it has not missed any region's purges older
// than that tick.
type Tick struct {
	// Region is the region whose purge service stored the tick.
	Region string `json:"region"`
	// At is when the tick was stored (the purge service's clock, UTC).
	At time.Time `json:"at"`
}

// PurgeAck is an edge's acknowledgement of one purge (JSON, core subject PurgeAckSubject(ID)).
type PurgeAck struct {
	// ID is the purge's id.
	ID string `json:"id"`
	// Edge names the edge that applied it.
	Edge string `json:"edge"`
	// Region is the edge's region.
	Region string `json:"region"`
	// Applied is when the edge finished applying it (UTC).
	Applied time.Time `json:"applied"`
	// Entries is how many cache entries the purge removed or marked stale.
	Entries int `json:"entries"`
	// Error, when not empty, says what the edge could not apply (the rest was applied).
	Error string `json:"error,omitempty"`
}

// Edge states in Heartbeat.State.
const (
	// StateServing: the edge takes traffic.
	StateServing = "serving"
	// StateDraining: the edge is shutting down; steering sends it no new viewers.
	StateDraining = "draining"
)

// Heartbeat is an edge's state, published every second (JSON, core subject
// HealthSubject(Region, Edge)). Rates are averages over the last interval.
type Heartbeat struct {
	// Edge names the edge.
	Edge string `json:"edge"`
	// Region is the edge's region.
	Region string `json:"region"`
	// URL is the edge's public base URL (scheme://host[:port]) that viewers are sent to.
	URL string `json:"url"`
	// State is StateServing or StateDraining.
	State string `json:"state"`
	// At is when the heartbeat was sent (the edge's clock, UTC).
	At time.Time `json:"at"`
	// Connections is the number of open client connections.
	Connections int64 `json:"connections"`
	// Capacity is how many client connections the edge is meant to take (0: not announced).
	// Steering takes the edge's load to be the highest of Connections/Capacity,
	// EgressBytesPerSec/CapacityEgressBytesPerSec and CPU/CapacityCPU, over the capacities
	// announced; with none announced the load is unknown and the edge never counts as full.
	Capacity int64 `json:"capacity,omitempty"`
	// CapacityEgressBytesPerSec is the egress the edge is meant to sustain, in bytes per second
	// (0: not announced; edges before issue 15 do not).
	CapacityEgressBytesPerSec float64 `json:"capacity_egress_bytes_per_sec,omitempty"`
	// CapacityCPU is the CPU the edge may use, in cores (0: not announced).
	CapacityCPU float64 `json:"capacity_cpu,omitempty"`
	// RequestsPerSec is the request rate, in requests per second.
	RequestsPerSec float64 `json:"requests_per_sec"`
	// EgressBytesPerSec is the rate of body bytes sent to clients, in bytes per second: the
	// higher of the last interval's rate and its moving average over a few seconds (quick to
	// rise, slow to fall, so a burst shows at once and a lull does not hide the viewers).
	EgressBytesPerSec float64 `json:"egress_bytes_per_sec"`
	// CPU is the process's CPU use, in cores (1.0 = one core fully busy).
	CPU float64 `json:"cpu"`
	// HitRatio is the cache hit ratio over the last interval, 0 to 1.
	HitRatio float64 `json:"hit_ratio"`
	// MemoryBytes is the memory tier's size, in bytes.
	MemoryBytes int64 `json:"memory_bytes"`
	// DiskBytes is the disk tier's size, in bytes.
	DiskBytes int64 `json:"disk_bytes"`
	// OriginHealthy is true while the edge can fill misses: most of its origin fetches in the
	// last interval got an answer and, when it has fallback origins, at least one of them (the
	// primary or a fallback) is usable (its circuit breaker is not open). It says nothing about
	// which origin answers: see Origins.
	OriginHealthy bool `json:"origin_healthy"`
	// Origins is each origin's state, in the order the edge tries them (its own region's first),
	// when the edge has fallback origins; empty otherwise.
	Origins []OriginHealth `json:"origins,omitempty"`
	// QoE is the viewers' quality of experience as their players reported it (CMCD) to this
	// edge over the last 30 s; absent when no player sent CMCD.
	QoE *cmcd.Summary `json:"qoe,omitempty"`
}

// OriginHealth is one origin of an edge's failover group, as its heartbeat reports it.
type OriginHealth struct {
	// Name is the origin's configured name (for example its region).
	Name string `json:"name"`
	// Healthy is true while the origin's circuit breaker is closed.
	Healthy bool `json:"healthy"`
	// State is the circuit breaker's state: "closed", "half-open" or "open".
	State string `json:"state"`
}

// PublishPurge stores p in its region's purge stream (subject PurgeSubject(p.Region, p.ID)), with
// Nats-Msg-Id p.ID so that a repeated publish within the duplicate window is dropped (the PubAck
// then has Duplicate set). It checks that p.ID is a valid name and p.Region a valid region; the
// error wraps ErrInvalidPurge. It fails unless the message landed in PurgeStreamName(p.Region).
func PublishPurge(ctx context.Context, js jetstream.JetStream, p Purge) (*jetstream.PubAck, error) {
	if p.ID == "" {
		return nil, fmt.Errorf("publish purge: %w: no id", ErrInvalidPurge)
	}
	if err := ValidName(p.ID); err != nil {
		return nil, fmt.Errorf("publish purge: %w: id: %w", ErrInvalidPurge, err)
	}
	if err := ValidRegion(p.Region); err != nil {
		return nil, fmt.Errorf("publish purge %s: %w: region: %w", p.ID, ErrInvalidPurge, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("publish purge %s: encode: %w", p.ID, err)
	}
	msg := &nats.Msg{Subject: PurgeSubject(p.Region, p.ID), Data: b}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(p.ID), jetstream.WithExpectStream(PurgeStreamName(p.Region)))
	if err != nil {
		return nil, fmt.Errorf("publish purge %s to %s: %w", p.ID, msg.Subject, err)
	}
	return ack, nil
}

// PublishTick stores a Tick for region at time at in region's purge stream.
func PublishTick(ctx context.Context, js jetstream.JetStream, region string, at time.Time) error {
	if err := ValidRegion(region); err != nil {
		return fmt.Errorf("publish tick: %w", err)
	}
	b, err := json.Marshal(Tick{Region: region, At: at.UTC()})
	if err != nil {
		return fmt.Errorf("publish tick for %s: encode: %w", region, err)
	}
	subj := PurgeTickSubject(region)
	if _, err := js.Publish(ctx, subj, b, jetstream.WithExpectStream(PurgeStreamName(region))); err != nil {
		return fmt.Errorf("publish tick to %s: %w", subj, err)
	}
	return nil
}
