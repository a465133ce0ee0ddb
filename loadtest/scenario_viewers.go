package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	hlssample "github.com/duetcdn/duet/internal/sample"
	"github.com/duetcdn/duet/loadtest/report"
)

// viewers starts n viewers of stream over ramp (evenly spaced), each playing until `until`,
// and waits for them. Viewers ask their home region's steering first, round-robin.
func (e *env) viewers(ctx context.Context, stream string, n int, ramp time.Duration, until time.Time) {
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(ramp * time.Duration(i) / time.Duration(n))
		v := &viewer{env: e, home: i % len(e.router.steerings), rng: e.rng(uint64(i) + 1)}
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			v.play(ctx, stream, until)
		})
	}
	wg.Wait()
}

// sampleStream is the stream the viewers play: the cluster's sample.
func (e *env) sampleStream() (string, error) {
	if e.cluster.Sample == "" || !strings.HasSuffix(e.cluster.Sample, ".m3u8") {
		return "", fmt.Errorf("%w: the cluster JSON names no sample playlist (\"sample\": %q)", ErrConfig, e.cluster.Sample)
	}
	return e.cluster.Sample, nil
}

// runFlashCrowd uploads a fresh copy of the sample under a new prefix (so every edge starts
// cold) and starts all the viewers on it within the ramp. Request collapsing should hold the
// origin to about one fetch per object per edge.
func runFlashCrowd(ctx context.Context, e *env) error {
	stream := fmt.Sprintf("/vod/flash-%d-%d", e.t0.Unix(), e.cfg.Seed)
	files := hlssample.Stream()
	objs := make([]object, len(files))
	for i, f := range files {
		objs[i] = object{path: stream + "/" + f.Path, contentType: f.ContentType, body: f.Body}
	}
	// The stream is uploaded once, into the first region's origin, as a publisher would; the
	// replicators copy it to the other regions. The crowd starts once every origin holds it and
	// the change events' automatic purges have passed, so that the crowd meets a cold, settled
	// stream everywhere (a region whose origin lacked it would answer 404s, which is not what
	// this scenario measures).
	start := time.Now()
	if _, err := e.upload(ctx, objs); err != nil {
		return fmt.Errorf("flash-crowd: upload the stream: %w", err)
	}
	for _, r := range e.cluster.Regions {
		for r.Origin != "" {
			missing, err := e.missingAt(ctx, r.Origin, objs)
			if err != nil {
				return fmt.Errorf("flash-crowd: check region %s's origin: %w", r.Name, err)
			}
			if missing == 0 {
				break
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("flash-crowd: %d objects of the stream never reached region %s's origin (is its replicator running?)", missing, r.Name)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	e.event("upload", stream, fmt.Sprintf("%d objects, in every region's origin after %s", len(objs), time.Since(start).Round(time.Millisecond)))
	select { // the automatic purges of the new objects (batched for 100 ms) settle
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	before := e.scrapeAll(ctx)
	e.event("crowd-start", stream, fmt.Sprintf("%d viewers over %s", e.cfg.Viewers, e.cfg.Ramp))
	e.viewers(ctx, stream+"/master.m3u8", e.cfg.Viewers, e.cfg.Ramp, time.Now().Add(e.cfg.Duration))
	after := e.scrapeAll(ctx)
	var rows [][]string
	var total float64
	for _, r := range e.cluster.Regions {
		for _, ed := range r.Edges {
			b, ok1 := before[ed.Name]
			a, ok2 := after[ed.Name]
			if !ok1 || !ok2 {
				continue
			}
			d := delta(b, a)
			total += d.OriginFetches
			rows = append(rows, []string{ed.Name, fmt.Sprint(d.Requests), fmt.Sprint(d.OriginFetches),
				fmt.Sprintf("%.2f", d.OriginFetches/float64(len(objs)))})
		}
	}
	rows = append(rows, []string{"all edges", "", fmt.Sprint(total), fmt.Sprintf("%.2f", total/float64(len(objs)))})
	e.table(report.Table{Title: fmt.Sprintf("Origin fetches during the crowd (%d objects in the stream; collapsing keeps it near 1 per object per edge that served it)", len(objs)),
		Header: []string{"edge", "requests", "origin fetches", "per object"}, Rows: rows})
	return nil
}

// failoverStep is one action of the failover timeline, at a fraction of the duration.
type failoverStep struct {
	at     float64
	kind   string
	target func() string
	do     func(ctx context.Context, name string) error
}

// runFailover plays the sample with viewers that follow steering while it stops the edge the
// stream is routed to (and starts it again), then that edge's whole region (and starts it).
// A segment fails only when every pathway failed; takeovers are measured by the recorder.
func runFailover(ctx context.Context, e *env) error {
	stream, err := e.sampleStream()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	rt, err := e.router.route(rctx, stream, 0)
	cancel()
	if err != nil {
		return fmt.Errorf("failover: route the sample before the run: %w", err)
	}
	edgeName, region := e.whois(rt.Edges[0])
	if region == "" {
		return fmt.Errorf("failover: steering's first edge %s has no region", rt.Edges[0].URL)
	}
	steps := []failoverStep{
		// The region comes back with a third of the run left: viewers re-ask steering every
		// routeTTL (10 s), so a run of 30 s or more sees them return.
		{0.15, "edge-stop", func() string { return edgeName }, e.control.StopEdge},
		{0.30, "edge-start", func() string { return edgeName }, e.control.StartEdge},
		{0.45, "region-stop", func() string { return region }, e.control.StopRegion},
		{0.65, "region-start", func() string { return region }, e.control.StartRegion},
	}
	until := e.t0.Add(e.cfg.Duration)
	var wg sync.WaitGroup
	var stepErr error
	wg.Go(func() {
		for _, s := range steps {
			at := e.t0.Add(time.Duration(s.at * float64(e.cfg.Duration)))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			target := s.target()
			// The event is stamped when the stop is asked for: a graceful stop turns the edge
			// away from new connections at once but may take a while to return.
			began := time.Now()
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.do(sctx, target)
			cancel()
			if err != nil {
				stepErr = fmt.Errorf("failover: %s %s: %w", s.kind, target, err)
				e.rec.event(began, s.kind+"-failed", target, err.Error())
				return
			}
			took := time.Since(began).Round(time.Millisecond)
			e.log.Info("event", "kind", s.kind, "target", target, "took", took)
			e.rec.event(began, s.kind, target, "control API answered in "+took.String())
		}
	})
	e.viewers(ctx, stream, e.cfg.Viewers, min(e.cfg.Ramp, e.cfg.Duration/10), until)
	wg.Wait()
	return stepErr
}

// purgeAck is the part of the purge API's answer the storm reads.
type purgeAck struct {
	ID       string `json:"id"`
	Complete bool   `json:"complete"`
	Missing  []string
	Acks     []struct {
		Edge      string  `json:"edge"`
		LatencyMS float64 `json:"latency_ms"`
	} `json:"acks"`
}

// runPurgeStorm plays the sample with viewers while it sends purges (URLs, prefixes and tags in
// turn, half of them soft) at PurgeRate, each waiting for the edges' acknowledgements.
func runPurgeStorm(ctx context.Context, e *env) error {
	stream, err := e.sampleStream()
	if err != nil {
		return err
	}
	var purgeURLs []string
	for _, r := range e.cluster.Regions {
		if r.Purge != "" {
			purgeURLs = append(purgeURLs, strings.TrimRight(r.Purge, "/")+"/v1/purge")
		}
	}
	if len(purgeURLs) == 0 {
		return fmt.Errorf("%w: the cluster JSON names no purge API", ErrConfig)
	}
	dir := path.Dir(stream)
	// Purge targets: the sample's media segments, and its rendition folders.
	var segs, folders []string
	for _, f := range hlssample.Stream() {
		if ext := path.Ext(f.Path); ext == ".ts" || ext == ".m4s" {
			segs = append(segs, dir+"/"+f.Path)
			if d := dir + "/" + path.Dir(f.Path) + "/"; !slices.Contains(folders, d) {
				folders = append(folders, d)
			}
		}
	}
	if len(segs) == 0 {
		return fmt.Errorf("purge-storm: the sample has no media segment to purge")
	}
	until := e.t0.Add(e.cfg.Duration)
	hist := hdrhistogram.New(1, maxLatencyUS, 3)
	var sent, failed, incomplete int64
	var wg sync.WaitGroup
	wg.Go(func() {
		interval := time.Duration(float64(time.Second) / e.cfg.PurgeRate)
		var inflight sync.WaitGroup
		var mu sync.Mutex // guards hist and the counters
		for i := 0; time.Now().Add(interval).Before(until); i++ {
			due := e.t0.Add(time.Duration(i+1) * interval)
			select {
			case <-ctx.Done():
				inflight.Wait()
				return
			case <-time.After(time.Until(due)):
			}
			body := map[string]any{"wait": "2s", "soft": i%2 == 1}
			var what string
			switch i % 3 {
			case 0:
				what = segs[i%len(segs)]
				body["urls"] = []string{what}
			case 1:
				what = folders[i%len(folders)]
				body["prefixes"] = []string{what}
			default:
				what = "loadtest-storm"
				body["tags"] = []string{what}
			}
			target := purgeURLs[i%len(purgeURLs)]
			inflight.Go(func() {
				ack, lat, err := e.purge(ctx, target, body)
				mu.Lock()
				defer mu.Unlock()
				sent++
				switch {
				case err != nil:
					failed++
					e.rec.event(due, "purge-failed", what, err.Error())
				default:
					_ = hist.RecordCorrectedValue(max(lat.Microseconds(), 1), interval.Microseconds())
					if !ack.Complete {
						incomplete++
					}
					e.rec.event(due, "purge", what, fmt.Sprintf("%s, %d acks", lat.Round(time.Millisecond), len(ack.Acks)))
				}
			})
		}
		inflight.Wait()
	})
	e.viewers(ctx, stream, e.cfg.Viewers, min(e.cfg.Ramp, e.cfg.Duration/10), until)
	wg.Wait()
	q := func(p float64) string { return fmt.Sprintf("%.1f ms", float64(hist.ValueAtQuantile(p))/1000) }
	e.table(report.Table{Title: "Purges (wait mode: latency until every live edge acknowledged)",
		Header: []string{"sent", "failed", "incomplete (edges missing)", "p50", "p99", "max"},
		Rows:   [][]string{{fmt.Sprint(sent), fmt.Sprint(failed), fmt.Sprint(incomplete), q(50), q(99), fmt.Sprintf("%.1f ms", float64(hist.Max())/1000)}}})
	return nil
}

// purge sends one purge and waits for its answer.
func (e *env) purge(ctx context.Context, target string, body map[string]any) (purgeAck, time.Duration, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return purgeAck{}, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(b))
	if err != nil {
		return purgeAck{}, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.cluster.PurgeToken)
	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		return purgeAck{}, 0, fmt.Errorf("purge %s: %w", target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	lat := time.Since(start)
	if err != nil {
		return purgeAck{}, lat, fmt.Errorf("purge %s: read answer: %w", target, err)
	}
	if resp.StatusCode/100 != 2 {
		return purgeAck{}, lat, fmt.Errorf("purge %s: %s: %s", target, resp.Status, bytes.TrimSpace(raw))
	}
	var ack purgeAck
	if err := json.Unmarshal(raw, &ack); err != nil {
		return purgeAck{}, lat, fmt.Errorf("purge %s: answer is not JSON: %w", target, err)
	}
	return ack, lat, nil
}
