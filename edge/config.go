package edge

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is everything an edge needs. Field comments are the operator's reference; the YAML
// names are what the config file, DUET_EDGE_* variables and flags use.
type Config struct {
	// Name identifies the edge in logs, metrics and heartbeats. Default: the host name.
	Name string `yaml:"name"`
	// Region is the region the edge serves in (used by steering and purge later).
	Region string `yaml:"region"`
	// Listen is the viewers' address. Default ":8080".
	Listen string `yaml:"listen"`
	// AdminListen serves /healthz, /readyz, /metrics, /debug/pprof and the local purge
	// endpoint. Keep it private. Default "127.0.0.1:9090".
	AdminListen string `yaml:"admin_listen"`
	// Origin is where misses are fetched from.
	Origin OriginConfig `yaml:"origin"`
	// Memory is the memory tier.
	Memory MemoryConfig `yaml:"memory"`
	// Disk is the disk tier.
	Disk DiskConfig `yaml:"disk"`
	// Cache holds the caching rules.
	Cache CacheConfig `yaml:"cache"`
	// DrainDelay is how long the edge keeps serving after it has turned not-ready on shutdown, so
	// that load balancers and steering move viewers away first. Default 0.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout bounds the graceful shutdown (drain connections, finish fills).
	// Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxConns bounds concurrent viewer connections. Default 65536.
	MaxConns int `yaml:"max_conns"`
}

// OriginConfig selects and configures the origin.
type OriginConfig struct {
	// Type is "s3" or "http".
	Type string `yaml:"type"`
	// Endpoint is the S3 endpoint (empty for AWS) or the HTTP origin's base URL.
	Endpoint string `yaml:"endpoint"`
	// Bucket and Prefix locate objects in S3: request path /a/b.ts reads Prefix + "a/b.ts".
	Bucket string `yaml:"bucket"`
	Prefix string `yaml:"prefix"`
	// Region is the S3 region. Default us-east-1.
	S3Region string `yaml:"s3_region"`
	// PathStyle addresses buckets by path (MinIO needs it). Default true.
	PathStyle *bool `yaml:"path_style"`
	// AccessKey and SecretKey are static S3 credentials; empty means the standard AWS chain
	// (environment, shared config, instance role).
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// Host overrides the Host header sent to an HTTP origin.
	Host string `yaml:"host"`
	// Timeout bounds the wait for an origin's response headers. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConns is the idle connections kept to the origin. Default 256.
	MaxConns int `yaml:"max_conns"`
}

// MemoryConfig sizes the memory tier.
type MemoryConfig struct {
	// MaxBytes is the hard budget of the memory tier. Default 256MiB.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxObjectBytes: larger objects go to disk only. Default 4MiB.
	MaxObjectBytes ByteSize `yaml:"max_object_bytes"`
}

// DiskConfig sizes the disk tier.
type DiskConfig struct {
	// Dir holds the cache files. Default ".duet/cache".
	Dir string `yaml:"dir"`
	// MaxBytes is the hard budget of the disk tier. Default 10GiB.
	MaxBytes ByteSize `yaml:"max_bytes"`
}

// CacheConfig holds the caching rules the origin does not set itself.
type CacheConfig struct {
	// DefaultTTL is the freshness of responses with no explicit freshness, no Last-Modified
	// and no video kind. Default 0: stored, but revalidated on every request.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// MaxHeuristicTTL caps the Last-Modified heuristic (10% of the object's age). Default 24h.
	MaxHeuristicTTL time.Duration `yaml:"max_heuristic_ttl"`
	// NegativeTTL is how long a 404 or 410 without explicit freshness is cached. Default 10s.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// PlaylistTTL is the freshness of .m3u8/.mpd without explicit freshness: short, because
	// live playlists change every segment. Default 2s.
	PlaylistTTL time.Duration `yaml:"playlist_ttl"`
	// SegmentTTL is the freshness of media segments without explicit freshness: long, because
	// a segment never changes once published. Default 24h.
	SegmentTTL time.Duration `yaml:"segment_ttl"`
	// DefaultStaleWhileRevalidate and DefaultStaleIfError apply when the origin sends no
	// stale-while-revalidate / stale-if-error directive. Default 0 (RFC behaviour).
	DefaultStaleWhileRevalidate time.Duration `yaml:"default_stale_while_revalidate"`
	DefaultStaleIfError         time.Duration `yaml:"default_stale_if_error"`
	// IgnoreParams are query parameters left out of the cache key and the origin request
	// (signed-URL tokens, player session ids); a trailing "*" matches a prefix.
	IgnoreParams []string `yaml:"ignore_params"`
	// DropQuery leaves the whole query out of the cache key and the origin request: right for
	// S3 origins, whose objects have no query. Default false.
	DropQuery bool `yaml:"drop_query"`
	// SliceBytes is the unit in which range requests on uncached objects are fetched, so a seek
	// into a large file does not pull the whole file. Default 4MiB.
	SliceBytes ByteSize `yaml:"slice_bytes"`
	// FillTimeout bounds a whole origin fetch, body included. Default 5m.
	FillTimeout time.Duration `yaml:"fill_timeout"`
	// PassTTL is how long a key whose response could not be shared skips request collapsing
	// ("hit-for-pass"). Default 10s.
	PassTTL time.Duration `yaml:"pass_ttl"`
}

