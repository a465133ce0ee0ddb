package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/duetcdn/duet/edge/peers"
	"github.com/duetcdn/duet/internal/accesslog"
	"github.com/duetcdn/duet/internal/adminguard"
	"github.com/duetcdn/duet/internal/clientaddr"
	"github.com/duetcdn/duet/internal/signedurl"
	"github.com/duetcdn/duet/internal/tlsconf"
	"github.com/duetcdn/duet/origin/s3conf"
)

// Config is everything an edge needs. Field comments are the operator's reference; the YAML
// names are what the config file, DUET_EDGE_* variables and flags use.
type Config struct {
	// Name identifies the edge in logs, metrics and heartbeats. Default: the host name.
	Name string `yaml:"name"`
	// Region is the region the edge serves in: its heartbeats announce it (steering groups the
	// edges by region) and its purge consumer reads that region's purge stream.
	Region string `yaml:"region"`
	// Listen is the viewers' address. Default ":8080".
	Listen string `yaml:"listen"`
	// AdminListen serves /healthz, /readyz, /metrics, /debug/pprof and the local purge
	// endpoint. Keep it private. Default "127.0.0.1:9090".
	AdminListen string `yaml:"admin_listen"`
	// AdminToken is the bearer token that POST /purge and /debug/pprof on the admin listener
	// require (Authorization: Bearer <token>; at least 16 characters, no white space). Without
	// it (or admin_token_file) those endpoints answer 401; /healthz, /readyz and /metrics need
	// none. Prefer DUET_EDGE_ADMIN_TOKEN or admin_token_file to writing it into a config file.
	AdminToken string `yaml:"admin_token"`
	// AdminTokenFile is a file holding admin_token (a mounted Secret, say), read at start; white
	// space around the token is ignored. Set one of admin_token and admin_token_file.
	AdminTokenFile string `yaml:"admin_token_file"`
	// AdminHosts are the host names (without port) the admin listener may be called by, besides
	// IP addresses and localhost, which are always accepted. A request whose Host names anything
	// else is refused with 403: a web page cannot reach the port by pointing its own domain at
	// this address (DNS rebinding). Default none.
	AdminHosts []string `yaml:"admin_hosts"`
	// Origin is where misses are fetched from.
	Origin OriginConfig `yaml:"origin"`
	// Memory is the memory tier.
	Memory MemoryConfig `yaml:"memory"`
	// Disk is the disk tier.
	Disk DiskConfig `yaml:"disk"`
	// Cache holds the caching rules.
	Cache CacheConfig `yaml:"cache"`
	// PeerFill makes the edges of a region one cache (docs/scale-out.md).
	PeerFill PeerFillConfig `yaml:"peer_fill"`
	// Prefetch fetches the segments viewers will ask for next (docs/scale-out.md).
	Prefetch PrefetchConfig `yaml:"prefetch"`
	// DrainDelay is how long the edge keeps serving after it has turned not-ready on shutdown, so
	// that load balancers and steering move viewers away first. Default 0.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout bounds the graceful shutdown (drain connections, finish fills).
	// Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxConns bounds concurrent viewer connections; a connection over it is answered 503 and
	// closed. Default 0: derived from the open-file limit, which the edge raises to the hard limit
	// at start (after 64 descriptors for listeners, NATS and logs and the origins' max_conns,
	// half of the rest, since a connection served from disk holds its cache file open too; at
	// least a quarter of the limit, at most 65536). A value over what the limit allows is
	// lowered to it, with a warning. The start log shows the limit and the value in force.
	MaxConns int `yaml:"max_conns"`
	// MaxHeaderBytes bounds a request's line and header block together. A longer request line
	// is answered 414, a larger header block 431, each with the reason. Every viewer connection
	// holds a read buffer of this size. Default 16KiB; 1KiB to 1MiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// CheckRequestFraming follows each request's header block as it is read: a request with
	// bare LF (or CR) line endings is answered 400 at once (otherwise it waits for read_timeout,
	// as fasthttp waits for CRLFCRLF), an oversized request line is told apart from an
	// oversized header block (414 rather than 431), and an error answer closes lingering, so
	// the viewer reads it instead of a reset. Its price: the connection is no longer the bare
	// TCP socket fasthttp sends a response's header and body from with one writev, so a hit
	// larger than fasthttp's 4 KiB write buffer costs two writes (about -30 % req/s for 16 KiB
	// memory hits on loopback, docs/performance.md). Default true; false trades those answers
	// for hit speed (oversized requests are then answered 431, bare LF after read_timeout).
	CheckRequestFraming bool `yaml:"check_request_framing"`
	// ReadTimeout bounds how long a viewer may take to send a request once it started one, and
	// how long a new connection may stay silent (slowloris). Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a keep-alive viewer connection that sent no new request for this long.
	// Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// IdleParkAfter parks a plain-HTTP keep-alive viewer connection that sent no new request
	// for this long: it gives back the goroutine, request state and buffers (max_header_bytes
	// plus 4 KiB) it holds while it waits, and is watched with the other parked ones until its
	// next request arrives, which it then gets as fast as any (idle_timeout still closes it).
	// At max_conns, a new viewer closes a parked connection. Needs Linux and
	// check_request_framing; TLS connections are not parked. Connections park 1–3 s after the
	// set time (the sweep runs every second); 0 turns it off, and so does a value not below
	// idle_timeout. Default 0 (off) in this release: 1s takes an idle connection from about
	// 23 KiB to 4 KiB, but in two runs of the origin-budget test on a loaded machine viewers
	// with parked connections did not get their refill in time, which is not explained yet.
	IdleParkAfter time.Duration `yaml:"idle_park_after"`
	// CORS lets players on other origins read the edge's responses.
	CORS CORSConfig `yaml:"cors"`
	// AccessLog writes one JSON line per viewer request (docs/operations.md).
	AccessLog AccessLogConfig `yaml:"access_log"`

	// TLS makes the viewer listener speak HTTPS. Hits are then written through TLS: a body
	// served from the disk tier is no longer sent with sendfile.
	TLS tlsconf.Config `yaml:"tls"`

	// SignedURLs protects content with signed-URL tokens (internal/signedurl): HMAC-SHA256 over
	// an expiry, a path prefix, an optional client address and a key id, carried in the path
	// (/_t/<token>/vod/abc/master.m3u8: a stream's relative URIs inherit it) or the query
	// (?duet_token=<token>). With keys configured the edge takes the token off every request
	// before the cache key is made, so one entry serves every viewer; `duet sign` mints tokens.
	SignedURLs signedurl.Config `yaml:"signed_urls"`
}

