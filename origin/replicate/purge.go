package replicate

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/purgereq"
)

// purgeItem is the URLs of one own-region event message, acknowledged once they are purged.
type purgeItem struct {
	msg  jetstream.Msg
	seq  uint64 // the message's stream sequence
	urls []string
}

// purgeLoop collects the URLs of own-region events for PurgeWindow (or up to
// DefaultPurgeBatch URLs) and stores one purge for them in the region's purge stream, then
// acknowledges their messages. Its id names the first and last stream sequences, so a
// redelivered batch is stored once (Nats-Msg-Id) or, if batched differently, purges again
// harmlessly.
func (r *Replicator) purgeLoop(ctx context.Context) {
	var batch []purgeItem
	n := 0
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) > 0 {
			r.flushPurge(ctx, batch)
		}
		batch, n = nil, 0
	}
	for {
		select {
		case <-ctx.Done():
			return // unacknowledged messages are redelivered
		case it := <-r.purgeCh:
			if len(batch) == 0 {
				timer.Reset(r.cfg.PurgeWindow)
			}
			batch = append(batch, it)
			if n += len(it.urls); n >= DefaultPurgeBatch {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

func (r *Replicator) flushPurge(ctx context.Context, batch []purgeItem) {
	seen := map[string]bool{}
	var urls []string
	first, last := batch[0].seq, batch[0].seq
	for _, it := range batch {
		first, last = min(first, it.seq), max(last, it.seq)
		for _, u := range it.urls {
			if !seen[u] {
				seen[u] = true
				urls = append(urls, u)
			}
		}
	}
	p := bus.Purge{
		ID:     fmt.Sprintf("auto-%s-%d-%d", r.cfg.Region, first, last),
		Region: r.cfg.Region, Target: purgereq.Target{URLs: urls, Soft: r.cfg.PurgeMode == PurgeSoft},
		Accepted: r.now().UTC(), By: "duet-replicate",
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := bus.PublishPurge(pctx, r.js, p); err != nil {
		r.m.errors.WithLabelValues("purge").Inc()
		r.log.Warn("automatic purge not stored, will retry", "urls", len(urls), "error", err)
		for _, it := range batch {
			r.nak(it.msg)
		}
		return
	}
	r.m.autoPurges.Add(float64(len(urls)))
	for _, it := range batch {
		_ = it.msg.Ack()
	}
}
