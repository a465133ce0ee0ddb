package main

import "github.com/duetcdn/duet/purge"

// purgeServeConfig is `duet purge serve`'s configuration.
type purgeServeConfig struct {
	purge.ServiceConfig `yaml:",inline"`
	// NATS is the region's NATS.
	NATS natsConfig `yaml:"nats"`
}

func defaultPurgeServeConfig() purgeServeConfig {
	return purgeServeConfig{ServiceConfig: purge.DefaultServiceConfig(), NATS: natsConfig{URLs: []string{"nats://127.0.0.1:4222"}}}
}
