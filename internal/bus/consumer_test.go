package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/bus"
)

// TestDurableConsumerAcrossRestart: an edge-like durable consumer on B's stream (AckExplicit,
// DeliverAll) gets A's purges; after the consumer and B's server restart, it gets the purge it
// had not acknowledged and those published meanwhile, losing none.
func TestDurableConsumerAcrossRestart(t *testing.T) {
	t.Parallel()
	a, b := linkPair(t, nil)
	dumpLogs(t, a, b)
	a.ensureStream(t, "B")
	b.ensureStream(t, "A")
	a.watch(t)
	b.watch(t)
	cfg := jetstream.ConsumerConfig{
		Durable:        "edge-b1",
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        time.Second, // short, so the unacknowledged purge comes back soon
		FilterSubjects: []string{"duet.purge.*.cmd.>"},
	}
	consumer := func() (jetstream.Consumer, *nats.Conn) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{b.server().ClientURL()}, Name: "edge-b1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		c, err := js.CreateOrUpdateConsumer(ctx, bus.PurgeStreamName("B"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c, nc
	}
	// next fetches one message within the timeout.
	next := func(c jetstream.Consumer) (jetstream.Msg, string) {
		t.Helper()
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(15*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			var p bus.Purge
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				t.Fatal(err)
			}
			return m, p.ID //nolint:staticcheck // SA4004: the first message is the one asked for
		}
		t.Fatalf("no purge delivered within 15s: %v", batch.Error())
		return nil, ""
	}

	c, nc := consumer()
	for i := range 3 {
		a.publishPurge(t, fmt.Sprintf("p%d", i))
	}
	for i := range 3 {
		m, id := next(c)
		if want := fmt.Sprintf("p%d", i); id != want {
			t.Fatalf("delivery %d: purge %s, want %s", i, id, want)
		}
		if i < 2 { // the edge crashes before acknowledging p2
			if err := m.DoubleAck(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The edge goes away, B's server restarts, A accepts more purges meanwhile.
	nc.Close()
	b.restart()
	for i := 3; i < 6; i++ {
		a.publishPurge(t, fmt.Sprintf("p%d", i))
	}
	c, _ = consumer()
	var got []string
	for len(got) < 4 {
		m, id := next(c)
		if !slices.Contains(got, id) {
			got = append(got, id)
		}
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	if want := []string{"p2", "p3", "p4", "p5"}; !slices.Equal(got, want) {
		t.Errorf("after the restart the consumer got %v, want %v", got, want)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Errorf("consumer left %d pending and %d unacknowledged", info.NumPending, info.NumAckPending)
	}
}
