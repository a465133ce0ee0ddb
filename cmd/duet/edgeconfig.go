package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/edge/announce"
)

// edgeRoleConfig is `duet edge`'s configuration: the edge itself, and how it joins the
// backbone (heartbeats, the purge stream) when NATS is configured.
type edgeRoleConfig struct {
	edge.Config `yaml:",inline"`
	// PublicURL is where viewers reach this edge (announced in heartbeats). Default
	// http://<listen>, or https://<listen> with TLS on.
	PublicURL string `yaml:"public_url"`
	// NATS is the region's NATS; without URLs the edge runs standalone (no purge stream).
	NATS natsConfig `yaml:"nats"`
	// Purge configures the purge consumer.
	Purge purgeConsumerConfig `yaml:"purge"`
	// Steering injects content steering into the playlists and MPDs the edge caches.
	Steering steeringInjectConfig `yaml:"steering"`
	// Capacity is the load the edge is meant to take, announced in its heartbeats: steering
	// sends a stream's next viewers to another edge of the region once this edge is above
	// steering's balance_percent of the region's average load or at its capacity, and to
	// another region only when every edge of the region is at capacity (docs/scale-out.md).
	// An edge's load is the highest of its connections, egress and CPU over those capacities.
	Capacity edgeCapacityConfig `yaml:"capacity"`
}

// edgeCapacityConfig is what the edge announces it can take.
type edgeCapacityConfig struct {
	// Conns is how many viewer connections the edge is meant to take. Default 0: max_conns (the
	// most it accepts); a lower value keeps headroom.
	Conns int `yaml:"conns"`
	// EgressBytesPerSec is the egress the edge is meant to sustain, in bytes per second ("1GB":
	// a gigabyte a second, about 8 Gbit/s; set it a little under the link's or the instance's
	// network limit). Default 0: egress is not a limit.
	EgressBytesPerSec edge.ByteSize `yaml:"egress_bytes_per_sec"`
	// CPUPercent is the CPU the edge may use, in percent of one core (400: four cores busy).
	// Default 0: CPU is not a limit.
	CPUPercent int `yaml:"cpu_percent"`
}

// Validate checks the edge and its capacity.
func (c *edgeRoleConfig) Validate() error {
	err := c.Config.Validate()
	if c.Capacity.Conns < 0 || c.Capacity.EgressBytesPerSec < 0 || c.Capacity.CPUPercent < 0 {
		err = errors.Join(err, fmt.Errorf("%w: capacity.conns, capacity.egress_bytes_per_sec and capacity.cpu_percent must not be negative (0: not a limit, or max_conns for conns)", edge.ErrConfig))
	}
	return err
}

// announced is the announcer's config: who the edge is, where viewers reach it, and its
// capacities (conns: capacity.conns, at most maxConns, the connections it accepts).
func (c *edgeRoleConfig) announced(url string, maxConns int) announce.Config {
	conns := maxConns
	if c.Capacity.Conns > 0 && (maxConns <= 0 || c.Capacity.Conns < maxConns) {
		conns = c.Capacity.Conns
	}
	return announce.Config{Edge: c.Name, Region: c.Region, URL: url, Capacity: int64(conns),
		CapacityEgressBytesPerSec: float64(c.Capacity.EgressBytesPerSec), CapacityCPU: float64(c.Capacity.CPUPercent) / 100}
}

type purgeConsumerConfig struct {
	// Regions lists every region whose purges this edge must hear about. Default: its own.
	Regions []string `yaml:"regions"`
	// StalenessBound: cut off from any region's purges for longer, the edge revalidates each
	// object before serving it, then at most once per bound, until it has caught up. Default 10s.
	StalenessBound time.Duration `yaml:"staleness_bound"`
}

func defaultEdgeRoleConfig() edgeRoleConfig {
	cfg := edgeRoleConfig{Config: edge.DefaultConfig(), Purge: purgeConsumerConfig{StalenessBound: 10 * time.Second}}
	if h, err := os.Hostname(); err == nil {
		cfg.Name = sanitiseName(h)
	}
	return cfg
}

// sanitiseName turns a host name into a NATS-safe edge name.
func sanitiseName(h string) string {
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	return string(b)
}

func (c edgeRoleConfig) publicURL() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	if c.TLS.Enabled() {
		return "https://" + c.Listen
	}
	return "http://" + c.Listen
}
