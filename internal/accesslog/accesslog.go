// Package accesslog writes one JSON line per request: who asked for what, how it was answered
// and how long it took. Lines are formatted without allocating into buffers from a fixed pool and
// handed to a writer goroutine, which sends them to a sink (stdout, a rotating file, a NATS
// subject). A viewer never waits for the sink: when the pool is empty (the sink is slower than
// the requests) the line is dropped and counted.
package accesslog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/duetcdn/duet/internal/cmcd"
)

// Config configures an access log. The zero value (no sink) logs nothing.
type Config struct {
	// Sink is where the lines go: "" (no access log), "stdout", "file" (File, rotated by size)
	// or "nats" (published on Subject, one message per line, for real-time streaming).
	Sink string `yaml:"sink"`
	// File is the log file of sink "file". Default "access.log".
	File string `yaml:"file"`
	// MaxSizeMB is the size, in megabytes (MiB), at which the file is rotated: renamed with a
	// time stamp and replaced by an empty one. Default 100.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files are kept; older ones are deleted. Default 5.
	MaxBackups int `yaml:"max_backups"`
	// Subject is the NATS subject of sink "nats". Default "duet.accesslog.<role>.<name>".
	Subject string `yaml:"subject"`
	// Buffer is how many lines wait for the sink at most; when it is full, new lines are
	// dropped and counted (duet_access_log_lines_total{result="dropped"}), never waited for.
	// The writer takes them every 10 ms, so the default takes up to 400,000 lines a second.
	// Each holds a 1 KiB buffer. Default 4096.
	Buffer int `yaml:"buffer"`
	// SampleOneIn logs one request in this many, chosen at random; requests that always_status
	// or slow_threshold select are logged regardless. Default 1: every request.
	SampleOneIn int `yaml:"sample_one_in"`
	// AlwaysStatus: responses with this status or a higher one are always logged. Default 500.
	AlwaysStatus int `yaml:"always_status"`
	// SlowThreshold: requests that take this long or longer are always logged. Default 1s.
	SlowThreshold time.Duration `yaml:"slow_threshold"`
	// RedactParams are query parameters whose values never reach the log (they are written as
	// "REDACTED"): signed-URL tokens and signatures. Names compare case-insensitively, after
	// percent-decoding; a trailing "*" matches a prefix. Default: token, sig, signature,
	// policy, key-pair-id, hdnts, __token__, hmac, auth, access_token, jwt, x-amz-signature,
	// x-amz-credential, x-amz-security-token, x-goog-signature, x-goog-credential.
	RedactParams []string `yaml:"redact_params"`
}

// DefaultRedactParams is the default of Config.RedactParams.
var DefaultRedactParams = []string{"duet_token", "token", "sig", "signature", "policy", "key-pair-id", "hdnts", "__token__", "hmac",
	"auth", "access_token", "jwt", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
	"x-goog-signature", "x-goog-credential"}

// DefaultConfig is the configuration every field comment names, without a sink.
func DefaultConfig() Config {
	return Config{File: "access.log", MaxSizeMB: 100, MaxBackups: 5, Buffer: 4096, SampleOneIn: 1, AlwaysStatus: 500,
		SlowThreshold: time.Second, RedactParams: append([]string(nil), DefaultRedactParams...)}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid access log config")

// Validate reports every problem at once; prefix is the settings' path ("access_log").
func (c *Config) Validate(prefix string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s."+format, append([]any{ErrConfig, prefix}, args...)...))
	}
	switch c.Sink {
	case "", "stdout", "nats":
	case "file":
		if c.File == "" {
			bad("file is required with sink \"file\"")
		}
	default:
		bad("sink %q is unknown: use \"stdout\", \"file\", \"nats\" or \"\" (off)", c.Sink)
	}
	if c.MaxSizeMB < 1 || c.MaxBackups < 0 {
		bad("max_size_mb must be at least 1 and max_backups not negative")
	}
	if c.Buffer < 1 || c.Buffer > 1<<20 {
		bad("buffer %d must be between 1 and 1048576 lines", c.Buffer)
	}
	if c.SampleOneIn < 1 {
		bad("sample_one_in %d must be at least 1 (1 logs every request)", c.SampleOneIn)
	}
	if c.AlwaysStatus < 100 || c.AlwaysStatus > 600 {
		bad("always_status %d must be between 100 and 600 (600: no status is always logged)", c.AlwaysStatus)
	}
	if c.SlowThreshold <= 0 {
		bad("slow_threshold must be positive")
	}
	for _, p := range c.RedactParams {
		if name, _ := strings.CutSuffix(p, "*"); name == "" || strings.ContainsAny(name, "*&=") {
			bad("redact_params: %q must be a name, or a name followed by \"*\"", p)
		}
	}
	return errors.Join(errs...)
}

// Record is one request. Strings may be views of the server's buffers: Log formats them before
// it returns and keeps none of them.
type Record struct {
	// Time is when the request arrived.
	Time time.Time
	// Client is the viewer's address (behind trusted proxies: the address they saw).
	Client netip.Addr
	Method string
	// Path and Query are as the viewer sent them (Query without "?"); RedactParams' values are
	// replaced when the line is written.
	Path, Query string
	Status      int
	// Bytes is the body bytes sent.
	Bytes int64
	// TTFB is the time until the response headers were ready, Duration until the last byte
	// was handed to the connection.
	TTFB, Duration time.Duration
	// CacheStatus is the Cache-Status header's value; Tier where the body came from ("memory",
	// "disk", "peer", "origin"; "" for none).
	CacheStatus, Tier string
	// OriginTime is the time the origin took to answer (0: not asked).
	OriginTime time.Duration
	// RequestID identifies the request (and its trace: see the traceparent the edge sends).
	RequestID string
	// CMCD is what the player reported, or nil.
	CMCD *cmcd.Data
}

