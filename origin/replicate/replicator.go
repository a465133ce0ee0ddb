package replicate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/duetcdn/duet/internal/bus"
)

// Replicator keeps one region's bucket in step with the other regions' (see the package
// documentation).
type Replicator struct {
	cfg    Config
	js     jetstream.JetStream
	log    *slog.Logger
	m      *metrics
	own    *bucket
	others map[string]*bucket // region → bucket
	copier *copier
	now    func() time.Time

	locks [256]sync.Mutex // per-key (by hash) serialisation of events and sweep repairs

	ready    atomic.Bool
	sweeps   atomic.Int64 // completed sweeps
	tombs    *tombstones  // set in Run
	purgeCh  chan purgeItem
	sweepNow chan chan error
}

// New validates cfg and builds a replicator; Run starts it. ctx bounds loading the AWS
// configuration for regions without static credentials.
func New(ctx context.Context, cfg Config, deps Deps) (*Replicator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NATS == nil {
		return nil, fmt.Errorf("%w: no NATS connection", ErrInvalidConfig)
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	r := &Replicator{cfg: cfg, js: js, log: log.With("component", "replicate", "region", cfg.Region), m: newMetrics(reg),
		others: map[string]*bucket{}, copier: newCopier(cfg.PartSize, cfg.PartConcurrency, cfg.MemoryBytes), now: time.Now,
		purgeCh: make(chan purgeItem, 4*DefaultPurgeBatch), sweepNow: make(chan chan error)}
	for _, rc := range cfg.Regions {
		api, err := newS3Client(ctx, rc)
		if err != nil {
			return nil, err
		}
		b := &bucket{region: rc.Name, name: rc.Bucket, api: api}
		if rc.Name == cfg.Region {
			r.own = b
		} else {
			r.others[rc.Name] = b
		}
	}
	return r, nil
}

// otherRegions lists the other regions, sorted.
func (r *Replicator) otherRegions() []string {
	var out []string
	for name := range r.others {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Ready reports whether the replicator consumes its events.
func (r *Replicator) Ready() bool { return r.ready.Load() }

// ConsumerName is the durable consumer's name on the region's origin stream.
func ConsumerName(region string) string { return bus.ReplicateConsumerName(region) }

// Run replicates until ctx ends, then returns nil once in-flight work has stopped. It sets up
// the region's origin stream, purge stream and tombstones (retrying while NATS is not ready),
// runs the origin stream's source watcher, the event consumer, the purge batcher and the sweep.
func (r *Replicator) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for {
		var err error
		if cons, err = r.setUp(ctx); err == nil {
			break
		}
		r.log.Warn("replicator not ready, retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return bus.WatchOriginSources(gctx, r.js, r.cfg.Region, r.log) })
	g.Go(func() error { r.purgeLoop(gctx); return nil })
	g.Go(func() error { r.backlogLoop(gctx, cons); return nil })
	g.Go(func() error { r.sweepLoop(gctx); return nil })
	g.Go(func() error { return r.consume(gctx, cons) })
	r.ready.Store(true)
	r.log.Info("replicator running", "others", r.otherRegions(), "sweep_interval", r.cfg.SweepInterval)
	err := g.Wait()
	r.ready.Store(false)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (r *Replicator) setUp(ctx context.Context) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	others := r.otherRegions()
	if _, err := bus.EnsureOriginStream(cctx, r.js, r.cfg.Region, others); err != nil {
		return nil, err
	}
	if _, err := bus.EnsurePurgeStream(cctx, r.js, r.cfg.Region, others); err != nil {
		return nil, err
	}
	ts, err := openTombstones(cctx, r.js, r.cfg.Region, r.cfg.TombstoneTTL)
	if err != nil {
		return nil, err
	}
	r.tombs = ts
	cons, err := r.js.CreateOrUpdateConsumer(cctx, bus.OriginStreamName(r.cfg.Region), jetstream.ConsumerConfig{
		Durable:       ConsumerName(r.cfg.Region),
		Description:   "Duet replicator of region " + r.cfg.Region,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       time.Minute, // long copies report progress (InProgress) meanwhile
		MaxDeliver:    -1,          // never give up on an event: see the package documentation
		MaxAckPending: 4 * DefaultPurgeBatch,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName(r.cfg.Region), err)
	}
	return cons, nil
}

// work is one event to apply, with its message.
type work struct {
	msg  jetstream.Msg
	from string
	evs  []Event
	seq  uint64
}

// consume reads the origin stream and hands each message to the worker of its key's shard, so
// events of one key are applied one at a time and in order, and others in parallel.
func (r *Replicator) consume(ctx context.Context, cons jetstream.Consumer) error {
	shards := make([]chan work, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range shards {
		// Short queues: a message waits in the stream rather than here, where its AckWait
		// would run out before a worker (busy with large copies) gets to it.
		shards[i] = make(chan work, 2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range shards[i] {
				r.apply(ctx, w)
			}
		}()
	}
	defer func() {
		for _, s := range shards {
			close(s)
		}
		wg.Wait()
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(max(2*r.cfg.Concurrency, 16)))
	if err != nil {
		return fmt.Errorf("consume %s: %w", bus.OriginStreamName(r.cfg.Region), err)
	}
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			r.log.Warn("origin stream read failed", "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		w := work{msg: msg}
		if md, err := msg.Metadata(); err == nil {
			w.seq = md.Sequence.Stream
		}
		from, ok := bus.RegionOfOriginSubject(msg.Subject())
		if !ok {
			_ = msg.Term()
			continue
		}
		w.from = from
		w.evs, err = ParseEvents(msg.Data())
		if err != nil {
			r.m.errors.WithLabelValues("event").Inc()
			r.log.Warn("unreadable origin event dropped", "subject", msg.Subject(), "error", err)
			_ = msg.Term()
			continue
		}
		shard := 0
		if len(w.evs) > 0 {
			shard = int(hashKey(w.evs[0].Key) % uint32(len(shards)))
		}
		select {
		case shards[shard] <- w:
		case <-ctx.Done():
			return nil
		}
	}
}

func hashKey(k string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(k))
	return h.Sum32()
}

func (r *Replicator) lock(key string) func() {
	m := &r.locks[hashKey(key)%uint32(len(r.locks))]
	m.Lock()
	return m.Unlock
}

// apply applies one message's events, then acknowledges it (own region: once its purge is
// stored), or asks for redelivery after a backoff.
func (r *Replicator) apply(ctx context.Context, w work) {
	stop := r.keepAlive(w.msg)
	defer stop()
	var urls []string
	for _, ev := range w.evs {
		if err := r.applyEvent(ctx, w.from, ev); err != nil {
			if ctx.Err() != nil {
				return // redelivered after AckWait to whoever runs next
			}
			r.log.Warn("origin event not applied, will retry", "from", w.from, "key", ev.Key, "op", ev.Op, "error", err)
			r.nak(w.msg)
			return
		}
		if w.from == r.cfg.Region && ev.Bucket == r.own.name {
			urls = append(urls, r.urlPath(ev.Key))
		}
	}
	if len(urls) == 0 {
		_ = w.msg.Ack()
		return
	}
	select {
	case r.purgeCh <- purgeItem{msg: w.msg, seq: w.seq, urls: urls}:
	case <-ctx.Done():
	}
}

// keepAlive tells the server that a long copy is still being worked on.
func (r *Replicator) keepAlive(msg jetstream.Msg) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// nak asks for redelivery after 1 s, doubling with each delivery up to a minute.
func (r *Replicator) nak(msg jetstream.Msg) {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	d := time.Second << min(n-1, 6)
	_ = msg.NakWithDelay(min(d, time.Minute))
}

// urlPath is the viewers' URL path of an object key.
func (r *Replicator) urlPath(key string) string {
	return "/" + strings.TrimPrefix(key, strings.TrimPrefix(r.cfg.PurgePrefix, "/"))
}

// applyEvent applies one event of region from.
func (r *Replicator) applyEvent(ctx context.Context, from string, ev Event) error {
	if from == r.cfg.Region {
		if ev.Bucket != r.own.name || ev.Op != OpDelete || ev.ByReplicator {
			return nil // a write here: only purged (by apply)
		}
		// A delete made here: remembered, so the sweep does not bring the object back from
		// a region that has not applied the delete yet.
		if err := r.tombs.put(ctx, ev.Key, tombstone{Time: ev.MTime, Region: from}); err != nil {
			r.m.errors.WithLabelValues("tombstone").Inc()
			return err
		}
		return nil
	}
	src, ok := r.others[from]
	if !ok || ev.Bucket != src.name || ev.ByReplicator || isReplica(ev.Meta) {
		return nil // another bucket, or a replicator's write: never replicated again
	}
	unlock := r.lock(ev.Key)
	defer unlock()
	switch ev.Op {
	case OpPut:
		v := Version{MTime: ev.MTime, ETag: ev.ETag, Region: from}
		copied, err := r.reconcilePut(ctx, src, ev.Key, v, ev.ETag)
		if err != nil {
			r.m.errors.WithLabelValues("put").Inc()
			return err
		}
		if copied {
			r.m.lag.Observe(r.now().Sub(ev.Time).Seconds())
		}
	case OpDelete:
		deleted, err := r.applyDelete(ctx, ev.Key, tombstone{Time: ev.MTime, Region: from})
		if err != nil {
			r.m.errors.WithLabelValues("delete").Inc()
			return err
		}
		if deleted {
			r.m.objects.WithLabelValues(from, "delete").Inc()
			r.m.lag.Observe(r.now().Sub(ev.Time).Seconds())
		}
	}
	return nil
}

// reconcilePut copies key from src when src's version v (its own ETag srcETag) beats both the
// own copy and any tombstone. copied reports whether it wrote. The caller holds key's lock.
func (r *Replicator) reconcilePut(ctx context.Context, src *bucket, key string, v Version, srcETag string) (copied bool, err error) {
	ts, hasTS, err := r.tombs.get(ctx, key)
	if err != nil {
		return false, err
	}
	if hasTS && !v.BeatsDelete(ts.Time) {
		return false, nil
	}
	_, ownV, exists, err := r.own.stat(ctx, key)
	if err != nil {
		return false, err
	}
	if exists && (ownV.Same(v) || ownV.Newer(v)) {
		return false, nil
	}
	so, err := src.head(ctx, key, srcETag)
	if errors.Is(err, errChanged) || errors.Is(err, errNotFound) {
		return false, nil // superseded: its own event (or the sweep) brings what replaced it
	}
	if err != nil {
		return false, err
	}
	// What is read is a replica when the source holds one (sweep): keep its original version.
	v = versionOf(src.region, so.ETag, v.MTime, so.Meta)
	meta := make(map[string]string, len(so.Meta)+3)
	for k, val := range so.Meta {
		if !strings.HasPrefix(k, "duet-source-") {
			meta[k] = val
		}
	}
	for k, val := range v.stamp() {
		meta[k] = val
	}
	n, err := r.copier.copy(ctx, src, r.own, so, meta)
	if errors.Is(err, errChanged) || errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r.m.bytes.WithLabelValues(src.region).Add(float64(n))
	r.m.objects.WithLabelValues(src.region, "put").Inc()
	return true, nil
}

// applyDelete records ts for key and deletes the own copy unless it is newer. The caller holds
// key's lock.
func (r *Replicator) applyDelete(ctx context.Context, key string, ts tombstone) (deleted bool, err error) {
	if err := r.tombs.put(ctx, key, ts); err != nil {
		return false, err
	}
	_, ownV, exists, err := r.own.stat(ctx, key)
	if err != nil || !exists || ownV.BeatsDelete(ts.Time) {
		return false, err
	}
	if err := r.own.remove(ctx, key); err != nil {
		return false, err
	}
	return true, nil
}

// backlogLoop keeps the backlog gauge current.
func (r *Replicator) backlogLoop(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if info, err := cons.Info(cctx); err == nil {
			r.m.backlog.Set(float64(info.NumPending) + float64(info.NumAckPending))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