// DefaultConfig returns the defaults every field comment names.
func DefaultConfig() Config {
	return Config{
		Listen:          ":8080",
		AdminListen:     "127.0.0.1:9090",
		ShutdownTimeout: 30 * time.Second,
		MaxConns:        65536,
		Origin:          OriginConfig{Timeout: 10 * time.Second, MaxConns: 256, S3Region: "us-east-1"},
		Memory:          MemoryConfig{MaxBytes: 256 << 20, MaxObjectBytes: 4 << 20},
		Disk:            DiskConfig{Dir: ".duet/cache", MaxBytes: 10 << 30},
		Cache: CacheConfig{
			MaxHeuristicTTL: 24 * time.Hour,
			NegativeTTL:     10 * time.Second,
			PlaylistTTL:     2 * time.Second,
			SegmentTTL:      24 * time.Hour,
			SliceBytes:      4 << 20,
			FillTimeout:     5 * time.Minute,
			PassTTL:         10 * time.Second,
		},
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid edge config")

// Validate reports every problem at once, each naming the setting to fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	for name, addr := range map[string]string{"listen": c.Listen, "admin_listen": c.AdminListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("%s %q is not host:port", name, addr)
		}
	}
	switch c.Origin.Type {
	case "s3":
		if c.Origin.Bucket == "" {
			bad("origin.bucket is required for an s3 origin")
		}
	case "http":
		if c.Origin.Endpoint == "" {
			bad("origin.endpoint (the base URL) is required for an http origin")
		}
	case "":
		bad("origin.type is required: \"s3\" or \"http\"")
	default:
		bad("origin.type %q is unknown: use \"s3\" or \"http\"", c.Origin.Type)
	}
	if c.Memory.MaxBytes <= 0 {
		bad("memory.max_bytes must be positive")
	}
	if c.Memory.MaxObjectBytes <= 0 || c.Memory.MaxObjectBytes > c.Memory.MaxBytes {
		bad("memory.max_object_bytes must be between 1 and memory.max_bytes")
	}
	if c.Disk.Dir == "" {
		bad("disk.dir is required")
	}
	if c.Disk.MaxBytes < 1<<20 {
		bad("disk.max_bytes must be at least 1MiB")
	}
	if c.Cache.SliceBytes < 64<<10 {
		bad("cache.slice_bytes must be at least 64KiB")
	}
	for name, d := range map[string]time.Duration{
		"cache.default_ttl": c.Cache.DefaultTTL, "cache.negative_ttl": c.Cache.NegativeTTL,
		"cache.playlist_ttl": c.Cache.PlaylistTTL, "cache.segment_ttl": c.Cache.SegmentTTL,
		"cache.default_stale_while_revalidate": c.Cache.DefaultStaleWhileRevalidate,
		"cache.default_stale_if_error":         c.Cache.DefaultStaleIfError, "drain_delay": c.DrainDelay,
	} {
		if d < 0 {
			bad("%s must not be negative", name)
		}
	}
	if c.Cache.FillTimeout <= 0 || c.Origin.Timeout <= 0 || c.ShutdownTimeout <= 0 {
		bad("cache.fill_timeout, origin.timeout and shutdown_timeout must be positive")
	}
	if c.MaxConns <= 0 {
		bad("max_conns must be positive")
	}
	return errors.Join(errs...)
}