// Sink receives the lines, from one goroutine.
type Sink interface {
	// WriteLine takes one line (ending in '\n'); it must not keep line after it returns.
	WriteLine(line []byte) error
	// Flush is called when no line is waiting.
	Flush() error
	Close() error
}

// Logger writes access log lines. A nil *Logger logs nothing.
type Logger struct {
	cfg    Config
	sink   Sink
	fixed  []byte // ,"name":"value" fields every line carries (edge, region), pre-rendered
	redact []string
	prefix []string // redact names ending in "*", without it
	// free holds the line buffers not in use; queue the lines waiting for the writer. Their
	// capacity is the number of buffers, so a send to either never blocks.
	free, queue chan []byte
	stop        chan struct{}
	done        chan struct{}
	closeOnce   sync.Once
	closed      atomic.Bool

	written, dropped, failed, sampled prometheus.Counter
}

// lineBytes is each buffer's initial capacity: most lines fit.
const lineBytes = 1024

// New starts a logger that writes to sink. fields are name, value pairs every line carries
// (for example "edge", "e1", "region", "eu"). Its counters register on reg with subsystem
// "access_log". Close it to flush and stop.
func New(cfg Config, sink Sink, reg prometheus.Registerer, fields ...string) (*Logger, error) {
	if err := cfg.Validate("access_log"); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, fmt.Errorf("%w: no sink", ErrConfig)
	}
	if len(fields)%2 != 0 {
		return nil, fmt.Errorf("%w: fields must be name, value pairs", ErrConfig)
	}
	l := &Logger{cfg: cfg, sink: sink, free: make(chan []byte, cfg.Buffer), queue: make(chan []byte, cfg.Buffer),
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := 0; i+1 < len(fields); i += 2 {
		l.fixed = appendKey(l.fixed, fields[i])
		l.fixed = appendString(l.fixed, fields[i+1])
	}
	for _, p := range cfg.RedactParams {
		if name, ok := strings.CutSuffix(p, "*"); ok {
			l.prefix = append(l.prefix, strings.ToLower(name))
		} else {
			l.redact = append(l.redact, strings.ToLower(p))
		}
	}
	backing := make([]byte, cfg.Buffer*lineBytes) // one allocation for the whole pool
	for i := range cfg.Buffer {
		l.free <- backing[i*lineBytes : i*lineBytes : (i+1)*lineBytes]
	}
	lines := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Namespace: "duet", Subsystem: "access_log", Name: "lines_total",
		Help: "Access log lines by result: written, dropped (the sink could not keep up), failed (the sink refused them), sampled (left out by sample_one_in).",
	}, []string{"result"})
	l.written, l.dropped = lines.WithLabelValues("written"), lines.WithLabelValues("dropped")
	l.failed, l.sampled = lines.WithLabelValues("failed"), lines.WithLabelValues("sampled")
	go l.run()
	return l, nil
}

// Wanted tells whether a request with this status and duration is to be logged: always when it
// failed or was slow, otherwise one in SampleOneIn. A request not wanted is counted as sampled.
func (l *Logger) Wanted(status int, d time.Duration) bool {
	if l == nil {
		return false
	}
	if l.cfg.SampleOneIn <= 1 || status >= l.cfg.AlwaysStatus || d >= l.cfg.SlowThreshold ||
		rand.Uint64N(uint64(l.cfg.SampleOneIn)) == 0 {
		return true
	}
	l.sampled.Inc()
	return false
}

// Log formats r and queues the line; it never blocks. Call Wanted first to sample.
func (l *Logger) Log(r *Record) {
	if l == nil || l.closed.Load() {
		return
	}
	var b []byte
	select {
	case b = <-l.free:
	default:
		l.dropped.Inc()
		return
	}
	l.queue <- l.AppendLine(b[:0], r)
}

// tick is how often the writer goroutine looks for lines. It sleeps in between instead of
// waiting on the queue: a send to a channel nobody waits on wakes no goroutine, which keeps the
// hit path's cost to formatting the line (a wake-up and a write(2) per request cost more than
// the request). The sink is flushed after each look, so a line reaches it within a tick.
const tick = 10 * time.Millisecond

// run is the writer goroutine: every tick it hands the queued lines to the sink and flushes it.
func (l *Logger) run() {
	defer close(l.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		stopping := false
		select {
		case <-t.C:
		case <-l.stop:
			stopping = true
		}
		wrote := false
		for more := true; more; {
			select {
			case line := <-l.queue:
				l.write(line)
				wrote = true
			default:
				more = false
			}
		}
		if wrote {
			if err := l.sink.Flush(); err != nil {
				l.failed.Inc()
			}
		}
		if stopping {
			return
		}
	}
}

func (l *Logger) write(line []byte) {
	if err := l.sink.WriteLine(line); err != nil {
		l.failed.Inc()
	} else {
		l.written.Inc()
	}
	l.free <- line[:0]
}

// Close writes the lines still queued, flushes and closes the sink. Lines logged during or
// after Close are lost. Idempotent and nil-safe.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	var err error
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		<-l.done
		err = l.sink.Close()
	})
	return err
}
