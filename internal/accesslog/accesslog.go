// Package accesslog writes one JSON line per request: who asked for what, how it was answered
// and how long it took. A request only copies its record into a slot of a ring preallocated
// when the log starts (no allocation, no lock, no line formatting); a writer goroutine takes
// the records, formats and redacts the lines and hands them to a sink (stdout, a rotating file,
// a NATS subject) in batches. A viewer never waits for the sink: when the ring is full (the
// sink is slower than the requests) the line is dropped and counted.
package accesslog

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
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
	// Buffer is how many requests wait for the log's writer at most: the ring they wait in
	// has Buffer places of 256 bytes (rounded up to a power of two, 8 at least). A request
	// takes one, unless its path, query and CMCD strings pass about 120 bytes (with CMCD's
	// numbers, about 40): then two or more, up to 16 KiB (or a quarter of the ring) where a
	// longer path or query is cut and its line carries "truncated":true. When the ring is
	// full, new lines are dropped and counted (duet_access_log_lines_total{result="dropped"}),
	// never waited for. The writer looks every 10 ms, every millisecond while busy, so the
	// default takes a burst of 400,000 lines a second. Default 4096 (1 MiB).
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
	// ID is the request id as 16 bytes, logged as 32 hex digits when RequestID is empty: the
	// writer encodes it, not the request. When both are empty the writer numbers the line (the
	// log's random prefix and a sequence number), so that every line has an id.
	ID [16]byte
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
	cfg     Config
	sink    Sink
	batcher BatchSink // sink, when it takes batches
	fixed   []byte    // ,"name":"value" fields every line carries (edge, region), pre-rendered
	redact  []string
	prefix  []string // redact names ending in "*", without it
	ring    *ring
	maxLine int // the longest line a record can make
	// idPrefix and the writer's idSeq number the lines of records without an id.
	idPrefix [8]byte
	stop     chan struct{}
	done     chan struct{}

	closeOnce sync.Once
	closed    atomic.Bool

	written, dropped, failed, sampled prometheus.Counter
}

