package devcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/upload"
	"github.com/duetcdn/duet/steering"
)

// region is one region of the dev cluster.
type region struct {
	name     string
	lat, lon float64
	nats     *server.Server
	natsURL  string
	minio    *minioproc.Server
	purge    *proc
	steering *proc
	replica  *proc // nil until the replicator exists
	edges    []*proc
	bucket   string

	mu sync.Mutex
	up bool
}

// cluster is everything `duet dev` runs.
type cluster struct {
	dir     string
	layout  layout
	exe     string
	env     []string
	sec     secrets
	sign    signing // the protected stream's key and token
	edges   int     // per region
	regions []*region
	ids     *natsIdentities
	roles   Roles
	log     *slog.Logger
	tls     *devTLS // nil: plain HTTP
}

// startNATS starts every region's embedded NATS, the first one the hub the others link to as
// leafnodes (a tree, as internal/bus requires). Each admits only its region's identities (made
// here, their seeds under dir/secrets/nats), and the link authenticates with a password.
func (c *cluster) startNATS(ctx context.Context) error {
	ids, err := newIdentities(c.dir, c.regionNames(), c.edges)
	if err != nil {
		return err
	}
	c.ids = ids
	for i, r := range c.regions {
		cfg := natsserver.Config{Region: r.name, Port: c.layout.nats(i), StoreDir: filepath.Join(c.dir, "nats", r.name),
			Identities: ids.byRegion[r.name], Logger: c.log.With("nats", r.name)}
		if i == 0 {
			cfg.LeafPort = c.layout.leaf()
			cfg.LeafUser, cfg.LeafPassword = ids.leafUser, ids.leafPass
		} else {
			cfg.LeafRemotes = []string{(&url.URL{Scheme: "nats-leaf", User: url.UserPassword(ids.leafUser, ids.leafPass),
				Host: fmt.Sprintf("127.0.0.1:%d", c.layout.leaf())}).String()}
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
func (c *cluster) writeConfig(name string, cfg any) (string, error) {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode %s config: %w", name, err)
	}
	// Configs hold tokens and origin credentials: only their owner may read them.
	p := filepath.Join(c.dir, "config", name+".yaml")
	if err := writePrivate(p, append([]byte("# written by `duet dev` at every start\n"), b...)); err != nil {
		return "", fmt.Errorf("%s config: %w", name, err)
	}
	return p, nil
}

func (c *cluster) proc(name, health string, args ...string) *proc {
	return &proc{name: name, exe: c.exe, args: append(args, "--log-level", "info"), env: c.env,
		log: filepath.Join(c.dir, "logs", name+".log"), health: health}
}

func (c *cluster) regionNames() []string {
	names := make([]string, len(c.regions))
	for i, r := range c.regions {
		names[i] = r.name
	}
	return names
}

// prepare writes every role's configuration and builds (without starting) its processes.
func (c *cluster) prepare() error {
	for _, d := range []string{"config", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	var regions []steering.Region
	var buckets, uploads []Bucket // the replicator's and `duet upload`'s credentials
	for i, r := range c.regions {
		// Each steering sends players' reloads to another region's steering (RELOAD-URI).
		regions = append(regions, steering.Region{Name: r.name, Lat: r.lat, Lon: r.lon, SteeringURL: c.tls.scheme() + c.layout.steering(i)})
		buckets = append(buckets, c.bucketOf(r, replicatorUser, c.sec.ReplicatorOrigin))
		uploads = append(uploads, c.bucketOf(r, uploadUser, c.sec.UploadOrigin))
	}
	// `duet upload --config <dir>/config/upload.yaml` puts content into the dev origins.
	if _, err := c.writeConfig("upload", c.roles.Upload(UploadSpec{Region: c.regions[0].name, Buckets: uploads})); err != nil {
		return err
	}
	for i, r := range c.regions {
		ps := PurgeSpec{Region: r.name, Regions: c.regionNames(), Listen: c.layout.purge(i), Token: c.sec.PurgeToken, NATSURL: r.natsURL,
			NATSNKeyFile: c.ids.seeds["purge-"+r.name]}
		p, err := c.writeConfig("purge-"+r.name, c.roles.Purge(ps))
		if err != nil {
			return err
		}
		r.purge = c.proc("purge-"+r.name, "http://"+ps.Listen+"/readyz", "purge", "serve", "--config", p)

		rs := ReplicateSpec{Name: "replicate-" + r.name, Region: r.name, Buckets: buckets, NATSURL: r.natsURL,
			NATSNKeyFile: c.ids.seeds["replicate-"+r.name],
			Admin:        c.layout.replicate(i), SweepInterval: time.Minute}
		if p, err = c.writeConfig("replicate-"+r.name, c.roles.Replicate(rs)); err != nil {
			return err
		}
		r.replica = c.proc("replicate-"+r.name, "http://"+rs.Admin+"/readyz", "replicate", "--config", p)

		ss := SteeringSpec{Name: r.name, Listen: c.layout.steering(i), Regions: regions, DefaultRegion: r.name, NATSURL: r.natsURL,
			NATSNKeyFile: c.ids.seeds["steering-"+r.name], EdgeURLs: c.edgeURLs(), TLS: c.tlsSpec()}
		if p, err = c.writeConfig("steering-"+r.name, c.roles.Steering(ss)); err != nil {
			return err
		}
		r.steering = c.proc("steering-"+r.name, c.tls.scheme()+ss.Listen+"/healthz", "steering", "--config", p)
		if c.tls != nil {
			r.steering.client = c.tls.client(2 * time.Second)
		}

		steer := c.tls.scheme() + ss.Listen
		r.edges = nil
		for j := range c.edges {
			es := EdgeSpec{Name: edgeName(r.name, j), Region: r.name, Listen: c.layout.edge(i, j),
				Admin: c.layout.edgeAdm(i, j), AdminToken: c.sec.EdgeAdminToken, NATSURL: r.natsURL, NATSNKeyFile: c.ids.seeds[edgeName(r.name, j)], PurgeRegions: c.regionNames(),
				HLSSteeringURI: steer + "/v1/steer/hls", DASHSteeringURI: steer + "/v1/steer/dash", SignedURLs: c.sign.cfg, TLS: c.tlsSpec()}
			// Peer fill over plain HTTP only: peers reach each other at their announced URL,
			// and the edges' peer client trusts the system's CAs, not --https's local one.
			if c.tls == nil {
				es.PeerSecret = c.sec.peerSecret(r.name)
			}
			// Its own region's origin first, then the others': a dead origin costs a miss one
			// failover, not an error.
			// Edges read with credentials that can only read.
			es.Origins = []Bucket{c.bucketOf(r, edgeUser, c.sec.EdgeOrigin)}
			for _, other := range c.regions {
				if other != r {
					es.Origins = append(es.Origins, c.bucketOf(other, edgeUser, c.sec.EdgeOrigin))
				}
			}
			es.CacheDir = filepath.Join(c.dir, "cache", es.Name)
			if p, err = c.writeConfig("edge-"+es.Name, c.roles.Edge(es)); err != nil {
				return err
			}
			r.edges = append(r.edges, c.proc(es.Name, "http://"+es.Admin+"/readyz", "edge", "--config", p))
		}
	}
	return nil
}

// edgeURLs are the public URLs of every dev edge: the only ones steering takes from heartbeats.
func (c *cluster) edgeURLs() []string {
	var urls []string
	for i := range c.regions {
		for j := range c.edges {
			urls = append(urls, c.tls.scheme()+c.layout.edge(i, j))
		}
	}
	return urls
}

// bucketOf is region r's origin bucket, reached as MinIO user user (see originUsers).
func (c *cluster) bucketOf(r *region, user, secret string) Bucket {
	return Bucket{Region: r.name, S3: s3conf.Config{Endpoint: r.minio.Endpoint(), Bucket: r.bucket, AccessKey: user, SecretKey: secret,
		PathStyle: new(true)}}
}

// uploadRegion is region r's bucket with the root credentials, for `duet dev` itself.
func (c *cluster) uploadRegion(r *region) upload.Region {
	return upload.Region{Name: r.name, Config: s3conf.Config{Endpoint: r.minio.Endpoint(), Bucket: r.bucket,
		AccessKey: r.minio.AccessKey(), SecretKey: r.minio.SecretKey(), PathStyle: new(true)}}
}

// startRegion starts (or restarts) every process of a region, in dependency order.
func (c *cluster) startRegion(ctx context.Context, r *region) error {
	if r.minio != nil {
		if err := r.minio.Restart(ctx); err != nil {
			return fmt.Errorf("restart MinIO of %s: %w", r.name, err)
		}
	}
	procs := []*proc{r.purge}
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
func (c *cluster) stopRegion(r *region, kill bool) {
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

func (r *region) allProcs() []*proc {
	ps := append([]*proc{}, r.edges...)
	ps = append(ps, r.steering, r.purge)
	if r.replica != nil {
		ps = append(ps, r.replica)
	}
	return ps
}

func (r *region) isUp() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up
}

// startAll starts processes in parallel and waits for all of them to be ready.
func startAll(ctx context.Context, ps []*proc) error {
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
func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for _, r := range c.regions {
		for _, p := range r.edges {
			wg.Go(func() { p.stop(false) })
		}
	}
	wg.Wait()
	for _, r := range c.regions {
		for _, p := range []*proc{r.steering, r.purge, r.replica} {
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

func (c *cluster) findEdge(name string) *proc {
	for _, r := range c.regions {
		for _, e := range r.edges {
			if e.name == name {
				return e
			}
		}
	}
	return nil
}

func (c *cluster) findRegion(name string) *region {
	for _, r := range c.regions {
		if r.name == name {
			return r
		}
	}
	return nil
}
