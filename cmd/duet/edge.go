package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/edge/announce"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/failover"
	"github.com/duetcdn/duet/origin/s3origin"
	"github.com/duetcdn/duet/purge"
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

// edgeRoleConfig is `duet edge`'s configuration: the edge itself, and how it joins the
// backbone (heartbeats, the purge stream) when NATS is configured.
type edgeRoleConfig struct {
	edge.Config `yaml:",inline"`
	// PublicURL is where viewers reach this edge (announced in heartbeats). Default
	// http://<listen>.
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
	// StalenessBound: cut off from any region's purges for longer, the edge revalidates every
	// hit until it has caught up. Default 10s.
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

func edgeCommand(logger func() (*slog.Logger, error), environ []string) *cobra.Command {
	cfg := defaultEdgeRoleConfig()
	return roleCommand(&cobra.Command{
		Use:   "edge",
		Short: "Run an edge cache node",
		Long: `Run an edge cache node. Settings come from the defaults, then --config (YAML), then
DUET_EDGE_* environment variables, then flags; every setting has all three spellings
(memory.max_bytes, DUET_EDGE_MEMORY_MAX_BYTES, --memory.max_bytes). See README.md.`,
	}, "edge", &cfg, logger, environ, func(ctx context.Context, log *slog.Logger) error {
		// The memory tier's budget bounds the process (one edge per process): the Go heap is held
		// near it, the collector working harder as it nears the limit, unless the operator set
		// GOMEMLIMIT. Not in runEdge: tests run several edges in one process.
		if os.Getenv("GOMEMLIMIT") == "" && cfg.Validate() == nil {
			debug.SetMemoryLimit(cfg.Config.MemoryLimit())
		}
		return runEdge(ctx, cfg, log)
	})
}

// runEdge wires an edge from its config and serves until ctx ends. With NATS configured it also
// runs the purge consumer (the cache is untrusted until it has caught up) and the heartbeat.
func runEdge(ctx context.Context, cfg edgeRoleConfig, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	reg := newRegistry()
	o, group, err := newOrigins(ctx, cfg.Origin, reg, log)
	if err != nil {
		return err
	}
	deps := edge.Deps{Origin: o, Logger: log, Registry: reg, Gatherer: reg}
	if rw := cfg.Steering.rewriter(cfg.Region, cfg.publicURL()); rw != nil {
		deps.Rewriter = rw
	}
	srv, err := edge.New(ctx, cfg.Config, deps)
	if err != nil {
		return err
	}
	if len(cfg.NATS.URLs) == 0 {
		return srv.ListenAndServe(ctx)
	}
	srv.SetCacheTrusted(false) // until the purge consumer has caught up
	nc, err := bus.Connect(ctx, cfg.NATS.conn("duet-edge-"+cfg.Name), log)
	if err != nil {
		srv.Close()
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Drain() //nolint:errcheck // best effort at exit
	regions := cfg.Purge.Regions
	if len(regions) == 0 {
		regions = []string{cfg.Region}
	}
	cons, err := purge.NewConsumer(purge.ConsumerConfig{Edge: cfg.Name, Region: cfg.Region, Regions: regions,
		StalenessBound: cfg.Purge.StalenessBound}, nc, edgeApplier{srv}, log, reg)
	if err != nil {
		srv.Close()
		return err
	}
	url := cfg.publicURL()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	done := make(chan struct{}, 2)
	go func() { _ = cons.Run(bg); done <- struct{}{} }()
	go func() {
		acfg := announce.Config{Edge: cfg.Name, Region: cfg.Region, URL: url, Capacity: int64(srv.MaxConns())}
		if group != nil {
			acfg.Origins = func() []bus.OriginHealth { return originHealth(group) }
		}
		_ = announce.Run(bg, nc, acfg, srv, log)
		done <- struct{}{}
	}()
	// The heartbeat and the consumer outlive the viewer listener: during the drain the edge
	// still announces "draining" and still applies purges.
	err = srv.ListenAndServe(ctx)
	stopBG()
	<-done
	<-done
	return err
}

func (c edgeRoleConfig) publicURL() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	return "http://" + c.Listen
}

// edgeApplier lets the purge consumer drive an edge.
type edgeApplier struct{ *edge.Server }

func (a edgeApplier) ApplyPurge(ctx context.Context, p bus.Purge) (int, error) {
	res, err := a.Purge(ctx, edge.PurgeRequest{URLs: p.URLs, Prefixes: p.Prefixes, Tags: p.Tags, Soft: p.Soft})
	return res.Entries, err
}

var _ purge.Applier = edgeApplier{}

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
	g, err := failover.New(failover.Config{Members: members, Failures: c.BreakerFailures, Cooldown: c.BreakerCooldown,
		Registry: reg, Logger: log})
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
		pathStyle := c.PathStyle == nil || *c.PathStyle
		o, err := s3origin.New(ctx, s3origin.Config{
			Endpoint: c.Endpoint, Region: c.S3Region, Bucket: c.Bucket, Prefix: c.Prefix, PathStyle: pathStyle,
			AccessKey: c.AccessKey, SecretKey: c.SecretKey, Timeout: c.Timeout, MaxConns: c.MaxConns,
		})
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
