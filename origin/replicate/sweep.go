package replicate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// sweepLoop runs the sweep at start and every SweepInterval, and when Sweep asks.
func (r *Replicator) sweepLoop(ctx context.Context) {
	var tick <-chan time.Time
	if r.cfg.SweepInterval > 0 {
		t := time.NewTicker(r.cfg.SweepInterval)
		defer t.Stop()
		tick = t.C
		_ = r.runSweep(ctx) // runSweep logs and counts its own failures
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			_ = r.runSweep(ctx)
		case reply := <-r.sweepNow:
			reply <- r.runSweep(ctx)
		}
	}
}

// Sweep runs one sweep now (beside the periodic ones) and returns its error. It waits for Run
// to be running.
func (r *Replicator) Sweep(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case r.sweepNow <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sweeps is how many sweeps have completed.
func (r *Replicator) Sweeps() int64 { return r.sweeps.Load() }

func (r *Replicator) runSweep(ctx context.Context) error {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("sweep panicked", "panic", p)
		}
	}()
	start := time.Now()
	put, del, err := r.sweep(ctx)
	if err != nil {
		r.m.errors.WithLabelValues("sweep").Inc()
		if ctx.Err() == nil {
			r.log.Warn("sweep incomplete", "copied", put, "deleted", del, "error", err)
		}
		return err
	}
	r.sweeps.Add(1)
	r.log.Info("sweep done", "copied", put, "deleted", del, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// sweep lists every region's bucket and repairs the own one: it copies what another region
// holds in a newer version (or that is missing here) unless a tombstone says it was deleted
// later, and deletes own objects older than their tombstone. Repairs run Concurrency at once.
// A region that cannot be listed is skipped (the error is returned after the others).
func (r *Replicator) sweep(ctx context.Context) (put, del int, err error) {
	own := map[string]object{}
	if err := r.own.list(ctx, func(o object) { own[o.Key] = o }); err != nil {
		return 0, 0, err
	}
	tombs, err := r.tombs.all(ctx)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	var puts, dels int64
	var mu countMu
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Concurrency)
	for _, name := range r.otherRegions() {
		src := r.others[name]
		var diff []object
		if err := src.list(ctx, func(o object) {
			if mine, ok := own[o.Key]; ok && mine.Size == o.Size && mine.ETag == o.ETag {
				return
			}
			diff = append(diff, o)
		}); err != nil {
			mu.fail(&errs, err)
			continue
		}
		for _, o := range diff {
			g.Go(func() error {
				copied, err := r.sweepPut(gctx, src, o)
				if err != nil {
					mu.fail(&errs, err)
				} else if copied {
					mu.add(&puts)
					r.m.healed.WithLabelValues("put").Inc()
				}
				return nil
			})
		}
	}
	for key, ts := range tombs {
		if _, ok := own[key]; !ok {
			continue
		}
		g.Go(func() error {
			unlock := r.lock(key)
			defer unlock()
			deleted, err := r.applyDelete(gctx, key, ts)
			if err != nil {
				mu.fail(&errs, err)
			} else if deleted {
				mu.add(&dels)
				r.m.healed.WithLabelValues("delete").Inc()
				r.m.objects.WithLabelValues(ts.Region, "delete").Inc()
			}
			return nil
		})
	}
	_ = g.Wait()
	mu.mu.Lock()
	defer mu.mu.Unlock()
	if len(errs) > 0 {
		return int(puts), int(dels), fmt.Errorf("sweep of %s: %w", r.cfg.Region, errors.Join(errs...))
	}
	return int(puts), int(dels), ctx.Err()
}

// sweepPut copies o from src when its logical version beats the own copy's and any tombstone.
func (r *Replicator) sweepPut(ctx context.Context, src *bucket, o object) (bool, error) {
	unlock := r.lock(o.Key)
	defer unlock()
	so, err := src.head(ctx, o.Key, "")
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	so.MTime = o.MTime // the listing's millisecond mtime
	v := versionOf(src.region, so.ETag, so.MTime, so.Meta)
	return r.reconcilePut(ctx, src, o.Key, v, so.ETag)
}

// countMu guards a sweep's counters and errors.
type countMu struct{ mu sync.Mutex }

func (c *countMu) add(n *int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*n++
}

func (c *countMu) fail(errs *[]error, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*errs = append(*errs, err)
}
