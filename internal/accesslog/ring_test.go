package accesslog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/duetcdn/duet/internal/cmcd"
)

// logged sends each record through Log and returns the lines the sink got, in order.
func logged(t *testing.T, cfg Config, recs ...*Record) (*Logger, []string) {
	t.Helper()
	sink := &memSink{}
	l, err := New(cfg, sink, prometheus.NewRegistry(), "edge", "e1", "region", "eu")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		l.Log(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return l, sink.lines
}

// TestLogLineIsAppendLine: a line that went through the ring is byte for byte the line
// AppendLine makes of the record itself, whatever the record holds.
func TestLogLineIsAppendLine(t *testing.T) {
	full := sample()
	full.CMCD.ContentID, full.CMCD.StreamType, full.CMCD.StreamFormat = "movie-1", "v", "h"
	full.CMCD.Bitrate, full.CMCD.TopBitrate, full.CMCD.Duration, full.CMCD.Deadline, full.CMCD.RequestedTP = 3000, 6000, 4000, 900, 8000
	full.CMCD.Startup, full.CMCD.HasPlaybackRate, full.CMCD.PlaybackRate, full.CMCD.Version = true, true, 1.25, 1
	full.OriginTime = 12345 * time.Microsecond
	bare := &Record{Time: time.Unix(0, 1), RequestID: "r"}
	v6 := sample()
	v6.Client, v6.CMCD = netip.MustParseAddr("2001:db8::1"), nil
	zoned := sample()
	zoned.Client = netip.MustParseAddr("fe80::1%eth0")
	mapped := sample()
	mapped.Client = netip.MustParseAddr("::ffff:192.0.2.1")
	local := sample()
	local.Time = time.Date(2026, 12, 7, 20, 0, 0, 999, time.FixedZone("X", 3600))
	emptyCMCD := sample()
	emptyCMCD.CMCD = &cmcd.Data{}
	emptyCMCD.CMCD.Reset()
	rawID := sample()
	rawID.RequestID, rawID.ID = "", [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	recs := []*Record{full, bare, v6, zoned, mapped, local, emptyCMCD, rawID, sample()}
	l, lines := logged(t, DefaultConfig(), recs...)
	if len(lines) != len(recs) {
		t.Fatalf("%d lines for %d records", len(lines), len(recs))
	}
	if !strings.Contains(lines[7], `"request_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
		t.Errorf("the id's bytes are not its hex digits: %s", lines[7])
	}
	for i, r := range recs {
		if want := string(l.AppendLine(nil, r)); lines[i] != want {
			t.Errorf("record %d:\n got %s\nwant %s", i, lines[i], want)
		}
	}
}

// TestLogNumbersLines: a request without an id gets one from the writer: 32 hex digits,
// another for every line.
func TestLogNumbersLines(t *testing.T) {
	r := sample()
	r.RequestID = ""
	_, lines := logged(t, DefaultConfig(), r, r)
	id := regexp.MustCompile(`"request_id":"([0-9a-f]{32})"`)
	a, b := id.FindStringSubmatch(lines[0]), id.FindStringSubmatch(lines[1])
	if a == nil || b == nil || a[1] == b[1] {
		t.Fatalf("ids: %s\n%s", lines[0], lines[1])
	}
}

// TestLogKeepsNoView: Log copies the record's strings; the request's buffers are reused as
// soon as it returns, and the line still says what the request was.
func TestLogKeepsNoView(t *testing.T) {
	buf := []byte("/vod/a.ts?x=1")
	r := sample()
	r.Path, r.Query = unsafe.String(&buf[0], 9), unsafe.String(&buf[10], 3)
	sink := &memSink{}
	l, _ := newLogger(t, DefaultConfig(), sink)
	l.Log(r)
	copy(buf, "/XXXXXXXXXXXXX")
	_ = l.Close()
	if len(sink.lines) != 1 || !strings.Contains(sink.lines[0], `"path":"/vod/a.ts","query":"x=1"`) {
		t.Fatalf("lines %q", sink.lines)
	}
}

// TestLongRequestTruncated: a request whose strings overflow a slot is logged, cut, marked
// "truncated", still valid JSON, and a token cut short is still not logged.
func TestLongRequestTruncated(t *testing.T) {
	long := sample()
	long.Path = "/" + strings.Repeat("p", 20000)
	cutToken := sample()
	cutToken.Path = "/" + strings.Repeat("p", maxRecord-headerBytes-cmcdBytes-120)
	cutToken.Query = "a=1&token=SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRET"
	cutPathToken := sample()
	cutPathToken.Path = "/_t/SECRET" + strings.Repeat("S", 20000) + "/a.ts"
	_, lines := logged(t, DefaultConfig(), long, cutToken, cutPathToken)
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		if m["truncated"] != true {
			t.Errorf("line %d not marked truncated: %.200s", i, line)
		}
		if strings.Contains(line, "SECRET") {
			t.Errorf("line %d holds the token: %s", i, line)
		}
		if m["request_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || m["status"] != 200.0 || m["method"] != "GET" {
			t.Errorf("line %d lost its short fields: %.300s", i, line)
		}
	}
	if p, _ := json.Marshal(lines[0]); !strings.Contains(lines[0], `"path":"/pppp`) || len(lines[0]) > maxRecord+1000 {
		t.Errorf("long path: %.100s (%d bytes)", p, len(lines[0]))
	}
	_, lines = logged(t, DefaultConfig(), sample())
	if strings.Contains(lines[0], "truncated") {
		t.Errorf("a short request marked truncated: %s", lines[0])
	}
}

// TestLogManyProducers: requests logging at once from many goroutines each get their line, or
// are counted as dropped; no line is torn or mixed with another.
func TestLogManyProducers(t *testing.T) {
	const goroutines, each = 8, 2000
	sink := &memSink{}
	cfg := DefaultConfig()
	cfg.Buffer = 256
	l, reg := newLogger(t, cfg, sink)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := sample()
			for i := range each {
				r.RequestID = fmt.Sprintf("g%d-%d", g, i)
				r.Path = "/" + strings.Repeat("x", i%50) + r.RequestID
				r.Bytes = int64(g*each + i)
				l.Log(r)
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range sink.lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		id := m["request_id"].(string)
		var g, i int
		if _, err := fmt.Sscanf(id, "g%d-%d", &g, &i); err != nil || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
		if m["path"] != "/"+strings.Repeat("x", i%50)+id || m["bytes"] != float64(g*each+i) {
			t.Fatalf("a mixed line: %s", line)
		}
	}
	dropped := testutil.ToFloat64(mustCounter(t, reg, "dropped"))
	written := testutil.ToFloat64(mustCounter(t, reg, "written"))
	if int(written) != len(sink.lines) || len(sink.lines)+int(dropped) != goroutines*each {
		t.Fatalf("%d lines, %v written, %v dropped, of %d", len(sink.lines), written, dropped, goroutines*each)
	}
	t.Logf("%d written, %v dropped", len(sink.lines), dropped)
}

// TestLogAllocations: logging a request allocates nothing.
func TestLogAllocations(t *testing.T) {
	l, _ := newLogger(t, DefaultConfig(), &memSink{})
	r := sample()
	if a := testing.AllocsPerRun(1000, func() { l.Log(r) }); a != 0 {
		t.Fatalf("%v allocations per Log", a)
	}
}

// TestFileSinkBatches: the file sink gets the lines in batches and each one whole.
func TestFileSinkBatches(t *testing.T) {
	var out bytes.Buffer
	writes := 0
	sink := NewWriterSink(writerFunc(func(p []byte) (int, error) { writes++; return out.Write(p) }))
	l, _ := newLogger(t, DefaultConfig(), sink)
	const n = 1000
	for range n {
		l.Log(sample())
	}
	_ = l.Close()
	if got := bytes.Count(out.Bytes(), []byte("\n")); got != n {
		t.Fatalf("%d lines, want %d", got, n)
	}
	if writes > 10 {
		t.Errorf("%d writes for %d lines (%d bytes): not batched", writes, n, out.Len())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestHeaderSize(t *testing.T) {
	if headerBytes != 96 || cmcdBytes != 80 {
		t.Fatalf("a record's header takes %d bytes, CMCD %d: update the Buffer docs", headerBytes, cmcdBytes)
	}
}

// BenchmarkLogCopy is what the access log costs a request when the ring has room: claiming
// cells, copying the record into them and committing it (the writer's side, taking the record
// back, is in the loop too, on the same goroutine, so that the ring never fills).
func BenchmarkLogCopy(b *testing.B) {
	rg := newRing(4096 * cellBytes)
	r := sample()
	r.CMCD = nil
	b.ReportAllocs()
	for b.Loop() {
		if !rg.add(r) {
			b.Fatal("full")
		}
		cell, k, _ := rg.next()
		rg.release(cell, k)
	}
}

// BenchmarkLogFull is Log when the ring is full: the drop is counted and nothing else.
func BenchmarkLogFull(b *testing.B) {
	sink := &memSink{block: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.Buffer = 1
	l, err := New(cfg, sink, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	r := sample()
	for range 3 {
		l.Log(r)
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Log(r)
	}
	b.StopTimer()
	close(sink.block)
	_ = l.Close()
}
