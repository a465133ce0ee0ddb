// Package announce publishes an edge's heartbeat on NATS every second: who it is, where viewers
// reach it, whether it is serving or draining, its load and its cache. Steering builds its health
// table from these; the purge service learns from them which edges must acknowledge a purge.
package announce

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/cmcd"
)

// Source is what the announcer reads: the edge (cmd/duet adapts edge.Server's Stats).
type Source interface {
	Stats() Stats
}

// Stats is a snapshot of the edge's state and counters, what a heartbeat is built from.
type Stats struct {
	Serving     bool // ready and not draining
	Connections int64
	Requests    uint64 // viewer requests answered
	Hits        uint64 // of which from cache
	EgressBytes int64  // body bytes sent
	MemoryBytes int64
	DiskBytes   int64
	// OriginFetches and OriginFailures (connection errors, timeouts, 5xx) count origin requests.
	OriginFetches, OriginFailures uint64
	// QoE is what the players' CMCD reports say (nil: none).
	QoE *cmcd.Summary
}

// Publisher is the part of a NATS connection the announcer uses.
type Publisher interface {
	Publish(subject string, data []byte) error
}

var _ Publisher = (*nats.Conn)(nil)

// Config says what to announce.
type Config struct {
	Edge, Region string
	// URL is where viewers reach the edge (what steering hands out).
	URL string
	// Interval between heartbeats. Default 1s.
	Interval time.Duration
	// Capacity is how many viewer connections the edge is meant to take.
	Capacity int64
	// CapacityEgressBytesPerSec is the egress the edge is meant to sustain, in bytes per second;
	// 0: egress is not a limit.
	CapacityEgressBytesPerSec float64
	// CapacityCPU is the CPU the edge may use, in cores; 0: CPU is not a limit.
	CapacityCPU float64
	// Origins, when set, reports the state of each origin of the edge's failover group (see
	// bus.Heartbeat.Origins). Nil for an edge with a single origin.
	Origins func() []bus.OriginHealth
}

// Run publishes a heartbeat every Interval until ctx ends.
func Run(ctx context.Context, pub Publisher, cfg Config, src Source, log *slog.Logger) error {
	if err := errors.Join(bus.ValidName(cfg.Edge), bus.ValidName(cfg.Region)); err != nil {
		return err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	subject := bus.HealthSubject(cfg.Region, cfg.Edge)
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	// A change between serving and draining is announced at once, not at the next beat, so that
	// steering stops sending viewers before the edge stops accepting them.
	watch := time.NewTicker(50 * time.Millisecond)
	defer watch.Stop()
	prev, prevAt, prevCPU := src.Stats(), time.Now(), cpuTime()
	var egress Smoother
	send := func(final bool) {
		now, cpu := time.Now(), cpuTime()
		cur := src.Stats()
		if final {
			cur.Serving = false
		}
		hb := Heartbeat(cfg, cur, prev, now.Sub(prevAt), now)
		if dt := now.Sub(prevAt); dt > 0 {
			hb.CPU = float64(cpu-prevCPU) / float64(dt) // cores busy, e.g. 1.5
			hb.EgressBytesPerSec = egress.Update(hb.EgressBytesPerSec, dt)
		}
		prev, prevAt, prevCPU = cur, now, cpu
		if b, err := json.Marshal(hb); err == nil {
			if err := pub.Publish(subject, b); err != nil {
				log.Debug("heartbeat not sent", "error", err)
			}
		}
	}
	send(false)
	for {
		select {
		case <-ctx.Done():
			send(true) // the last word: draining
			return nil
		case <-t.C:
			send(false)
		case <-watch.C:
			if src.Stats().Serving != prev.Serving {
				send(false)
			}
		}
	}
}

// EgressTau is the time constant of the egress average: a rate that stops is still reported at
// a third of its value after EgressTau.
const EgressTau = 3 * time.Second

// Smoother turns the egress rate of each interval into the load an edge reports: the higher of
// that rate and its exponential moving average (time constant EgressTau). Quick to rise, so a
// flash crowd shows in the next heartbeat; slow to fall, so a pause between segments (players
// fetch a segment every few seconds) does not make a busy edge look idle to steering. The zero
// Smoother is ready.
type Smoother struct {
	avg    float64
	primed bool
}

// Update takes the rate over the last dt and returns the rate to report.
func (s *Smoother) Update(rate float64, dt time.Duration) float64 {
	if math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 {
		rate = 0
	}
	if !s.primed {
		s.avg, s.primed = rate, true
	} else {
		s.avg += (rate - s.avg) * (1 - math.Exp(-dt.Seconds()/EgressTau.Seconds()))
	}
	return max(rate, s.avg)
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Heartbeat builds one heartbeat from two snapshots dt apart.
func Heartbeat(cfg Config, cur, prev Stats, dt time.Duration, now time.Time) bus.Heartbeat {
	hb := bus.Heartbeat{
		Edge: cfg.Edge, Region: cfg.Region, URL: cfg.URL, State: "serving", At: now.UTC(),
		Connections: cur.Connections, Capacity: cfg.Capacity, CapacityEgressBytesPerSec: cfg.CapacityEgressBytesPerSec,
		CapacityCPU: cfg.CapacityCPU, MemoryBytes: cur.MemoryBytes, DiskBytes: cur.DiskBytes, OriginHealthy: true,
		QoE: cur.QoE,
	}
	if !cur.Serving {
		hb.State = "draining"
	}
	if fetches := cur.OriginFetches - prev.OriginFetches; fetches > 0 {
		// Unhealthy when most of the last interval's origin fetches failed.
		hb.OriginHealthy = 2*(cur.OriginFailures-prev.OriginFailures) < fetches
	}
	if cfg.Origins != nil {
		hb.Origins = cfg.Origins()
	}
	if len(hb.Origins) > 0 {
		// With failover, the edge can fill misses while any origin is usable: closed, or
		// half-open (being tested). Every breaker open means every origin failed repeatedly,
		// even when no fetch happened in the last interval to show it.
		usable := false
		for _, o := range hb.Origins {
			usable = usable || o.State != "open"
		}
		hb.OriginHealthy = hb.OriginHealthy && usable
	}
	if secs := dt.Seconds(); secs > 0 {
		reqs := float64(cur.Requests - prev.Requests)
		hb.RequestsPerSec = reqs / secs
		hb.EgressBytesPerSec = float64(cur.EgressBytes-prev.EgressBytes) / secs
		if reqs > 0 {
			hb.HitRatio = float64(cur.Hits-prev.Hits) / reqs
		}
	}
	return hb
}
