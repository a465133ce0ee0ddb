package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/edge/announce"
	"github.com/duetcdn/duet/edge/peers"
	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/purge"
)

// The adapters that let the edge's neighbours (purge consumer, announcer, NATS) drive it.

// subscribePeers feeds the region's heartbeats to peer fill, which learns the region's edges
// from them.
func subscribePeers(nc *nats.Conn, ps *peers.Set, log *slog.Logger) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(ps.Subject(), func(m *nats.Msg) {
		if err := ps.HandleHeartbeat(m.Data, time.Now()); err != nil {
			log.Debug("peer heartbeat ignored", "error", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to the region's heartbeats for peer fill: %w", err)
	}
	return sub, nil
}

// edgeApplier lets the purge consumer drive an edge.
type edgeApplier struct{ *edge.Server }

func (a edgeApplier) ApplyPurge(ctx context.Context, p bus.Purge) (int, error) {
	res, err := a.Purge(ctx, p.Target)
	return res.Entries, err
}

var _ purge.Applier = edgeApplier{}

// edgeStats lets the announcer read the edge.
type edgeStats struct{ *edge.Server }

func (e edgeStats) Stats() announce.Stats {
	s := e.Server.Stats()
	return announce.Stats{Serving: s.Serving, Connections: s.Connections, Requests: s.Requests, Hits: s.Hits,
		EgressBytes: s.EgressBytes, MemoryBytes: s.MemoryBytes, DiskBytes: s.DiskBytes,
		OriginFetches: s.OriginFetches, OriginFailures: s.OriginFailures, QoE: s.QoE}
}

// lazyPublisher publishes on a NATS connection made after the component that publishes.
type lazyPublisher struct{ conn atomic.Pointer[nats.Conn] }

func (p *lazyPublisher) Publish(subject string, data []byte) error {
	nc := p.conn.Load()
	if nc == nil {
		return errors.New("not connected to NATS yet")
	}
	return nc.Publish(subject, data)
}
