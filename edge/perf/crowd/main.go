// Command crowd measures a flash crowd against any cache over HTTP: n viewers, each on its own
// warm connection, ask at once for one object the cache does not hold yet, after one viewer
// alone has fetched another cold object of the same origin. It prints the lone fetch's time
// and the crowd's completion quantiles, so that caches can be compared on the same origin
// (docs/performance.md, flash crowd).
//
//	crowd -base http://127.0.0.1:18081 -lone /obj/fc-lone-1 -path /obj/fc-1 -n 1000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	base := flag.String("base", "http://127.0.0.1:8080", "cache base URL")
	lone := flag.String("lone", "", "path of a cold object fetched by one viewer first (required)")
	path := flag.String("path", "", "path of the cold object the crowd asks for (required)")
	warm := flag.String("warm", "/obj/1k", "path used to open the crowd's connections")
	n := flag.Int("n", 1000, "viewers")
	timeout := flag.Duration("timeout", 60*time.Second, "bound on the whole run")
	flag.Parse()
	if *lone == "" || *path == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "crowd: -lone and -path are required, -n must be positive")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *base, *lone, *path, *warm, *n); err != nil {
		fmt.Fprintln(os.Stderr, "crowd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, base, lone, path, warm string, n int) error {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: n, MaxIdleConns: n}}
	defer client.CloseIdleConnections()
	get := func(p string) (int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+p, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		m, err := io.Copy(io.Discard, resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: status %d", p, resp.StatusCode)
		}
		return m, err
	}
	crowd := func(p string, k int) ([]time.Duration, error) {
		d := make([]time.Duration, k)
		errs := make([]error, k)
		gate := make(chan struct{})
		var wg sync.WaitGroup
		var start time.Time
		for i := range k {
			wg.Go(func() {
				<-gate
				_, errs[i] = get(p)
				d[i] = time.Since(start)
			})
		}
		start = time.Now()
		close(gate)
		wg.Wait()
		slices.Sort(d)
		return d, errors.Join(errs...)
	}
	if _, err := crowd(warm, n); err != nil {
		return fmt.Errorf("open connections: %w", err)
	}
	l, err := crowd(lone, 1)
	if err != nil {
		return fmt.Errorf("lone fetch: %w", err)
	}
	d, err := crowd(path, n)
	if err != nil {
		return fmt.Errorf("crowd: %w", err)
	}
	h, err := crowd(path, n)
	if err != nil {
		return fmt.Errorf("crowd on the hit: %w", err)
	}
	q := func(d []time.Duration, p float64) string {
		return fmt.Sprintf("%.1f", float64(d[min(len(d)-1, int(p*float64(len(d))))])/1e6)
	}
	fmt.Printf("%s lone_cold_ms=%s crowd_cold_ms p50=%s p90=%s p99=%s max=%s crowd_hit_ms p50=%s p99=%s max=%s\n",
		base, q(l, 0), q(d, .5), q(d, .9), q(d, .99), q(d, 1), q(h, .5), q(h, .99), q(h, 1))
	return nil
}
