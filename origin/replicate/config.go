package replicate

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/origin/s3conf"
)

// Defaults for Config.
const (
	DefaultSweepInterval   = 5 * time.Minute
	DefaultConcurrency     = 32
	DefaultMemoryBytes     = 256 << 20
	DefaultPartSize        = 16 << 20
	DefaultPartConcurrency = 4
	DefaultPurgeWindow     = 100 * time.Millisecond
	DefaultPurgeBatch      = 1000
	DefaultTombstoneTTL    = 7 * 24 * time.Hour
)

// Purge modes.
const (
	PurgeSoft = "soft"
	PurgeHard = "hard"
)

// Config configures one region's replicator.
type Config struct {
	// Region is this replicator's region (bus.ValidRegion). Required; it must be in Regions.
	Region string `yaml:"region"`
	// Regions lists every region's bucket, this one's included. At least two. Each needs its
	// access_key and secret_key: the replicator does not fall back to the AWS credential chain.
	Regions []RegionConfig `yaml:"regions"`
	// SweepInterval is how often the anti-entropy sweep runs (and once at start). Default 5m;
	// negative disables it.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// PurgeMode is how objects changed in the region's bucket are purged from its edges: "soft"
	// (default; marked stale, revalidated next time) or "hard" (removed).
	PurgeMode string `yaml:"purge_mode"`
	// PurgePrefix is the part of an object key that viewers' URL paths leave out: with
	// "vod/", the key "vod/a/b.ts" is purged as "/a/b.ts". Default none: "/" + key.
	PurgePrefix string `yaml:"purge_prefix"`
	// Concurrency is how many events, and sweep repairs, are applied at once. Default 32: a
	// copy is a handful of round trips, mostly waiting (measured: 8 gave a p50 lag of 4 s for
	// a burst of 1,000 small objects, 32 gave 1.2 s).
	Concurrency int `yaml:"concurrency"`
	// PartSize is the multipart part size in bytes; larger objects are copied in parts.
	// Default 16 MiB (minimum 5 MiB).
	PartSize int64 `yaml:"part_size"`
	// PartConcurrency is how many parts of one object are copied at once. Default 4.
	PartConcurrency int `yaml:"part_concurrency"`
	// MemoryBytes bounds the copy buffers in use at once, in bytes. Default 256 MiB; at least
	// PartSize.
	MemoryBytes int64 `yaml:"memory_bytes"`
	// PurgeWindow is how long URLs are collected into one purge. Default 100ms.
	PurgeWindow time.Duration `yaml:"purge_window"`
	// TombstoneTTL is how long a delete is remembered against resurrection by the sweep.
	// Default 7 days.
	TombstoneTTL time.Duration `yaml:"tombstone_ttl"`
}

// RegionConfig is one region's bucket.
type RegionConfig struct {
	// Name is the region's name. Required.
	Name string `yaml:"name"`
	// Config is the bucket: endpoint, bucket, s3_region, path_style, access_key, secret_key
	// (the last two required, see Config.Regions).
	s3conf.Config `yaml:",inline"`
}

// Deps are what a Replicator needs from the process.
type Deps struct {
	// NATS is a connection to the region's NATS. Required.
	NATS *nats.Conn
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the metrics; nil: not registered.
	Registry prometheus.Registerer
}

// DefaultConfig is a Config with every default set (Region and Regions still to fill).
func DefaultConfig() Config {
	return Config{
		SweepInterval:   DefaultSweepInterval,
		PurgeMode:       PurgeSoft,
		Concurrency:     DefaultConcurrency,
		PartSize:        DefaultPartSize,
		PartConcurrency: DefaultPartConcurrency,
		MemoryBytes:     DefaultMemoryBytes,
		PurgeWindow:     DefaultPurgeWindow,
		TombstoneTTL:    DefaultTombstoneTTL,
	}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.SweepInterval, c.PurgeMode = cmp.Or(c.SweepInterval, d.SweepInterval), cmp.Or(c.PurgeMode, d.PurgeMode)
	c.Concurrency, c.PartSize = cmp.Or(c.Concurrency, d.Concurrency), cmp.Or(c.PartSize, d.PartSize)
	c.PartConcurrency, c.MemoryBytes = cmp.Or(c.PartConcurrency, d.PartConcurrency), cmp.Or(c.MemoryBytes, d.MemoryBytes)
	c.PurgeWindow, c.TombstoneTTL = cmp.Or(c.PurgeWindow, d.PurgeWindow), cmp.Or(c.TombstoneTTL, d.TombstoneTTL)
	for i := range c.Regions {
		if c.Regions[i].S3Region == "" {
			c.Regions[i].S3Region = "us-east-1"
		}
	}
	return c
}

