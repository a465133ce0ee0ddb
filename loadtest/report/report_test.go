package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func testSummary() *Summary {
	s := &Summary{Scenario: "failover", Control: "http://127.0.0.1:7070", Started: time.Unix(1_800_000_000, 0),
		Duration: 5 * time.Second, Requests: 500, Errors: 3, Throughput: 100, HitRatio: 0.9, OriginOffload: -1,
		Segments: 200, Regions: []string{"eu", "us"},
		Latency: Percentiles{P50: 1.5, P90: 3, P99: 9, P999: 20, Max: 31}}
	for i := range 5 {
		s.Seconds = append(s.Seconds, Second{At: time.Duration(i) * time.Second, Requests: 100, P50: 1, P90: 2, P99: float64(i + 5),
			ByRegion: map[string]int64{"eu": int64(100 - 20*i), "us": int64(20 * i)}, ByEdge: map[string]int64{"eu-1": 50}})
	}
	s.Events = []Event{{At: 1500 * time.Millisecond, Kind: "edge-stop", Target: "eu-1"}, {At: 3 * time.Second, Kind: "region-stop", Target: "eu<script>"}}
	s.Takeovers = []Takeover{{Event: "edge-stop eu-1", Region: "eu", Edge: "eu-2", After: 80 * time.Millisecond, Found: true}, {Event: "region-stop eu"}}
	s.Tables = []Table{{Title: "Purges", Header: []string{"sent"}, Rows: [][]string{{"12"}}}}
	return s
}

// TestHTMLIsSelfContainedWithChartsAndEvents: the page draws the four charts with a marker
// per event, escapes what it prints, and loads nothing from anywhere.
func TestHTMLIsSelfContainedWithChartsAndEvents(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, testSummary()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if n := strings.Count(page, "<svg"); n != 4 {
		t.Errorf("%d charts, want latency, throughput, per-edge and origin requests", n)
	}
	// Two events on each of the four charts.
	if n := strings.Count(page, `<g class="event">`); n != 8 {
		t.Errorf("%d event markers, want 8", n)
	}
	for _, want := range []string{"edge-stop eu-1", "region eu", "region us", "p99", "80ms", "never", "Purges"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "eu<script>") {
		t.Error("event target printed unescaped")
	}
	for _, bad := range []string{"src=", "href=", "<script", "<link", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("page has %q: it must open offline", bad)
		}
	}
}

func TestTextAndJSON(t *testing.T) {
	s := testSummary()
	var b bytes.Buffer
	if err := WriteText(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"requests", "500", "errors", "3 (0.6%)", "hit ratio", "90.0%", "origin offload", "n/a", "edge-stop eu-1", "eu-2", "never"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text summary lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteJSON(&b, s); err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Requests != 500 || len(back.Seconds) != 5 || back.Takeovers[0].After != 80*time.Millisecond {
		t.Errorf("json round trip lost data: %+v", back)
	}
}

func TestNiceMax(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 0.5, 1: 1, 7: 10, 12: 20, 450: 500} {
		if got := niceMax(in); got != want {
			t.Errorf("niceMax(%v) = %v, want %v", in, got, want)
		}
	}
}
