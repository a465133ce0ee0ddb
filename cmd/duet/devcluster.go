package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/origin/replicate"
	"github.com/duetcdn/duet/origin/upload"
	"github.com/duetcdn/duet/purge"
	"github.com/duetcdn/duet/steering"
)

// devLayout is where every part of the dev cluster listens. Ports are the well-known defaults plus
// an offset, so two clusters (or a test) can run side by side.
type devLayout struct {
	offset int
}

func (l devLayout) addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port+l.offset) }

// Region i's parts; edge j of region i.
func (l devLayout) control() string        { return l.addr(7070) }
func (l devLayout) nats(i int) int         { return 4222 + i + l.offset }
func (l devLayout) leaf() int              { return 7422 + l.offset }
func (l devLayout) minio(i int) string     { return l.addr(9000 + 10*i) }
func (l devLayout) steering(i int) string  { return l.addr(8400 + i) }
func (l devLayout) purge(i int) string     { return l.addr(8500 + i) }
func (l devLayout) replicate(i int) string { return l.addr(9180 + i) }

// Edges differ by address, not port: HLS content steering moves players between pathways by
// replacing the host name only (URI-REPLACEMENT HOST), so every edge listens on the same port, each
// on its own loopback address (127.0.0.0/8 is all loopback on Linux): region i, edge j is
// 127.0.(10+i).(1+j).
func (l devLayout) edgeIP(i, j int) string { return fmt.Sprintf("127.0.%d.%d", 10+i, 1+j) }
func (l devLayout) edge(i, j int) string   { return l.edgeIP(i, j) + ":" + strconv.Itoa(8080+l.offset) }
func (l devLayout) edgeAdm(i, j int) string {
	return l.edgeIP(i, j) + ":" + strconv.Itoa(9090+l.offset)
}

// all lists every address the cluster will listen on, with what it is for (for the "port in use"
// check before anything starts).
func (l devLayout) all(regions, edges int) map[string]string {
	m := map[string]string{l.control(): "control API", l.addr(7422): "NATS leafnode link"}
	for i := range regions {
		m[l.addr(4222+i)] = fmt.Sprintf("NATS of region %d", i+1)
		m[l.minio(i)] = fmt.Sprintf("MinIO of region %d", i+1)
		m[l.steering(i)] = fmt.Sprintf("steering of region %d", i+1)
		m[l.purge(i)] = fmt.Sprintf("purge API of region %d", i+1)
		m[l.replicate(i)] = fmt.Sprintf("replicator of region %d", i+1)
		for j := range edges {
			m[l.edge(i, j)] = fmt.Sprintf("edge %d of region %d", j+1, i+1)
			m[l.edgeAdm(i, j)] = fmt.Sprintf("admin of edge %d of region %d", j+1, i+1)
		}
	}
	return m
}

// devRegion is one region of the dev cluster.
type devRegion struct {
	name     string
	lat, lon float64
	nats     *server.Server
	natsURL  string
	minio    *minioproc.Server
	purge    *devProc
	steering *devProc
	replica  *devProc // nil until the replicator exists
	edges    []*devProc
	bucket   string

	mu sync.Mutex
	up bool
}

// devCluster is everything `duet dev` runs.
type devCluster struct {
	dir     string
	layout  devLayout
	exe     string
	env     []string
	token   string
	edges   int // per region
	regions []*devRegion
	log     *slog.Logger
}

// devPurgeToken is the purge API's bearer token in dev mode (printed; loopback only).
const devPurgeToken = "duet-dev-purge-token"

// startNATS starts every region's embedded NATS, the first one the hub the others link to as
// leafnodes (a tree, as internal/bus requires).
func (c *devCluster) startNATS(ctx context.Context) error {
	for i, r := range c.regions {
		cfg := natsserver.Config{Region: r.name, Port: c.layout.nats(i), StoreDir: filepath.Join(c.dir, "nats", r.name),
			Logger: c.log.With("nats", r.name)}
		if i == 0 {
			cfg.LeafPort = c.layout.leaf()
		} else {
			cfg.LeafRemotes = []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", c.layout.leaf())}
		}
		s, err := natsserver.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("start NATS of region %s: %w", r.name, err)
		}
		r.nats, r.natsURL = s, s.ClientURL()
	}
	return nil
}