// Validate reports every problem of c (after defaults), each naming the field to fix.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := bus.ValidRegion(c.Region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	}
	if len(c.Regions) < 2 {
		errs = append(errs, errors.New("regions: list every region's bucket (at least two, this one included)"))
	}
	seen := map[string]bool{}
	for i, r := range c.Regions {
		if err := bus.ValidRegion(r.Name); err != nil {
			errs = append(errs, fmt.Errorf("regions[%d].name: %w", i, err))
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("regions[%d].name: %q is listed twice", i, r.Name))
		}
		seen[r.Name] = true
		if err := r.Config.Validate(fmt.Sprintf("regions[%d]", i)); err != nil {
			errs = append(errs, err)
		}
		if r.AccessKey == "" && r.SecretKey == "" {
			// The replicator reads and writes every region's bucket from one process: each
			// region's keys are named, never one ambient identity for all.
			errs = append(errs, fmt.Errorf("regions[%d]: access_key and secret_key are required", i))
		}
	}
	if c.Region != "" && !seen[c.Region] {
		errs = append(errs, fmt.Errorf("regions: this region %q is not listed", c.Region))
	}
	if c.PurgeMode != PurgeSoft && c.PurgeMode != PurgeHard {
		errs = append(errs, fmt.Errorf("purge_mode %q: use soft or hard", c.PurgeMode))
	}
	if c.Concurrency < 1 || c.PartConcurrency < 1 {
		errs = append(errs, errors.New("concurrency and part_concurrency must be at least 1"))
	}
	if c.PartSize < 5<<20 {
		errs = append(errs, fmt.Errorf("part_size %d: S3 wants at least 5 MiB (5242880)", c.PartSize))
	}
	if c.MemoryBytes < c.PartSize {
		errs = append(errs, fmt.Errorf("memory_bytes %d: at least part_size (%d)", c.MemoryBytes, c.PartSize))
	}
	if c.PurgeWindow < 0 || c.TombstoneTTL < 0 {
		errs = append(errs, errors.New("purge_window and tombstone_ttl must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// UnmarshalText reads a region from one line, for environment variables and flags (YAML uses
// the fields): "name=eu;endpoint=http://127.0.0.1:9000;bucket=origin;access_key=AK;secret_key=SK"
// (s3_region and path_style optional). Several regions are separated by commas.
func (r *RegionConfig) UnmarshalText(b []byte) error {
	var out RegionConfig
	for part := range strings.SplitSeq(string(b), ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("region %q: want key=value pairs separated by ';' (name, endpoint, bucket, s3_region, path_style, access_key, secret_key)", string(b))
		}
		switch strings.TrimSpace(k) {
		case "name":
			out.Name = v
		case "endpoint":
			out.Endpoint = v
		case "bucket":
			out.Bucket = v
		case "s3_region":
			out.S3Region = v
		case "path_style":
			ps, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("region setting path_style %q: want true or false", v)
			}
			out.PathStyle = &ps
		case "access_key":
			out.AccessKey = v
		case "secret_key":
			out.SecretKey = v
		default:
			return fmt.Errorf("region setting %q: use name, endpoint, bucket, s3_region, path_style, access_key or secret_key", k)
		}
	}
	*r = out
	return nil
}

// String is the region in UnmarshalText's form, with the secret key hidden.
func (r RegionConfig) String() string {
	secret := ""
	if r.SecretKey != "" {
		secret = "***"
	}
	s := fmt.Sprintf("name=%s;endpoint=%s;bucket=%s;s3_region=%s;access_key=%s;secret_key=%s",
		r.Name, r.Endpoint, r.Bucket, r.S3Region, r.AccessKey, secret)
	if r.PathStyle != nil {
		s += fmt.Sprintf(";path_style=%t", *r.PathStyle)
	}
	return s
}
