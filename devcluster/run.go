// Package devcluster is `duet dev`: a whole Duet CDN on one machine. Per region it runs an
// embedded NATS (the regions linked), a MinIO origin, and the roles (purge API, replicator,
// steering, edges) each as its own process of the duet binary, supervised so that its control API
// can kill and restart them; it uploads a sample stream and prints every URL. cmd/duet supplies
// the roles' configurations (Roles).
package devcluster

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/sample"
	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/replicate"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/origin/s3origin"
	"github.com/duetcdn/duet/origin/upload"
	"github.com/duetcdn/duet/purge"
	"github.com/duetcdn/duet/steering"
)

// Config is what `duet dev` runs.
type Config struct {
	// Dir holds the origins' data, caches, NATS streams, configs and logs; it survives restarts.
	Dir string
	// Regions are the regions, as name:lat:lon, comma-separated (at most 5).
	Regions string
	// Edges is the number of edges per region (1 to 9).
	Edges int
	// PortOffset is added to every port (PortsHelp lists them).
	PortOffset int
	// MinIOBin is the MinIO server binary.
	MinIOBin string
	// Bucket is the origin bucket, the same name in every region.
	Bucket string
	// HTTPS makes the edges and steering serve HTTPS with a local CA's certificate (devtls.go).
	HTTPS bool
}

// DefaultConfig is `duet dev`'s defaults.
func DefaultConfig() Config {
	return Config{Dir: ".duet", Regions: "eu-west:53.35:-6.26,us-east:38.9:-77.04", Edges: 2, MinIOBin: "bin/minio", Bucket: "duet-dev"}
}

// samplePrefix is where the sample stream lives, in the buckets and in viewers' URLs.
const samplePrefix = "vod/sample/"

// Run starts the cluster (every role as its own process of exe, the duet binary, configured
// through roles), prints its URLs to stdout and runs until ctx ends, then stops everything.
// environ is the roles' environment (nil: this process's).
func Run(ctx context.Context, o Config, roles Roles, exe string, log *slog.Logger, stdout io.Writer, environ []string) error {
	start := time.Now()
	c, err := newCluster(ctx, o, roles, exe, log, environ)
	if err != nil {
		return err
	}
	defer c.shutdown()
	if err := c.startNATS(ctx); err != nil {
		return err
	}
	if err := c.startOrigins(ctx, o); err != nil {
		return err
	}
	files, err := c.uploadSample(ctx)
	if err != nil {
		return err
	}
	if err := c.prepare(); err != nil {
		return err
	}
	if err := c.startRegions(ctx); err != nil {
		return err
	}
	if err := c.waitReplicated(ctx, files, 60*time.Second); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.layout.control())
	if err != nil {
		return fmt.Errorf("control API on %s: %w", c.layout.control(), err)
	}
	h, err := c.controlHandler()
	if err != nil {
		_ = ln.Close()
		return err
	}
	ctl := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ctl.Serve(ln) }()
	defer ctl.Close()
	// The sample was just uploaded again: whatever warm caches from an earlier run hold of it may
	// be older, so purge it the way an origin change would (and so the demo starts with a MISS).
	pc := &purge.Client{BaseURL: "http://" + c.layout.purge(0), Token: c.sec.PurgeToken}
	if _, err := pc.Purge(ctx, purge.Request{Target: purgereq.Target{Prefixes: []string{"/" + samplePrefix, "/" + protectedPrefix}}, Wait: "5s"}); err != nil {
		return fmt.Errorf("purge the sample at start: %w", err)
	}
	if err := c.waitTrusted(ctx, 20*time.Second); err != nil {
		return err
	}
	c.printWelcome(stdout, files, time.Since(start))
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping: edges first, then the services, the origins and NATS")
	return nil
}

