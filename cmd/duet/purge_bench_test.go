package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/purge"
)

// BenchmarkPurgeLatency: in a 2 regions x 2 edges topology on loopback, the time from the API
// accepting a purge to the last of the four edges applying it, over 1,000 purges in a row.
func BenchmarkPurgeLatency(b *testing.B) {
	origin := newVersionedOrigin(b)
	a, _, _ := twoRegions(b, origin, 10*time.Second)
	c := &purge.Client{BaseURL: a.api, Token: testToken}
	const n = 1000
	for b.Loop() {
		lat := make([]float64, 0, n)
		for i := range n {
			st, err := c.Purge(b.Context(), purge.Request{Target: purgereq.Target{URLs: []string{fmt.Sprintf("/bench/%d.ts", i)}}, Wait: "5s"})
			if err != nil || !st.Complete || len(st.Acks) != 4 {
				b.Fatalf("purge %d: %v (missing %v)", i, err, st.Missing)
			}
			last := 0.0
			for _, ack := range st.Acks {
				last = max(last, ack.LatencyMS)
			}
			lat = append(lat, last)
		}
		slices.Sort(lat)
		b.ReportMetric(lat[n/2], "p50-ms")
		b.ReportMetric(lat[n*99/100], "p99-ms")
		b.ReportMetric(lat[n-1], "max-ms")
	}
}

// BenchmarkPurgeThroughput: sustained URL purges per second through region A's API, counted when
// the fourth edge has applied them: single-URL requests from 32 clients at once, and requests of
// 100 URLs each.
func BenchmarkPurgeThroughput(b *testing.B) {
	origin := newVersionedOrigin(b)
	a, _, all := twoRegions(b, origin, 10*time.Second)
	for _, perReq := range []int{1, 100} {
		b.Run(fmt.Sprintf("urls-per-request=%d", perReq), func(b *testing.B) {
			const requests = 20000 // URLs; a few seconds of sustained load
			for b.Loop() {
				before := appliedTotal(b, all)
				start := time.Now()
				var next atomic.Int64
				var wg sync.WaitGroup
				hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				for range 32 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c := &purge.Client{BaseURL: a.api, Token: testToken, HTTP: hc}
						for {
							i := next.Add(1)
							if i > int64(requests/perReq) {
								return
							}
							urls := make([]string, perReq)
							for j := range urls {
								urls[j] = fmt.Sprintf("/tp/%d/%d.ts", i, j)
							}
							if _, err := c.Purge(b.Context(), purge.Request{Target: purgereq.Target{URLs: urls}}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(requests/perReq*perReq)/time.Since(start).Seconds(), "accepted-url-purges/s")
				want := before + float64(4*(requests/perReq))
				testenv.Eventually(b, 60*time.Second, func() bool { return appliedTotal(b, all) >= want },
					"edges did not apply every purge")
				secs := time.Since(start).Seconds()
				b.ReportMetric(float64(requests/perReq*perReq)/secs, "url-purges/s")
			}
		})
	}
}

// appliedTotal sums duet_edge_purges_applied_total over the edges.
func appliedTotal(tb testing.TB, edges []*testEdge) float64 {
	total := 0.0
	for _, e := range edges {
		resp, err := http.Get(e.admin + "/metrics")
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(b)) {
			var v float64
			if _, err := fmt.Sscanf(line, "duet_edge_purges_applied_total %g", &v); err == nil {
				total += v
			}
		}
	}
	return total
}
