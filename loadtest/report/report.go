// Package report holds the outcome of a load test run (Summary) and renders it: a text table
// for the terminal, JSON for machines, and one self-contained HTML page whose charts are inline
// SVG drawn here. The charts are drawn in Go rather than with go-echarts because go-echarts
// loads echarts.min.js from a CDN (its assets host) and does not ship the script in the module:
// a report must open offline, years later, and from a CI artefact, so it carries no external URL.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is one run's outcome. Latencies are in milliseconds; ratios are 0..1, or -1 when the
// run could not measure them.
type Summary struct {
	Scenario string        `json:"scenario"`
	Control  string        `json:"control"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// Requests counts every HTTP request the load generator sent (playlists, segments, routes
	// excluded); Errors those that failed (transport error, timeout or status >= 400).
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// ErrorsByReason splits Errors: timeout, refused, reset, "http 503", other.
	ErrorsByReason map[string]int64 `json:"errors_by_reason,omitempty"`
	Bytes          int64            `json:"bytes"`
	Throughput     float64          `json:"throughput_rps"`
	Latency        Percentiles      `json:"latency_ms"`
	// HitRatio is the share of answers with X-Cache: HIT (or a Cache-Status hit).
	HitRatio float64 `json:"hit_ratio"`
	// OriginOffload is 1 - origin bytes / served bytes, from the edges' /metrics deltas.
	OriginOffload float64 `json:"origin_offload"`
	// Segments and FailedSegments count viewer segments; a segment failed only when every
	// pathway (edge) of the route failed for it.
	Segments       int64 `json:"segments"`
	FailedSegments int64 `json:"failed_segments"`
	// Stalls counts the segments that came after their playback deadline, which the viewer
	// then reports as buffer starvation (CMCD bs) with its next request: compare with the
	// edges' duet_cmcd_buffer_starvation_total.
	Stalls    int64      `json:"stalls"`
	Regions   []string   `json:"regions"`
	Seconds   []Second   `json:"seconds"`
	Events    []Event    `json:"events"`
	Takeovers []Takeover `json:"takeovers"`
	Tables    []Table    `json:"tables,omitempty"`
	Notes     []string   `json:"notes,omitempty"`

	// Viewer quality of experience. Starts counts the times viewers started the stream;
	// Startup is the time from a start to its first media segment. RebufferRatio is the time
	// playback waited for a segment over the time played plus waited (a viewer holds one
	// segment ahead: it waits when a segment takes longer than its play time); -1 when nothing
	// played. PathwaySwitches counts content steering pathway changes (hls.js's rules).
	Starts          int64       `json:"starts,omitempty"`
	Startup         Percentiles `json:"startup_ms"`
	RebufferRatio   float64     `json:"rebuffer_ratio"`
	PathwaySwitches int64       `json:"pathway_switches"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Second is one second of the run.
type Second struct {
	At       time.Duration    `json:"at_ns"` // from the start of the run
	Requests int64            `json:"requests"`
	Errors   int64            `json:"errors"`
	P50      float64          `json:"p50_ms"`
	P90      float64          `json:"p90_ms"`
	P99      float64          `json:"p99_ms"`
	ByRegion map[string]int64 `json:"by_region,omitempty"` // successful requests served per region
	ByEdge   map[string]int64 `json:"by_edge,omitempty"`

	// OriginRequests is the edges' origin fetches in the second (duet_edge_origin_fetches_total
	// scraped every second; an edge that cannot be scraped is left out).
	OriginRequests float64 `json:"origin_requests"`
}

// Event is something the scenario did to the system, or a purge it sent.
type Event struct {
	At     time.Duration `json:"at_ns"`
	Kind   string        `json:"kind"` // edge-stop, edge-start, region-stop, region-start, purge
	Target string        `json:"target"`
	Detail string        `json:"detail,omitempty"`
}

// Takeover is when viewers were first served elsewhere after a stop, or (after a region
// start) first served by that region again.
type Takeover struct {
	Event  string        `json:"event"`  // "edge-stop eu-1"
	Region string        `json:"region"` // region of the first successful segment after the stop
	Edge   string        `json:"edge"`
	After  time.Duration `json:"after_ns"` // from the stop
	// Found is false when no segment succeeded elsewhere before the run ended.
	Found bool `json:"found"`
}

// Table is an extra table a scenario reports (origin fetches per object, purge latency...).
type Table struct {
	Title  string     `json:"title"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
}

// WriteJSON writes s as indented JSON.
func WriteJSON(w io.Writer, s *Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("write json summary: %w", err)
	}
	return nil
}

// ratio formats a 0..1 ratio, or "n/a" for -1.
func ratio(r float64) string {
	if r < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*r)
}

func ms(v float64) string { return fmt.Sprintf("%.2f ms", v) }

// Rows are the summary's main table, shared by the text and HTML outputs.
func (s *Summary) Rows() [][2]string {
	rows := [][2]string{
		{"scenario", s.Scenario},
		{"duration", s.Duration.Round(time.Millisecond).String()},
		{"requests", fmt.Sprint(s.Requests)},
		{"errors", fmt.Sprintf("%d (%s)", s.Errors, ratio(div(s.Errors, s.Requests)))},
		{"throughput", fmt.Sprintf("%.1f req/s", s.Throughput)},
		{"bytes", fmt.Sprint(s.Bytes)},
		{"latency p50", ms(s.Latency.P50)},
		{"latency p90", ms(s.Latency.P90)},
		{"latency p99", ms(s.Latency.P99)},
		{"latency p99.9", ms(s.Latency.P999)},
		{"latency max", ms(s.Latency.Max)},
		{"hit ratio", ratio(s.HitRatio)},
		{"origin offload", ratio(s.OriginOffload)},
	}
	if len(s.ErrorsByReason) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.ErrorsByReason)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.ErrorsByReason[k]))
		}
		rows = append(rows, [2]string{"errors by reason", strings.Join(parts, ", ")})
	}
	if s.Segments > 0 {
		rows = append(rows, [2]string{"segments", fmt.Sprint(s.Segments)},
			[2]string{"failed segments", fmt.Sprint(s.FailedSegments)},
			[2]string{"stalls (sent as CMCD bs)", fmt.Sprint(s.Stalls)})
	}
	if s.Starts > 0 {
		rows = append(rows, [2]string{"viewer starts", fmt.Sprint(s.Starts)},
			[2]string{"start-up p50 / p99 / max", ms(s.Startup.P50) + " / " + ms(s.Startup.P99) + " / " + ms(s.Startup.Max)},
			[2]string{"rebuffer ratio", fmt.Sprintf("%.3f%%", 100*max(s.RebufferRatio, 0))},
			[2]string{"pathway switches", fmt.Sprint(s.PathwaySwitches)})
	}
	return rows
}

func div(a, b int64) float64 {
	if b == 0 {
		return -1
	}
	return float64(a) / float64(b)
}

// maxTextEvents bounds the events printed to a terminal (a purge storm sends hundreds).
const maxTextEvents = 20

// WriteText prints the summary tables for a terminal.
func WriteText(w io.Writer, s *Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range s.Rows() {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	if len(s.Events) > 0 {
		fmt.Fprintln(tw, "\nevent\tat\ttarget\tdetail")
		for i, e := range s.Events {
			if i == maxTextEvents {
				fmt.Fprintf(tw, "... %d more in the HTML report\n", len(s.Events)-i)
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Kind, e.At.Round(time.Millisecond), e.Target, e.Detail)
		}
	}
	if len(s.Takeovers) > 0 {
		fmt.Fprintln(tw, "\ntakeover after\tby region\tby edge\tafter")
		for _, t := range s.Takeovers {
			after := "never"
			if t.Found {
				after = t.After.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Event, t.Region, t.Edge, after)
		}
	}
	for _, t := range s.Tables {
		fmt.Fprintf(tw, "\n%s\n%s\n", t.Title, strings.Join(t.Header, "\t"))
		for _, r := range t.Rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
	}
	for _, n := range s.Notes {
		fmt.Fprintf(tw, "note: %s\n", n)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}