// CORSConfig sets the CORS headers of viewer responses.
type CORSConfig struct {
	// AllowOrigin is sent as Access-Control-Allow-Origin on every GET and HEAD answer, with
	// Access-Control-Expose-Headers listing Content-Length, Content-Range, X-Cache,
	// Cache-Status and Age; OPTIONS preflights are answered at the edge with 204. "*" (the
	// default) or one origin such as "https://player.example.com"; "" turns CORS off (preflights
	// then go to the origin like any other OPTIONS request).
	AllowOrigin string `yaml:"allow_origin"`
	// MaxAge is how long browsers may cache a preflight's answer (whole seconds). Default 24h.
	MaxAge time.Duration `yaml:"max_age"`
}

// OriginConfig selects and configures the origin: the edge's own (its region's) origin, and
// optionally further origins it fails over to.
type OriginConfig struct {
	// Name identifies this origin in health reports, heartbeats and metric labels (for example
	// its region). Letters, digits, '.', '_' and '-'. Default "primary".
	Name string `yaml:"name"`
	// Type is "s3" or "http". An http origin's base URL is its endpoint; the other S3 settings
	// do not apply to it.
	Type string `yaml:"type"`
	// Config is an S3 origin's bucket: endpoint, bucket, s3_region, path_style, access_key,
	// secret_key (package s3conf).
	s3conf.Config `yaml:",inline"`
	// Prefix is prepended to an S3 origin's object keys: request path /a/b.ts reads
	// Prefix + "a/b.ts".
	Prefix string `yaml:"prefix"`
	// Host overrides the Host header sent to an HTTP origin.
	Host string `yaml:"host"`
	// Timeout bounds the wait for an origin's response headers. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConns is the idle connections kept to the origin. Default 256.
	MaxConns int `yaml:"max_conns"`
	// Fallbacks are further origins (usually the same bucket replicated in other regions), tried
	// in order when this one gives no answer, times out or answers 5xx; 4xx answers are final.
	// Each has the fields above, with a required, unique name; their timeout and max_conns
	// default to 10s and 256, s3_region to us-east-1, path_style as for origin. In YAML a list
	// of mappings; in DUET_EDGE_ORIGIN_FALLBACKS and --origin.fallbacks the same list in YAML
	// flow form, for example '[{name: us, type: s3, endpoint: "http://minio.us:9000", bucket: media}]'
	// (it replaces the whole list). Default none: the origin alone, without circuit breaker.
	Fallbacks OriginList `yaml:"fallbacks"`
	// BreakerFailures is how many failures in a row (connection errors, timeouts, 5xx) take an
	// origin out of rotation when there are fallbacks. Default 3.
	BreakerFailures int `yaml:"breaker_failures"`
	// BreakerCooldown is how long an origin stays out of rotation before a fetch starts a test of
	// it (a HEAD in the background, which no viewer waits for); each failed test doubles it, up
	// to 2s (or BreakerCooldown, when longer), and each wait is drawn from the upper half of it,
	// so that an origin that answers again is back within about 2s. Default 1s.
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`
	// MaxRequestsPerSec is this edge's budget of origin requests per second (fills,
	// revalidations, pass-through and HEAD requests, to the origin and its fallbacks together),
	// paced evenly: after a mass purge or the loss of a region the refill comes at this rate
	// instead of all at once. A request over it waits in a queue (max_queue long, max_wait at
	// most); past either it is answered 503 with Retry-After and the reason, while entries that
	// are soft-purged or within stale-while-revalidate or stale-if-error are served stale. With
	// peer fill each object is fetched by its owner alone, so a region's origin rate is at most
	// the sum of its edges' budgets. Default 0: no budget.
	MaxRequestsPerSec float64 `yaml:"max_requests_per_sec"`
	// MaxQueue is how many origin requests may wait for the budget at once. Default 1000.
	MaxQueue int `yaml:"max_queue"`
	// MaxWait is the longest an origin request waits for the budget. Default 2s.
	MaxWait time.Duration `yaml:"max_wait"`
}

// DefaultOriginName is the name of an origin that has none.
const DefaultOriginName = "primary"

// OriginName is o.Name, or DefaultOriginName when it is empty.
func (o *OriginConfig) OriginName() string {
	if o.Name == "" {
		return DefaultOriginName
	}
	return o.Name
}

// OriginList is a list of fallback origins. From environment variables and flags it reads the
// YAML flow form of the list (see OriginConfig.Fallbacks).
type OriginList []OriginConfig

// UnmarshalText reads a YAML list of origins; unknown fields are errors.
func (l *OriginList) UnmarshalText(text []byte) error {
	var out OriginList
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("want a YAML list of origins such as '[{name: us, type: s3, bucket: media}]': %w", err)
	}
	*l = out
	return nil
}

// originName is what names and labels may hold.
var originName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

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
	// NegativeTTL is how long a 404 or 410 (or another heuristically cacheable error: 405, 414, 501)
	// without explicit freshness is cached. Default 10s.
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
	// (signed-URL tokens, player session ids); a trailing "*" matches a prefix. The CMCD
	// parameter (what players report about themselves) is always left out.
	IgnoreParams []string `yaml:"ignore_params"`
	// DropQuery leaves the whole query out of the cache key and the origin request. Default:
	// true when the origin and every fallback are S3 (an object in S3 has no query: keeping it
	// in the key would let any new query string fetch the object again), false otherwise.
	DropQuery *bool `yaml:"drop_query"`
	// SliceBytes is the unit in which range requests on uncached objects are fetched, so a seek
	// into a large file does not pull the whole file. Default 4MiB.
	SliceBytes ByteSize `yaml:"slice_bytes"`
	// SliceAbove: an object whose full GET announces more bytes than this is not stored whole
	// but fetched, cached and served as slices of slice_bytes, each evicted on its own, so
	// that a file of any size is delivered within the disk budget and a seek fetches only the
	// slices it touches. Objects larger than the disk tier stores whole (disk.max_bytes/8) are
	// always sliced. Default 64MiB.
	SliceAbove ByteSize `yaml:"slice_above"`
	// FillTimeout bounds a whole origin fetch, body included. Default 5m.
	FillTimeout time.Duration `yaml:"fill_timeout"`
	// PassTTL is how long a key whose response could not be shared skips request collapsing
	// ("hit-for-pass"). Default 10s.
	PassTTL time.Duration `yaml:"pass_ttl"`
	// RevalidateOnViewerNoCache makes a viewer's "Cache-Control: no-cache" (or max-age=0, or
	// "Pragma: no-cache" without Cache-Control) revalidate a fresh entry with the origin before
	// it is served (RFC 9111 §5.2.1.4). Default false: like most CDNs, the edge ignores it, since
	// any viewer could send it to hammer the origin (a browser's reload does). When true, the
	// revalidations of one key still collapse into one origin request at a time.
	RevalidateOnViewerNoCache bool `yaml:"revalidate_on_viewer_no_cache"`
	// BackgroundFillPercent decides what becomes of a fill whose viewers have all gone (closed
	// the connection, seeked elsewhere) before its end, like Traffic Server's background fill:
	// a fill at least this many percent done completes and is cached; one less far along is
	// stopped, caches nothing, and the origin sends no more. 0 completes every fill (an origin
	// read is never wasted, but one viewer can make the origin send a whole large file); 100
	// completes only those within BackgroundFillMinBytes of their end. Default 50.
	BackgroundFillPercent int `yaml:"background_fill_percent"`
	// BackgroundFillMinBytes: a fill with at most this many bytes still to come always
	// completes (cheaper than fetching it again); one whose origin sent no length completes
	// while it has received at most this much. Default 4MiB.
	BackgroundFillMinBytes ByteSize `yaml:"background_fill_min_bytes"`
}

// PeerFillConfig turns on peer fill: on a miss the edge asks the edge of its region that owns
// the object (rendezvous hashing of the cache key, or of a slice's key for a large object, over
// the region's serving edges, learned from their NATS heartbeats) before the origin, so that a
// region fetches each object from the origin once however many edges it has. It needs name,
// region and NATS (the heartbeats).
type PeerFillConfig struct {
	// Enabled turns peer fill on. Default false: every edge fetches its misses itself.
	Enabled bool `yaml:"enabled"`
	// Secret is the region's peer secret (at least 16 characters, the same on every edge of the
	// region): requests between peers carry an HMAC of it, and an edge refuses (403) a peer
	// request whose signature does not hold. Prefer DUET_EDGE_PEER_FILL_SECRET or secret_file.
	Secret string `yaml:"secret"`
	// SecretFile is a file holding secret, read at start; white space around it is ignored.
	SecretFile string `yaml:"secret_file"`
	// Timeout bounds the connection to the owner and the wait for its answer's headers: past
	// it the edge fetches from the origin at once; an owner that refuses the connection is
	// replaced at once by the next edge in rendezvous order (or the origin). Either is left out
	// for cooldown. Default 1s.
	Timeout time.Duration `yaml:"timeout"`
	// Cooldown is how long an owner that failed is left out: its objects go to the next edge in
	// rendezvous order (or the origin) meanwhile. Default 3s.
	Cooldown time.Duration `yaml:"cooldown"`
}

// PrefetchConfig turns on playlist-driven prefetch: the edge reads the HLS media playlists and
// DASH MPDs it serves and, when a viewer asks for a segment, fetches the next segments of the
// same rendition that are not cached yet, so that the viewer's next requests are hits; a new
// VOD playlist prefetches its first segments, a new version of a live one its newest. A
// prefetch is low priority: it never waits for the origin budget (it is dropped instead),
// goes to the segment's owner edge with peer fill, and is skipped for objects that are cached
// or being fetched (a viewer who asks meanwhile joins it).
type PrefetchConfig struct {
	// Enabled turns prefetch on. Default false: each segment's first viewer on an edge waits
	// for the origin (a prefetched segment nobody then watches is origin egress spent for
	// nothing, so the operator decides); `duet dev` turns it on.
	Enabled bool `yaml:"enabled"`
	// Segments is how many segments ahead of a viewer are prefetched: after the segment it asks
	// for, or the first (VOD) or newest (live) when it starts. Three segments are the 18 s or so
	// a player buffers ahead, and the live edge distance an HLS player keeps (three target
	// durations). Default 3; 1 to 20.
	Segments int `yaml:"segments"`
	// MaxBytesInFlight bounds the bytes the edge's prefetches have in flight together. A
	// prefetch reserves the size its rendition's segments have (the largest seen, or the
	// MPD's bandwidth × duration; before any is known, the whole bound, so that it runs
	// alone) and is dropped when that does not fit. Default 64MiB.
	MaxBytesInFlight ByteSize `yaml:"max_bytes_in_flight"`
	// MaxConcurrent bounds the edge's prefetches in flight; past it a prefetch is dropped.
	// Default 16; 1 to 1024.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// QueryDropped is cache.drop_query as set, or its default for the configured origins.
func (c *Config) QueryDropped() bool {
	if c.Cache.DropQuery != nil {
		return *c.Cache.DropQuery
	}
	if c.Origin.Type != "s3" {
		return false
	}
	for _, f := range c.Origin.Fallbacks {
		if f.Type != "s3" {
			return false
		}
	}
	return true
}

// DefaultConfig returns the defaults every field comment names.
func DefaultConfig() Config {
	return Config{
		Listen:              ":8080",
		AdminListen:         "127.0.0.1:9090",
		ShutdownTimeout:     30 * time.Second,
		MaxHeaderBytes:      16 << 10,
		CheckRequestFraming: true,
		ReadTimeout:         30 * time.Second,
		IdleTimeout:         60 * time.Second,
		IdleParkAfter:       0,
		CORS:                CORSConfig{AllowOrigin: "*", MaxAge: 24 * time.Hour},
		AccessLog:           AccessLogConfig{Config: accesslog.DefaultConfig()},
		TLS:                 tlsconf.Default(),
		Origin:              OriginConfig{Name: DefaultOriginName, Timeout: 10 * time.Second, MaxConns: 256, Config: s3conf.Config{S3Region: s3conf.DefaultRegion}, BreakerFailures: 3, BreakerCooldown: time.Second, MaxQueue: 1000, MaxWait: 2 * time.Second},
		Memory:              MemoryConfig{MaxBytes: 256 << 20, MaxObjectBytes: 4 << 20},
		PeerFill:            PeerFillConfig{Timeout: time.Second, Cooldown: 3 * time.Second},
		Prefetch:            PrefetchConfig{Segments: 3, MaxBytesInFlight: 64 << 20, MaxConcurrent: 16},
		Disk:                DiskConfig{Dir: ".duet/cache", MaxBytes: 10 << 30},
		Cache: CacheConfig{
			MaxHeuristicTTL: 24 * time.Hour,
			NegativeTTL:     10 * time.Second,
			PlaylistTTL:     2 * time.Second,
			SegmentTTL:      24 * time.Hour,
			SliceBytes:      4 << 20,
			SliceAbove:      64 << 20,
			FillTimeout:     5 * time.Minute,
			PassTTL:         10 * time.Second,

			BackgroundFillPercent:  50,
			BackgroundFillMinBytes: 4 << 20,
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
	if c.AdminToken != "" && c.AdminTokenFile != "" {
		bad("set one of admin_token and admin_token_file, not both")
	}
	if c.AdminToken != "" {
		if err := adminguard.ValidateToken(c.AdminToken); err != nil {
			bad("admin_token: %v", err)
		}
	}
	c.Origin.validate("origin", bad)
	names := map[string]string{c.Origin.OriginName(): "origin.name"}
	for i := range c.Origin.Fallbacks {
		f := &c.Origin.Fallbacks[i]
		at := fmt.Sprintf("origin.fallbacks[%d]", i)
		f.validate(at, bad)
		switch {
		case f.Name == "":
			bad("%s.name is required (for example the origin's region)", at)
		case names[f.Name] != "":
			bad("%s.name %q is already used by %s", at, f.Name, names[f.Name])
		default:
			names[f.Name] = at + ".name"
		}
		if f.Timeout < 0 || f.MaxConns < 0 {
			bad("%s.timeout and %s.max_conns must not be negative (0 means the default)", at, at)
		}
		if len(f.Fallbacks) > 0 || f.BreakerFailures != 0 || f.BreakerCooldown != 0 {
			bad("%s: fallbacks, breaker_failures and breaker_cooldown belong to origin, not to a fallback", at)
		}
		if f.MaxRequestsPerSec != 0 || f.MaxQueue != 0 || f.MaxWait != 0 {
			bad("%s: max_requests_per_sec, max_queue and max_wait belong to origin (one budget for all origins), not to a fallback", at)
		}
	}
	if len(c.Origin.Fallbacks) > 0 && (c.Origin.BreakerFailures <= 0 || c.Origin.BreakerCooldown <= 0) {
		bad("origin.breaker_failures and origin.breaker_cooldown must be positive")
	}
	if c.Origin.MaxRequestsPerSec < 0 || c.Origin.MaxQueue < 0 || c.Origin.MaxWait < 0 {
		bad("origin.max_requests_per_sec, origin.max_queue and origin.max_wait must not be negative")
	}
	if c.Origin.MaxRequestsPerSec > 0 && (c.Origin.MaxQueue == 0 || c.Origin.MaxWait == 0) {
		bad("origin.max_queue and origin.max_wait must be positive with origin.max_requests_per_sec")
	}
	if pf := &c.PeerFill; pf.Enabled {
		switch {
		case pf.Secret != "" && pf.SecretFile != "":
			bad("set one of peer_fill.secret and peer_fill.secret_file, not both")
		case pf.Secret == "" && pf.SecretFile == "":
			bad("peer_fill.enabled needs peer_fill.secret or peer_fill.secret_file (the region's peer secret)")
		case pf.Secret != "" && len(strings.TrimSpace(pf.Secret)) < peers.MinSecretBytes:
			bad("peer_fill.secret must be at least %d characters", peers.MinSecretBytes)
		}
		if c.Name == "" || c.Region == "" {
			bad("peer_fill.enabled needs name and region (peers find each other by region)")
		}
		if pf.Timeout <= 0 || pf.Cooldown <= 0 {
			bad("peer_fill.timeout and peer_fill.cooldown must be positive")
		}
	}
	if pc := &c.Prefetch; pc.Enabled {
		if pc.Segments < 1 || pc.Segments > 20 {
			bad("prefetch.segments %d must be between 1 and 20", pc.Segments)
		}
		if pc.MaxBytesInFlight < 64<<10 {
			bad("prefetch.max_bytes_in_flight must be at least 64KiB (a segment must fit)")
		}
		if pc.MaxConcurrent < 1 || pc.MaxConcurrent > 1024 {
			bad("prefetch.max_concurrent %d must be between 1 and 1024", pc.MaxConcurrent)
		}
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
	if c.Cache.SliceAbove < c.Cache.SliceBytes {
		bad("cache.slice_above must be at least cache.slice_bytes")
	}
	if c.Cache.BackgroundFillPercent < 0 || c.Cache.BackgroundFillPercent > 100 {
		bad("cache.background_fill_percent %d must be between 0 and 100", c.Cache.BackgroundFillPercent)
	}
	if c.Cache.BackgroundFillMinBytes < 0 {
		bad("cache.background_fill_min_bytes must not be negative")
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
	if c.MaxConns < 0 {
		bad("max_conns must not be negative (0 derives it from the open-file limit)")
	}
	if c.MaxHeaderBytes < 1<<10 || c.MaxHeaderBytes > 1<<20 {
		bad("max_header_bytes must be between 1KiB and 1MiB")
	}
	if c.ReadTimeout < time.Millisecond || c.IdleTimeout < time.Millisecond {
		bad("read_timeout and idle_timeout must be at least 1ms")
	}
	if c.IdleParkAfter < 0 {
		bad("idle_park_after must not be negative (0 turns parking off)")
	}
	if o := c.CORS.AllowOrigin; o != "" && o != "*" && !validOrigin(o) {
		bad("cors.allow_origin %q must be \"*\", \"\" (off) or one origin such as https://player.example.com", o)
	}
	if c.CORS.MaxAge < 0 {
		bad("cors.max_age must not be negative")
	}
	if c.AccessLog.Sink != "" {
		if err := c.AccessLog.Validate("access_log"); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
		}
	}
	if _, err := clientaddr.ParsePrefixes(c.AccessLog.TrustedProxies); err != nil {
		bad("access_log.trusted_proxies: %v", err)
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	if err := c.SignedURLs.Validate("signed_urls"); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	return errors.Join(errs...)
}

// validate checks one origin's type and location; at is its setting's path ("origin",
// "origin.fallbacks[1]").
func (o *OriginConfig) validate(at string, bad func(format string, args ...any)) {
	if o.Name != "" && !originName.MatchString(o.Name) {
		bad("%s.name %q must be 1 to 64 letters, digits, '.', '_' or '-'", at, o.Name)
	}
	switch o.Type {
	case "s3":
		if err := o.Config.Validate(at); err != nil {
			bad("%w", err)
		}
	case "http":
		if o.Endpoint == "" {
			bad("%s.endpoint (the base URL) is required for an http origin", at)
		}
	case "":
		bad("%s.type is required: \"s3\" or \"http\"", at)
	default:
		bad("%s.type %q is unknown: use \"s3\" or \"http\"", at, o.Type)
	}
}
