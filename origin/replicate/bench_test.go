package replicate

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkReplication measures, on two real regions (embedded NATS linked by a leafnode, two
// MinIO servers with their NATS targets), with both replicators running:
//
//   - small-queued, small-direct: the lag from a PutObject in A returning to the replica being
//     listed in B, for 1,000 objects of 4 KiB put by 16 writers (p50, p99, max; B is polled
//     every 20 ms), with MinIO's event queue directory (the default: durable, but MinIO looks
//     at its queue every 3 s) and without it (minioproc.NotifyNATS.NoQueue).
//   - large: the copy throughput of B's replicator for 4 objects of 64 MiB already in A when
//     it starts (multipart, parallel parts), in MB/s.
//
// Run: go test -run '^$' -bench BenchmarkReplication -benchtime 1x ./origin/replicate/
func BenchmarkReplication(b *testing.B) {
	for _, mode := range []string{"queued", "direct"} {
		b.Run("small-"+mode, func(b *testing.B) {
			ra, rb := twoRegionsNotify(b, mode == "direct")
			ra.startReplicator(b, testConfig(ra, ra, rb))
			rb.startReplicator(b, testConfig(rb, ra, rb))
			for i := range b.N {
				lags := smallRound(b, ra, rb, fmt.Sprintf("round%d", i), 1000)
				slices.Sort(lags)
				q := func(p float64) float64 { return lags[int(p*float64(len(lags)-1))].Seconds() * 1000 }
				b.ReportMetric(q(0.5), "p50-ms")
				b.ReportMetric(q(0.99), "p99-ms")
				b.ReportMetric(q(1), "max-ms")
			}
		})
	}
	b.Run("large", func(b *testing.B) {
		ra, rb := twoRegions(b)
		ra.startReplicator(b, testConfig(ra, ra, rb)) // A's stream must exist for A's events
		const n, size = 4, 64 << 20
		for i := range b.N {
			data := randomBytes(7, size)
			for j := range n {
				ra.put(b, fmt.Sprintf("large%d/obj%d", i, j), data, nil)
			}
			start := time.Now()
			rb.startReplicator(b, testConfig(rb, ra, rb))
			deadline := time.Now().Add(5 * time.Minute)
			for len(rb.keys(b, fmt.Sprintf("large%d/", i))) < n {
				if time.Now().After(deadline) {
					b.Fatal("large objects never all reached B")
				}
				time.Sleep(20 * time.Millisecond) //nolint:forbidigo // poll interval inside a deadline
			}
			took := time.Since(start)
			rb.stopReplicator()
			b.ReportMetric(float64(n*size)/1e6/took.Seconds(), "MB/s")
		}
	})
}

// smallRound puts count small objects into a under prefix and returns each one's lag to b.
func smallRound(tb testing.TB, a, b *testRegion, prefix string, count int) []time.Duration {
	tb.Helper()
	data := bytes.Repeat([]byte("x"), 4096)
	putAt := make(map[string]time.Time, count)
	var mu sync.Mutex
	keys := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				_, err := a.s3.PutObject(tb.Context(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: bytes.NewReader(data)})
				if err != nil {
					tb.Errorf("put %s: %v", k, err)
					continue
				}
				mu.Lock()
				putAt[k] = time.Now()
				mu.Unlock()
			}
		}()
	}
	seen := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(3 * time.Minute)
		for len(seen) < count && time.Now().Before(deadline) {
			now := time.Now()
			for _, k := range b.keys(tb, prefix+"/") {
				if _, ok := seen[k]; !ok {
					seen[k] = now
				}
			}
			time.Sleep(20 * time.Millisecond) //nolint:forbidigo // sampling interval of the measurement
		}
	}()
	for i := range count {
		keys <- fmt.Sprintf("%s/obj%04d", prefix, i)
	}
	close(keys)
	wg.Wait()
	<-done
	if len(seen) < count {
		tb.Fatalf("only %d of %d objects reached B", len(seen), count)
	}
	lags := make([]time.Duration, 0, count)
	for k, at := range seen {
		lags = append(lags, max(0, at.Sub(putAt[k])))
	}
	return lags
}

// keys lists the region's keys under prefix.
func (r *testRegion) keys(tb testing.TB, prefix string) []string {
	tb.Helper()
	var out []string
	p := s3.NewListObjectsV2Paginator(r.s3, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(tb.Context())
		if err != nil {
			return out
		}
		for _, c := range page.Contents {
			out = append(out, aws.ToString(c.Key))
		}
	}
	return out
}