// writeConfig writes a role's configuration as YAML under dir/config, so the operator can read
// (and reuse) exactly what each process runs with.
func (c *devCluster) writeConfig(name string, cfg any) (string, error) {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode %s config: %w", name, err)
	}
	p := filepath.Join(c.dir, "config", name+".yaml")
	if err := os.WriteFile(p, append([]byte("# written by `duet dev` at every start\n"), b...), 0o644); err != nil {
		return "", fmt.Errorf("write %s config: %w", name, err)
	}
	return p, nil
}

func (c *devCluster) proc(name, health string, args ...string) *devProc {
	return &devProc{name: name, exe: c.exe, args: append(args, "--log-level", "info"), env: c.env,
		log: filepath.Join(c.dir, "logs", name+".log"), health: health}
}

func (c *devCluster) regionNames() []string {
	names := make([]string, len(c.regions))
	for i, r := range c.regions {
		names[i] = r.name
	}
	return names
}

// prepare writes every role's configuration and builds (without starting) its processes.
func (c *devCluster) prepare() error {
	for _, d := range []string{"config", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	var regions []steering.Region
	up := uploadSettings{Region: c.regions[0].name, Files: upload.DefaultFiles, Parts: upload.DefaultParts, PartSize: upload.DefaultPartSize}
	var buckets []replicate.RegionConfig
	for _, r := range c.regions {
		regions = append(regions, steering.Region{Name: r.name, Lat: r.lat, Lon: r.lon})
		up.Regions = append(up.Regions, c.uploadRegion(r))
		buckets = append(buckets, replicate.RegionConfig{Name: r.name, Endpoint: r.minio.Endpoint(), Bucket: r.bucket,
			AccessKey: r.minio.AccessKey(), SecretKey: r.minio.SecretKey()})
	}
	// `duet upload --config <dir>/config/upload.yaml` puts content into the dev origins.
	if _, err := c.writeConfig("upload", up); err != nil {
		return err
	}
	for i, r := range c.regions {
		nats := natsConfig{URLs: []string{r.natsURL}}

		pc := purgeServeConfig{ServiceConfig: purge.DefaultServiceConfig(), NATS: nats}
		pc.Region, pc.Regions, pc.Listen = r.name, c.regionNames(), c.layout.purge(i)
		pc.Tokens = []purge.Token{{Name: "dev", Secret: c.token}}
		p, err := c.writeConfig("purge-"+r.name, pc)
		if err != nil {
			return err
		}
		r.purge = c.proc("purge-"+r.name, "http://"+pc.Listen+"/readyz", "purge", "serve", "--config", p)

		rc := defaultReplicateRoleConfig()
		rc.Name, rc.Region, rc.Regions, rc.NATS, rc.Admin = "replicate-"+r.name, r.name, buckets, nats, c.layout.replicate(i)
		rc.SweepInterval = time.Minute
		if p, err = c.writeConfig("replicate-"+r.name, rc); err != nil {
			return err
		}
		r.replica = c.proc("replicate-"+r.name, "http://"+rc.Admin+"/readyz", "replicate", "--config", p)

		sc := steeringRoleConfig{Config: steering.DefaultConfig(), Name: r.name, NATS: nats}
		sc.Listen, sc.Regions, sc.DefaultRegion = c.layout.steering(i), regions, r.name
		if p, err = c.writeConfig("steering-"+r.name, sc); err != nil {
			return err
		}
		r.steering = c.proc("steering-"+r.name, "http://"+sc.Listen+"/healthz", "steering", "--config", p)

		steer := "http://" + sc.Listen
		r.edges = nil
		for j := range c.edges {
			ec := defaultEdgeRoleConfig()
			ec.Name, ec.Region = fmt.Sprintf("%s-%d", r.name, j+1), r.name
			ec.Listen, ec.AdminListen = c.layout.edge(i, j), c.layout.edgeAdm(i, j)
			// Its own region's origin first, then the others': a dead origin costs a miss one
			// failover, not an error.
			ec.Origin = c.originOf(r)
			for _, other := range c.regions {
				if other != r {
					ec.Origin.Fallbacks = append(ec.Origin.Fallbacks, c.originOf(other))
				}
			}
			ec.Origin.BreakerFailures, ec.Origin.BreakerCooldown = 3, time.Second
			ec.Memory = edge.MemoryConfig{MaxBytes: 64 << 20, MaxObjectBytes: 4 << 20}
			ec.Disk = edge.DiskConfig{Dir: filepath.Join(c.dir, "cache", ec.Name), MaxBytes: 512 << 20}
			ec.DrainDelay, ec.ShutdownTimeout = 500*time.Millisecond, 5*time.Second
			ec.NATS, ec.Purge.Regions = nats, c.regionNames()
			ec.Steering = steeringInjectConfig{HLSServerURI: steer + "/v1/steer/hls", DASHServerURI: steer + "/v1/steer/dash"}
			if p, err = c.writeConfig("edge-"+ec.Name, ec); err != nil {
				return err
			}
			r.edges = append(r.edges, c.proc(ec.Name, "http://"+ec.AdminListen+"/readyz", "edge", "--config", p))
		}
	}
	return nil
}

func (c *devCluster) uploadRegion(r *devRegion) upload.Region {
	return upload.Region{Name: r.name, Endpoint: r.minio.Endpoint(), Bucket: r.bucket,
		AccessKey: r.minio.AccessKey(), SecretKey: r.minio.SecretKey(), PathStyle: true}
}

func (c *devCluster) originOf(r *devRegion) edge.OriginConfig {
	return edge.OriginConfig{Name: r.name, Type: "s3", Endpoint: r.minio.Endpoint(), Bucket: r.bucket,
		AccessKey: r.minio.AccessKey(), SecretKey: r.minio.SecretKey(), Timeout: 5 * time.Second}
}

// startRegion starts (or restarts) every process of a region, in dependency order.
func (c *devCluster) startRegion(ctx context.Context, r *devRegion) error {
	if r.minio != nil {
		if err := r.minio.Restart(ctx); err != nil {
			return fmt.Errorf("restart MinIO of %s: %w", r.name, err)
		}
	}
	procs := []*devProc{r.purge}
	if r.replica != nil {
		procs = append(procs, r.replica)
	}
	procs = append(procs, r.steering)
	if err := startAll(ctx, procs); err != nil {
		return err
	}
	if err := startAll(ctx, r.edges); err != nil {
		return err
	}
	r.mu.Lock()
	r.up = true
	r.mu.Unlock()
	return nil
}

// stopRegion takes a whole region down as an outage would: its edges, steering, purge API,
// replicator and origin, all at once (kill) or gracefully. Its NATS stays: it is the backbone's
// hub in dev, and losing it would cut the other region off from its own consumers.
func (c *devCluster) stopRegion(r *devRegion, kill bool) {
	r.mu.Lock()
	r.up = false
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range r.allProcs() {
		wg.Go(func() { p.stop(kill) })
	}
	wg.Go(func() { _ = r.minio.Stop() })
	wg.Wait()
}

func (r *devRegion) allProcs() []*devProc {
	ps := append([]*devProc{}, r.edges...)
	ps = append(ps, r.steering, r.purge)
	if r.replica != nil {
		ps = append(ps, r.replica)
	}
	return ps
}

func (r *devRegion) isUp() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up
}