func newCluster(ctx context.Context, o Config, roles Roles, exe string, log *slog.Logger, environ []string) (*cluster, error) {
	if o.Edges < 1 || o.Edges > 9 {
		return nil, fmt.Errorf("--edges %d: use 1 to 9", o.Edges)
	}
	c := &cluster{dir: o.Dir, layout: layout{offset: o.PortOffset}, exe: exe, env: environ,
		edges: o.Edges, roles: roles, log: log}
	if len(c.env) == 0 {
		c.env = os.Environ()
	}
	var err error
	if c.sign, err = newSigning(time.Now()); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, s := range strings.Split(o.Regions, ",") {
		var r steering.Region
		if err := r.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
			return nil, fmt.Errorf("--regions %q: %w (write name:lat:lon,name:lat:lon)", o.Regions, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("--regions: %s appears twice", r.Name)
		}
		seen[r.Name] = true
		c.regions = append(c.regions, &region{name: r.Name, lat: r.Lat, lon: r.Lon, bucket: o.Bucket})
	}
	if len(c.regions) > 5 {
		return nil, fmt.Errorf("--regions: at most 5 regions on one machine")
	}
	if err := c.layout.checkPorts(len(c.regions), o.Edges); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.MinIOBin); err != nil {
		return nil, fmt.Errorf("MinIO server binary not found at %s: run \"make tools\" (or pass --minio-bin)", o.MinIOBin)
	}
	addrs := c.layout.all(len(c.regions), o.Edges)
	for _, a := range slices.Sorted(maps.Keys(addrs)) {
		if err := portFree(ctx, a); err != nil {
			return nil, fmt.Errorf("%s (%s): %w; stop what uses it, or move every port with --port-offset (make run ARGS='--port-offset 1000')", a, addrs[a], err)
		}
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	if c.sec, err = loadSecrets(o.Dir); err != nil {
		return nil, err
	}
	if o.HTTPS {
		if c.tls, err = loadDevTLS(o.Dir, time.Now()); err != nil {
			return nil, fmt.Errorf("the dev CA and certificate (--https): %w", err)
		}
	}
	return c, nil
}

