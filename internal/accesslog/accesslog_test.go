package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/duetcdn/duet/internal/cmcd"
)

// memSink keeps the lines; block, when set, holds WriteLine until it is closed.
type memSink struct {
	mu    sync.Mutex
	lines []string
	block chan struct{}
}

func (s *memSink) WriteLine(line []byte) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	s.lines = append(s.lines, string(line))
	s.mu.Unlock()
	return nil
}
func (s *memSink) Flush() error { return nil }
func (s *memSink) Close() error { return nil }

func newLogger(t *testing.T, cfg Config, sink Sink) (*Logger, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := New(cfg, sink, reg, "edge", "e1", "region", "eu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, reg
}

func sample() *Record {
	d := &cmcd.Data{}
	d.Reset()
	d.BufferLength, d.Throughput, d.Starved, d.SessionID, d.ObjectType = 12300, 5000, true, "s\"1", cmcd.Video
	return &Record{Time: time.Date(2026, 12, 7, 19, 0, 0, 123456000, time.UTC), Client: netip.MustParseAddr("203.0.113.7"),
		Method: "GET", Path: "/vod/a b/\xff.ts", Query: "x=1&token=s3cret&CMCD=bl%3D1", Status: 200, Bytes: 1024,
		TTFB: 150 * time.Microsecond, Duration: 2 * time.Millisecond, CacheStatus: "duet; hit", Tier: "memory",
		OriginTime: 0, RequestID: "4bf92f3577b34da6a3ce929d0e0e4736", CMCD: d}
}

// TestLineHasEveryField: a line is one valid JSON object with every field the issue lists.
func TestLineHasEveryField(t *testing.T) {
	sink := &memSink{}
	l, _ := newLogger(t, DefaultConfig(), sink)
	line := l.AppendLine(nil, sample())
	if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	want := map[string]any{
		"time": "2026-12-07T19:00:00.123456Z", "edge": "e1", "region": "eu", "client": "203.0.113.7", "method": "GET",
		"path": "/vod/a b/\ufffd.ts", "query": "x=1&token=REDACTED&CMCD=bl%3D1", "status": 200.0, "bytes": 1024.0,
		"ttfb_us": 150.0, "duration_us": 2000.0, "cache_status": "duet; hit", "tier": "memory", "origin_us": 0.0,
		"request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		"cmcd":       map[string]any{"bl": 12300.0, "bs": true, "mtp": 5000.0, "ot": "v", "sid": "s\"1"},
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("no %q in %s", k, line)
		} else if gb, _ := json.Marshal(g); string(gb) != mustJSON(v) {
			t.Errorf("%s: %s, want %s", k, gb, mustJSON(v))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d fields, want %d: %s", len(got), len(want), line)
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestTokenNeverLogged: a signed URL's token and signatures never reach a line, however the
// parameter name is spelled.
func TestTokenNeverLogged(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RedactParams = append(cfg.RedactParams, "x-custom-*")
	l, _ := newLogger(t, cfg, &memSink{})
	for _, q := range []string{
		"token=SECRET", "a=1&token=SECRET&b=2", "TOKEN=SECRET", "%74oken=SECRET", "to%6Ben=SECRET", "X-Amz-Signature=SECRET&X-Amz-Credential=SECRET",
		"Signature=SECRET&Policy=SECRET&Key-Pair-Id=SECRET", "hdnts=exp%3D1~acl%3D%2F*~hmac%3DSECRET", "x-custom-sig=SECRET",
		"duet_token=SECRET",
	} {
		r := sample()
		r.Query = q
		if line := l.AppendLine(nil, r); bytes.Contains(line, []byte("SECRET")) {
			t.Errorf("query %q: %s", q, line)
		}
	}
	// The path form of a Duet signed URL: the token is the segment after /_t/.
	for path, want := range map[string]string{
		"/_t/SECRET/vod/premium/master.m3u8": `"path":"/_t/REDACTED/vod/premium/master.m3u8"`,
		"/_t/SECRET":                         `"path":"/_t/REDACTED"`,
		"/vod/_t/kept/a.ts":                  `"path":"/vod/_t/kept/a.ts"`,
	} {
		r := sample()
		r.Path = path
		if line := l.AppendLine(nil, r); bytes.Contains(line, []byte("SECRET")) || !bytes.Contains(line, []byte(want)) {
			t.Errorf("path %q: %s, want %s", path, line, want)
		}
	}
	r := sample()
	r.Query = "tokens=kept&tok=kept"
	if line := l.AppendLine(nil, r); !bytes.Contains(line, []byte(`"tokens=kept&tok=kept"`)) {
		t.Errorf("other parameters redacted: %s", line)
	}
}

// TestBlockedSinkNeverBlocks: while the sink is stuck, Log returns at once and counts the lines
// it drops; once the sink moves again, the queued lines are written.
func TestBlockedSinkNeverBlocks(t *testing.T) {
	sink := &memSink{block: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.Buffer = 8
	l, reg := newLogger(t, cfg, sink)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			l.Log(sample())
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked behind a stuck sink")
	}
	dropped := testutil.ToFloat64(mustCounter(t, reg, "dropped"))
	if dropped < 100-8 {
		t.Fatalf("dropped %v lines, want at least %d", dropped, 100-8)
	}
	close(sink.block)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.lines); n+int(dropped) != 100 {
		t.Fatalf("%d written + %v dropped != 100", n, dropped)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "duet_access_log_lines_total" && m.GetLabel()[0].GetValue() == result {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no duet_access_log_lines_total{result=%q}", result)
	return nil
}

// TestRotationKeepsWithinSize: a file sink rotated at 1 MiB never holds more, keeps max_backups
// rotated files, and never splits a line.
func TestRotationKeepsWithinSize(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Sink, cfg.File, cfg.MaxSizeMB, cfg.MaxBackups, cfg.Buffer = "file", filepath.Join(dir, "access.log"), 1, 2, 4096
	sink, err := NewSink(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := newLogger(t, cfg, &memSink{})
	r := sample()
	r.Path = "/" + strings.Repeat("p", 300)
	line := l.AppendLine(nil, r)
	for n := 0; n < 4<<20; n += len(line) {
		if err := sink.WriteLine(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "access*.log"))
	deadline := time.Now().Add(10 * time.Second)
	for len(files) > 3 && time.Now().Before(deadline) { // lumberjack deletes old backups in the background
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polls lumberjack's background clean-up, within the deadline
		files, _ = filepath.Glob(filepath.Join(dir, "access*.log"))
	}
	if len(files) != 3 {
		t.Fatalf("%d files, want the log and 2 backups: %v", len(files), files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s holds %d bytes, over 1 MiB", f, fi.Size())
		}
		fh, _ := os.Open(f)
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if !json.Valid(sc.Bytes()) {
				t.Fatalf("%s: a broken line: %q", f, sc.Text())
			}
		}
		_ = fh.Close()
	}
}

// TestAppendLineAllocations: formatting into a large enough buffer does not allocate.
func TestAppendLineAllocations(t *testing.T) {
	l, _ := newLogger(t, DefaultConfig(), &memSink{})
	r := sample()
	buf := make([]byte, 0, 4096)
	if a := testing.AllocsPerRun(100, func() { buf = l.AppendLine(buf[:0], r) }); a != 0 {
		t.Fatalf("%v allocations per line", a)
	}
}

// TestSampling: one in N is logged, failures and slow requests always.
func TestSampling(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SampleOneIn = 10
	l, _ := newLogger(t, cfg, &memSink{})
	n := 0
	for range 10000 {
		if l.Wanted(200, time.Millisecond) {
			n++
		}
	}
	if n < 700 || n > 1300 {
		t.Fatalf("%d of 10000 wanted at one in 10", n)
	}
	for range 100 {
		if !l.Wanted(503, 0) || !l.Wanted(200, 2*time.Second) {
			t.Fatal("a failure or a slow request was sampled out")
		}
	}
	var nl *Logger
	if nl.Wanted(500, 0) {
		t.Fatal("a nil logger wants lines")
	}
	nl.Log(sample())
	_ = nl.Close()
}

func TestConfigErrors(t *testing.T) {
	c := DefaultConfig()
	c.Sink, c.File, c.Buffer, c.SampleOneIn, c.RedactParams = "syslog", "", 0, 0, []string{"a*b"}
	err := c.Validate("access_log")
	for _, want := range []string{"sink \"syslog\"", "buffer 0", "sample_one_in 0", "redact_params"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// BenchmarkAppendLine is what formatting a line costs the log's writer goroutine (the request
// only copies its record: BenchmarkLogCopy).
func BenchmarkAppendLine(b *testing.B) {
	l, err := New(DefaultConfig(), &memSink{}, prometheus.NewRegistry(), "edge", "e1", "region", "eu")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := sample()
	r.CMCD = nil
	buf := make([]byte, 0, 4096)
	var tc timeCache
	b.ReportAllocs()
	for b.Loop() {
		buf = l.appendLine(buf[:0], r, false, &tc)
	}
}
