package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/failover"
	"github.com/duetcdn/duet/origin/s3origin"
)

// Compile-time guards: the origins satisfy what the edge asks of them.
var (
	_ edge.Origin    = (*s3origin.Origin)(nil)
	_ edge.Origin    = (*origin.HTTP)(nil)
	_ edge.Forwarder = (*origin.HTTP)(nil)
	_ edge.Origin    = (*failover.Group)(nil)
	_ edge.Forwarder = (*failover.Group)(nil)
	_ edge.Origin    = readOnlyOrigin{}
)

// newOrigins builds the edge's origin. Without fallbacks it is the one origin itself, exactly as
// before failover existed: a group of one could never skip its only member, so its breaker would
// only add work. With fallbacks it is a failover group (returned too, for the heartbeat) whose
// metrics go to reg. Either way the cache's hit path never touches the origin, so it is not
// slowed; a miss pays one breaker check per member tried.
func newOrigins(ctx context.Context, c edge.OriginConfig, reg prometheus.Registerer, log *slog.Logger) (edge.Origin, *failover.Group, error) {
	primary, err := newOrigin(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	if len(c.Fallbacks) == 0 {
		return primary, nil, nil
	}
	members := []failover.Member{{Name: c.OriginName(), Origin: primary}}
	for i, f := range c.Fallbacks {
		o, err := newOrigin(ctx, f)
		if err != nil {
			return nil, nil, fmt.Errorf("origin.fallbacks[%d] (%s): %w", i, f.Name, err)
		}
		members = append(members, failover.Member{Name: f.Name, Origin: o})
	}
	om, err := edge.NewOriginMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	g, err := failover.New(failover.Config{Members: members, Failures: c.BreakerFailures, Cooldown: c.BreakerCooldown,
		Metrics: om, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if !g.Forwarding() {
		// Some member is S3: hide Forward, so that the edge answers other methods with 405.
		return readOnlyOrigin{g}, g, nil
	}
	return g, g, nil
}

// readOnlyOrigin is an origin without its Forward method.
type readOnlyOrigin struct{ o edge.Origin }

func (r readOnlyOrigin) Fetch(ctx context.Context, req *origin.Request) (*origin.Response, error) {
	return r.o.Fetch(ctx, req)
}

// originHealth turns the group's health into the heartbeat's.
func originHealth(g *failover.Group) []bus.OriginHealth {
	h := g.Health()
	out := make([]bus.OriginHealth, len(h))
	for i, m := range h {
		out[i] = bus.OriginHealth{Name: m.Name, Healthy: m.Healthy, State: string(m.State)}
	}
	return out
}

func newOrigin(ctx context.Context, c edge.OriginConfig) (edge.Origin, error) {
	switch c.Type {
	case "s3":
		o, err := s3origin.New(ctx, s3origin.Config{Config: c.Config, Prefix: c.Prefix, Timeout: c.Timeout, MaxConns: c.MaxConns})
		if err != nil {
			return nil, fmt.Errorf("s3 origin: %w", err)
		}
		return o, nil
	case "http":
		o, err := origin.NewHTTP(origin.HTTPConfig{BaseURL: c.Endpoint, Timeout: c.Timeout, MaxConns: c.MaxConns, Host: c.Host})
		if err != nil {
			return nil, fmt.Errorf("http origin: %w", err)
		}
		return o, nil
	}
	return nil, fmt.Errorf("origin.type %q: use s3 or http", c.Type)
}