// startAll starts processes in parallel and waits for all of them to be ready.
func startAll(ctx context.Context, ps []*devProc) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { errs[i] = p.start(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// shutdown stops everything in the reverse order of start: edges first (so viewers drain), then
// the services, then the origins and NATS.
func (c *devCluster) shutdown() {
	var wg sync.WaitGroup
	for _, r := range c.regions {
		for _, p := range r.edges {
			wg.Go(func() { p.stop(false) })
		}
	}
	wg.Wait()
	for _, r := range c.regions {
		for _, p := range []*devProc{r.steering, r.purge, r.replica} {
			if p != nil {
				wg.Go(func() { p.stop(false) })
			}
		}
	}
	wg.Wait()
	for _, r := range c.regions {
		if r.minio != nil {
			wg.Go(func() { _ = r.minio.Stop() })
		}
	}
	wg.Wait()
	for i := len(c.regions) - 1; i >= 0; i-- {
		if s := c.regions[i].nats; s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
}

func (c *devCluster) findEdge(name string) *devProc {
	for _, r := range c.regions {
		for _, e := range r.edges {
			if e.name == name {
				return e
			}
		}
	}
	return nil
}

func (c *devCluster) findRegion(name string) *devRegion {
	for _, r := range c.regions {
		if r.name == name {
			return r
		}
	}
	return nil
}
