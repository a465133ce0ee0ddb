package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/testenv"
)

func TestOriginNames(t *testing.T) {
	if got := bus.OriginEventSubject("eu-1"); got != "duet.origin.eu-1.events" {
		t.Errorf("OriginEventSubject = %q", got)
	}
	if got := bus.OriginStreamName("eu-1"); got != "DUET_ORIGIN_eu-1" {
		t.Errorf("OriginStreamName = %q", got)
	}
	for subj, want := range map[string]string{"duet.origin.eu-1.events": "eu-1", "duet.origin..events": "", "duet.purge.eu.cmd.x": "", "duet.origin.eu": ""} {
		got, ok := bus.RegionOfOriginSubject(subj)
		if got != want || ok != (want != "") {
			t.Errorf("RegionOfOriginSubject(%q) = %q, %v; want %q", subj, got, ok, want)
		}
	}
}

// originCount is how many events of region from r's origin stream holds.
func (r *region) originCount(t testing.TB, from string) uint64 {
	t.Helper()
	st, err := r.js.Stream(t.Context(), bus.OriginStreamName(r.name))
	if err != nil {
		return 0
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(bus.OriginStreamSubjects(from)))
	if err != nil {
		return 0
	}
	return info.State.Subjects[bus.OriginEventSubject(from)]
}

// TestOriginStreamPartition: each region's origin stream holds its own events and, by
// sourcing, the other's, each once; after a cut link heals, WatchOriginSources brings B's
// stream up to date within seconds (not the server's 40 s).
func TestOriginStreamPartition(t *testing.T) {
	t.Parallel()
	var proxy *tcpProxy
	a, b := linkPair(t, func(remote string) string {
		u := mustURL(t, remote)
		proxy = newTCPProxy(t, u.Host)
		u.Host = proxy.addr()
		return u.String()
	})
	dumpLogs(t, a, b)
	for _, r := range []*region{a, b} {
		other := map[string]string{"A": "B", "B": "A"}[r.name]
		if _, err := bus.EnsureOriginStream(t.Context(), r.js, r.name, []string{other}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); _ = bus.WatchOriginSources(ctx, r.js, r.name, slog.New(r.logs)) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	publish := func(r *region, n int) {
		for i := range n {
			if _, err := r.js.Publish(t.Context(), bus.OriginEventSubject(r.name), fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(a, 1)
	publish(b, 2)
	testenv.Eventually(t, 15*time.Second, func() bool { return b.originCount(t, "A") == 1 && a.originCount(t, "B") == 2 }, "sourcing never started")

	spy, err := b.nc.SubscribeSync(bus.APIPrefix("A") + ".CONSUMER.CREATE." + bus.OriginStreamName("A") + ".>")
	if err != nil {
		t.Fatal(err)
	}
	proxy.setCut(true)
	publish(a, 5) // A keeps taking events while cut off
	if _, err := spy.NextMsg(45 * time.Second); err != nil {
		t.Fatalf("B's source never retried during the cut: %v", err)
	}
	_ = spy.Unsubscribe()
	healed := time.Now()
	proxy.setCut(false)
	testenv.Eventually(t, catchUpBound, func() bool { return b.originCount(t, "A") == 6 }, "B's origin stream did not catch up")
	t.Logf("B's origin stream caught up %.2fs after the link healed", time.Since(healed).Seconds())
	time.Sleep(500 * time.Millisecond) //nolint:forbidigo // nothing must arrive twice
	if got := b.originCount(t, "A"); got != 6 {
		t.Errorf("B holds %d of A's events, want 6 (each once)", got)
	}
	if got := a.originCount(t, "B"); got != 2 {
		t.Errorf("A holds %d of B's events, want 2", got)
	}
	if got := a.originCount(t, "A"); got != 6 {
		t.Errorf("A holds %d of its own events, want 6 (none sourced back)", got)
	}
}
