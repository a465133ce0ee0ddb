package main

import (
	"os"
	"time"

	"github.com/duetcdn/duet/edge"
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