// startOrigins starts every region's MinIO (in parallel) and makes sure its bucket exists.
func (c *cluster) startOrigins(ctx context.Context, o Config) error {
	errs := make([]error, len(c.regions))
	var wg sync.WaitGroup
	for i, r := range c.regions {
		wg.Go(func() {
			logf, err := openLog(filepath.Join(c.dir, "logs", "minio-"+r.name+".log"))
			if err != nil {
				errs[i] = fmt.Errorf("open MinIO log: %w", err)
				return
			}
			// MinIO publishes its bucket events into the region's origin stream (the replicators
			// read them there); its queue directory keeps them while NATS is unreachable.
			notify := &minioproc.NotifyNATS{Address: strings.TrimPrefix(r.natsURL, "nats://"), Subject: bus.OriginEventSubject(r.name),
				Username: c.ids.origin[r.name][0], Password: c.ids.origin[r.name][1]}
			mc := minioproc.Config{Bin: o.MinIOBin, Dir: filepath.Join(c.dir, "minio", r.name), Addr: c.layout.minio(i), Stdout: logf,
				NotifyNATS: notify, SecretKey: c.sec.MinIORoot}
			if r.minio, err = minioproc.Start(ctx, mc); err != nil {
				errs[i] = fmt.Errorf("start MinIO of %s: %w", r.name, err)
				return
			}
			s3o, err := c.s3(ctx, r)
			if err == nil {
				err = s3o.EnsureBucket(ctx)
			}
			if err != nil {
				errs[i] = fmt.Errorf("create bucket %s in %s: %w", r.bucket, r.name, err)
				return
			}
			cl, err := upload.NewClient(ctx, c.uploadRegion(r), nil, 4)
			if err == nil {
				err = replicate.EnsureNotification(ctx, cl, r.bucket, notify.ARN())
			}
			if err != nil {
				errs[i] = fmt.Errorf("bucket notifications of %s in %s: %w", r.bucket, r.name, err)
				return
			}
			// Each role gets its own MinIO user; the root credentials stay here.
			for _, u := range c.sec.originUsers(r.bucket) {
				if err := r.minio.AddUser(ctx, u); err != nil {
					errs[i] = fmt.Errorf("MinIO user of %s: %w", r.name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *cluster) s3(ctx context.Context, r *region) (*s3origin.Origin, error) {
	return s3origin.New(ctx, s3origin.Config{Config: s3conf.Config{Endpoint: r.minio.Endpoint(), Bucket: r.bucket,
		AccessKey: r.minio.AccessKey(), SecretKey: r.minio.SecretKey()}})
}

// uploadSample puts the sample stream into the first region's bucket (the replicators copy it to
// the others), skipping what is already there unchanged, as `duet upload` does, and with the
// Cache-Control `duet upload` gives each kind of file (a player test then sees what production
// viewers see, not a browser's heuristic caching of header-less objects).
func (c *cluster) uploadSample(ctx context.Context) ([]sample.File, error) {
	files := sample.Stream()
	r := c.regions[0]
	s3o, err := c.s3(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, prefix := range streams {
		for _, f := range files {
			cc := upload.DefaultCacheControl(upload.Classify(f.Path), f.Path, f.Body)
			if sameObject(ctx, s3o, prefix+f.Path, f.Body, cc) {
				continue
			}
			if err := s3o.Put(ctx, prefix+f.Path, bytes.NewReader(f.Body), int64(len(f.Body)), f.ContentType, cc,
				map[string]string{"surrogate-key": "sample"}); err != nil {
				return nil, fmt.Errorf("upload sample %s to %s: %w", prefix+f.Path, r.name, err)
			}
		}
	}
	return files, nil
}

// sameObject reports whether the bucket already holds body at key with cacheControl: a HEAD
// compares the body's MD5 (a single-part object's ETag) and the Cache-Control (a bucket from
// before the sample had one is uploaded again).
func sameObject(ctx context.Context, s3o *s3origin.Origin, key string, body []byte, cacheControl string) bool {
	sum := md5.Sum(body)
	resp, err := s3o.Fetch(ctx, &origin.Request{Path: "/" + key, Head: true})
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.Status == http.StatusOK && resp.Header.Get("Etag") == `"`+hex.EncodeToString(sum[:])+`"` &&
		resp.Header.Get("Cache-Control") == cacheControl
}

// waitReplicated waits until every region's bucket holds the sample (the replicators copy it from
// the first region), so that every edge can serve it from its own region's origin.
func (c *cluster) waitReplicated(ctx context.Context, files []sample.File, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for _, r := range c.regions[1:] {
		s3o, err := c.s3(ctx, r)
		if err != nil {
			return err
		}
		for _, f := range files {
			cc := upload.DefaultCacheControl(upload.Classify(f.Path), f.Path, f.Body)
			for !sameObject(ctx, s3o, protectedPrefix+f.Path, f.Body, cc) || !sameObject(ctx, s3o, samplePrefix+f.Path, f.Body, cc) {
				select {
				case <-ctx.Done():
					return fmt.Errorf("the sample did not reach %s's origin in %s (see %s/logs/replicate-%s.log)", r.name, limit, c.dir, r.name)
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// startRegions starts every region's services and edges, the regions in parallel.
func (c *cluster) startRegions(ctx context.Context) error {
	errs := make([]error, len(c.regions))
	var wg sync.WaitGroup
	for i, r := range c.regions {
		wg.Go(func() { errs[i] = c.startRegion(ctx, r) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *cluster) printWelcome(w io.Writer, files []sample.File, took time.Duration) {
	l := c.layout
	steer := c.tls.scheme() + l.steering(0)
	master := "/" + samplePrefix + "master.m3u8"
	seg := "/" + samplePrefix + firstSegment(files)
	var b strings.Builder
	fmt.Fprintf(&b, "\nDuet dev is up in %s: %d regions, %d edges each. State, configs and logs live in %s; Ctrl-C stops everything.\n\n",
		took.Round(time.Millisecond), len(c.regions), c.edges, c.dir)
	fmt.Fprintf(&b, "  watch the sample play  %s/play\n", steer)
	fmt.Fprintf(&b, "  and its signed copy    %s/play?src=/r%s\n", steer, c.sign.playPath())
	fmt.Fprintf(&b, "                         (/%s needs a token; mint one: bin/duet sign /%s --config %s --object /%smaster.m3u8)\n",
		protectedPrefix, protectedPrefix, filepath.Join(c.dir, "config", "edge-"+c.regions[0].edges[0].name+".yaml"), protectedPrefix)
	fmt.Fprintf(&b, "  status page            %s/\n", steer)
	fmt.Fprintf(&b, "  ask steering           curl -s%s '%s/v1/route?path=%s'\n", c.tls.curlFlag(), steer, master)
	fmt.Fprintf(&b, "  follow steering        curl -sL%s -o /dev/null -w '%%{url_effective}\\n' %s/r%s\n\n", c.tls.curlFlag(), steer, master)
	for i, r := range c.regions {
		fmt.Fprintf(&b, "  region %-9s steering %s%s  purge http://%s  origin %s  NATS %s\n", r.name, c.tls.scheme(), l.steering(i), l.purge(i), r.minio.Endpoint(), r.natsURL)
		for j, e := range r.edges {
			fmt.Fprintf(&b, "    edge %-12s %s%s   admin http://%s\n", e.name, c.tls.scheme(), l.edge(i, j), l.edgeAdm(i, j))
		}
	}
	fmt.Fprintf(&b, "  NATS admits only each process's own identity (nkey seeds in %s, 0600); see README.md, \"NATS identities\"\n", c.ids.dir)
	fmt.Fprintf(&b, "\n  see a MISS, then a HIT:\n    for i in 1 2; do curl -s -o /dev/null -D - %s%s%s%s | grep -iE '^(x-cache|cache-status)'; done\n", c.tls.scheme(), l.edge(0, 0), seg, c.tls.curlFlag())
	if c.tls != nil {
		fmt.Fprintf(&b, "  HTTPS with the dev CA %s: trust it in a browser to open the pages without a warning (README.md, \"duet dev over HTTPS\")\n", c.tls.CA)
	}
	fmt.Fprintf(&b, "\n  upload your own video (a folder of HLS or DASH files) to %s; it replicates to every region:\n    bin/duet upload --config %s --region %s --prefix vod/mine/ PATH\n",
		c.regions[0].name, filepath.Join(c.dir, "config", "upload.yaml"), c.regions[0].name)
	fmt.Fprintf(&b, "\n  purge the stream everywhere (each edge's acknowledgement listed):\n    bin/duet purge prefix /%s --api http://%s --token %s --wait 5s\n", samplePrefix, l.purge(0), c.sec.PurgeToken)
	fmt.Fprintf(&b, "\n  profile an edge (its admin token; POST /purge there takes it too, with Content-Type: application/json):\n    curl -s -H 'Authorization: Bearer %s' http://%s/debug/pprof/\n", c.sec.EdgeAdminToken, l.edgeAdm(0, 0))
	auth := "-H 'Authorization: Bearer " + c.sec.ControlToken + "'"
	fmt.Fprintf(&b, "\n  break it on purpose (control API, token %s):\n", c.sec.ControlToken)
	fmt.Fprintf(&b, "    curl -s -XPOST %s -H 'Content-Type: application/json' http://%s/v1/dev/edges/%s/stop     # and .../start\n", auth, l.control(), c.regions[0].edges[0].name)
	fmt.Fprintf(&b, "    curl -s -XPOST %s -H 'Content-Type: application/json' http://%s/v1/dev/regions/%s/stop   # and .../start\n", auth, l.control(), c.regions[0].name)
	fmt.Fprintf(&b, "    curl -s %s http://%s/v1/dev/cluster\n", auth, l.control())
	fmt.Fprintf(&b, "\n  tokens and origin credentials are kept in %s (mode 0600; delete it for new ones)\n", filepath.Join(c.dir, secretsFile))
	_, _ = io.WriteString(w, b.String())
}

// firstSegment names the first media segment of the sample (what a player fetches most).
func firstSegment(files []sample.File) string {
	for _, f := range files {
		switch path.Ext(f.Path) {
		case ".ts", ".m4s":
			return f.Path
		}
	}
	return files[len(files)-1].Path
}

// portFree fails when something already listens on addr.
func portFree(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return errors.New("address already in use or not usable")
	}
	return ln.Close()
}

// waitTrusted waits until every edge has caught up with every region's purges and trusts its
// cache again (before that it revalidates every hit: correct, but not the demo's HIT).
func (c *cluster) waitTrusted(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for i, r := range c.regions {
		for j, e := range r.edges {
			url := "http://" + c.layout.edgeAdm(i, j) + "/metrics"
			for !edgeTrusted(ctx, url) {
				select {
				case <-ctx.Done():
					return fmt.Errorf("edge %s has not caught up with the purge streams (see its log in %s/logs)", e.name, c.dir)
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

func edgeTrusted(ctx context.Context, metricsURL string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), "\nduet_edge_cache_trusted 1\n")
}
