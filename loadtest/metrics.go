package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// edgeCounters are the edge counters the report needs, summed over their labels.
type edgeCounters struct {
	ServedBytes   float64 // duet_edge_served_bytes_total
	OriginBytes   float64 // duet_edge_origin_bytes_total
	OriginFetches float64 // duet_edge_origin_fetches_total
	Requests      float64 // duet_edge_requests_total
}

// parseCounters reads the Prometheus text format, summing the series it knows.
func parseCounters(r io.Reader) (edgeCounters, error) {
	var c edgeCounters
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, rest, ok := bytes.Cut(line, []byte{' '})
		if i := bytes.IndexByte(line, '{'); i >= 0 && (!ok || i < len(name)) {
			j := bytes.LastIndexByte(line, '}')
			if j < i {
				return c, fmt.Errorf("metrics line %q: unbalanced braces", line)
			}
			name, rest = line[:i], bytes.TrimSpace(line[j+1:])
		}
		var dst *float64
		switch string(name) {
		case "duet_edge_served_bytes_total":
			dst = &c.ServedBytes
		case "duet_edge_origin_bytes_total":
			dst = &c.OriginBytes
		case "duet_edge_origin_fetches_total":
			dst = &c.OriginFetches
		case "duet_edge_requests_total":
			dst = &c.Requests
		default:
			continue
		}
		val, _, _ := strings.Cut(strings.TrimSpace(string(rest)), " ") // drop a timestamp
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return c, fmt.Errorf("metrics line %q: bad value: %w", line, err)
		}
		*dst += v
	}
	return c, sc.Err()
}

// scrape reads one edge's counters from its admin listener.
func scrape(ctx context.Context, client *http.Client, admin string) (edgeCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(admin, "/")+"/metrics", nil)
	if err != nil {
		return edgeCounters{}, fmt.Errorf("scrape %s: %w", admin, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return edgeCounters{}, fmt.Errorf("scrape %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return edgeCounters{}, fmt.Errorf("scrape %s: %s", admin, resp.Status)
	}
	c, err := parseCounters(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return c, fmt.Errorf("scrape %s: %w", admin, err)
	}
	return c, nil
}

// delta is after - before per counter; a counter that went down (the edge restarted) counts
// from zero.
func delta(before, after edgeCounters) edgeCounters {
	d := func(b, a float64) float64 {
		if a < b {
			return a
		}
		return a - b
	}
	return edgeCounters{
		ServedBytes:   d(before.ServedBytes, after.ServedBytes),
		OriginBytes:   d(before.OriginBytes, after.OriginBytes),
		OriginFetches: d(before.OriginFetches, after.OriginFetches),
		Requests:      d(before.Requests, after.Requests),
	}
}