// BatchSink is a Sink that takes many lines in one call (the stdout and file sinks: one
// write(2) per batch).
type BatchSink interface {
	// WriteLines takes whole lines, each ending in '\n'; it must not keep lines after it
	// returns.
	WriteLines(lines []byte) error
}

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
	l := &Logger{cfg: cfg, sink: sink, ring: newRing(cfg.Buffer * cellBytes), stop: make(chan struct{}), done: make(chan struct{})}
	l.batcher, _ = sink.(BatchSink)
	_, _ = crand.Read(l.idPrefix[:])
	for i := 0; i+1 < len(fields); i += 2 {
		l.fixed = appendKey(l.fixed, fields[i])
		l.fixed = appendString(l.fixed, fields[i+1])
	}
	// Every string byte becomes at most 6 (\u00XX); the numbers, keys and CMCD's numbers
	// take well under 1 KiB.
	l.maxLine = len(l.fixed) + 6*int(l.ring.maxCells)*cellBytes + 1024
	for _, p := range cfg.RedactParams {
		if name, ok := strings.CutSuffix(p, "*"); ok {
			l.prefix = append(l.prefix, strings.ToLower(name))
		} else {
			l.redact = append(l.redact, strings.ToLower(p))
		}
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

// Log copies r into the ring for the writer; it never blocks, allocates nothing and keeps
// none of r's strings. Call Wanted first to sample.
func (l *Logger) Log(r *Record) {
	if l == nil || l.closed.Load() {
		return
	}
	if !l.ring.add(r) {
		l.dropped.Inc()
	}
}

// The writer's timing. It sleeps between looks at the ring instead of being woken by each
// request: a wake-up (a channel send or a futex per line) costs more than the request, and a
// slot filled where nobody waits costs the request only the copy. After each look the lines
// go to the sink and it is flushed, so a line reaches it within idlePoll.
const (
	// idlePoll is the pause after a look that found the ring nearly empty; it bounds the
	// burst the ring takes (Buffer lines per idlePoll).
	idlePoll = 10 * time.Millisecond
	// busyPoll is the pause after a look that found an eighth of the ring filled or more:
	// at a million requests a second the default ring fills in about 5 ms.
	busyPoll = time.Millisecond
	// batchBytes is the most the writer gathers before handing lines to the sink: one
	// write(2) per 64 KiB of lines for a file, however fast the requests come.
	batchBytes = 64 << 10
)

// writer is the writer goroutine's state.
type writer struct {
	batch []byte
	lines int       // in batch
	cells uint64    // the ring cells their records took
	rec   Record    // the slot being formatted
	cmcd  cmcd.Data // its CMCD
	time  timeCache
	// idSeq numbers the lines of records without an id. It is the writer's alone and must not
	// live in Logger: the requests read Logger at every line, and a counter the writer bumps
	// beside what they read would move that cache line between the cores at every request
	// (false sharing: it cost a 1 KiB hit ~5 %, BenchmarkHitLogging).
	idSeq uint64
}

// run is the writer goroutine: it formats the records it finds in the ring into a batch, hands
// the batch to the sink when full and after each look, and flushes the sink.
func (l *Logger) run() {
	defer close(l.done)
	w := &writer{batch: make([]byte, 0, batchBytes+l.maxLine)}
	t := time.NewTimer(idlePoll)
	defer t.Stop()
	for {
		stopping := false
		select {
		case <-t.C:
		case <-l.stop:
			stopping = true
		}
		n := l.drain(w)
		if n > 0 {
			l.writeBatch(w)
			if err := l.sink.Flush(); err != nil {
				l.failed.Inc()
			}
		}
		if stopping {
			return
		}
		pause := idlePoll
		if n >= l.ring.cells/8 {
			pause = busyPoll
		}
		t.Reset(pause)
	}
}

// drain formats every record waiting in the ring and returns how many cells they took.
func (l *Logger) drain(w *writer) uint64 {
	var n uint64
	for {
		cell, k, ok := l.ring.next()
		if !ok {
			break
		}
		// The batch goes when full, or holding a ring's worth of records: behind a stuck sink
		// the writer then holds no more lines than the ring, and Buffer bounds both.
		if cap(w.batch)-len(w.batch) < l.maxLine || w.cells+k > l.ring.cells {
			l.writeBatch(w)
		}
		truncated := l.ring.record(cell, &w.rec, &w.cmcd)
		if w.rec.RequestID == "" && w.rec.ID == [16]byte{} {
			w.idSeq++
			copy(w.rec.ID[:8], l.idPrefix[:])
			binary.BigEndian.PutUint64(w.rec.ID[8:], w.idSeq)
		}
		w.batch = l.appendLine(w.batch, &w.rec, truncated, &w.time)
		w.lines++
		w.cells += k
		l.ring.release(cell, k)
		n += k
	}
	w.rec = Record{} // its strings were views of the ring
	return n
}

// writeBatch hands the batch to the sink, whole or line by line.
func (l *Logger) writeBatch(w *writer) {
	if w.lines == 0 {
		return
	}
	if l.batcher != nil {
		if err := l.batcher.WriteLines(w.batch); err != nil {
			l.failed.Add(float64(w.lines))
		} else {
			l.written.Add(float64(w.lines))
		}
	} else {
		for b := w.batch; len(b) > 0; {
			i := bytes.IndexByte(b, '\n') + 1 // every line ends in one, and holds no other
			if err := l.sink.WriteLine(b[:i]); err != nil {
				l.failed.Inc()
			} else {
				l.written.Inc()
			}
			b = b[i:]
		}
	}
	w.batch, w.lines, w.cells = w.batch[:0], 0, 0
}

// Close writes the lines still waiting, flushes and closes the sink. Lines logged during or
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
