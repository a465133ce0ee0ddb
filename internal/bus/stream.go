package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Purge stream limits.
const (
	// PurgeMaxAge is how long a purge stream keeps a purge. An edge cut off for longer cannot
	// catch up from the stream and must drop its cache instead.
	PurgeMaxAge = 7 * 24 * time.Hour
	// PurgeDuplicateWindow is how long a purge stream remembers a Nats-Msg-Id to drop a repeated
	// publish of the same purge.
	PurgeDuplicateWindow = 2 * time.Minute
)

// SourceStallAfter is how long a source may go without a message or heartbeat before KickSources
// and WatchSources treat it as stalled. A healthy source hears a heartbeat every second.
const SourceStallAfter = 3 * time.Second

// apiPrefix is the JetStream API prefix that reaches domain's JetStream across the links.
func apiPrefix(domain string) string { return "$JS." + domain + ".API" }

// purgeStreamConfig is region's purge stream's configuration.
func purgeStreamConfig(region string, others []string) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:              PurgeStreamName(region),
		Description:       "Duet purges accepted in region " + region + ", and those of the other regions (sourced)",
		Subjects:          []string{purgeStreamSubjects(region)},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxAge:            PurgeMaxAge,
		MaxMsgsPerSubject: 1,
		Duplicates:        PurgeDuplicateWindow,
	}
	for _, o := range others {
		cfg.Sources = append(cfg.Sources, purgeSource(o))
	}
	return cfg
}

// purgeSource is how a purge stream sources other's purge stream: through other's JetStream
// domain, and only other's own subjects, so that purges sourced from a third region are not
// sourced twice, nor a region's own purges sourced back from another region. (The server's own
// cycle check skips external sources, so the filter is what prevents the loop.) No DeliverPrefix:
// the regions share one account, and the default delivery subject crosses the links by interest.
func purgeSource(other string) *jetstream.StreamSource {
	return &jetstream.StreamSource{
		Name:          PurgeStreamName(other),
		FilterSubject: purgeStreamSubjects(other),
		External:      &jetstream.ExternalStream{APIPrefix: apiPrefix(other)},
	}
}

// EnsurePurgeStream creates region's purge stream, or updates it to the configuration below, and
// returns it. The stream, PurgeStreamName(region), captures "duet.purge.<region>.>" (purges and
// ticks published in the region) in file storage with limits retention: PurgeMaxAge,
// one message per subject (purge subjects are unique per id, so this only collapses each region's
// ticks to the latest), and a PurgeDuplicateWindow for Nats-Msg-Id. It sources the purge stream
// of every region in others through that region's JetStream domain (External APIPrefix
// "$JS.<other>.API"), filtered to the other region's own subjects, so every region's stream holds
// every region's purges and ticks exactly once. Sourcing catches up by itself after a partition,
// but can take tens of seconds to notice: run WatchSources beside the stream.
func EnsurePurgeStream(ctx context.Context, js jetstream.JetStream, region string, others []string) (jetstream.Stream, error) {
	if err := checkRegions(region, others); err != nil {
		return nil, fmt.Errorf("ensure purge stream: %w", err)
	}
	sorted := slices.Sorted(slices.Values(others))
	st, err := js.CreateOrUpdateStream(ctx, purgeStreamConfig(region, sorted))
	if err != nil {
		return nil, fmt.Errorf("ensure purge stream %s: %w", PurgeStreamName(region), err)
	}
	return st, nil
}

// checkRegions validates a region and the list of the other regions.
func checkRegions(region string, others []string) error {
	var errs []error
	if err := ValidRegion(region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	}
	seen := map[string]bool{}
	for _, o := range others {
		if err := ValidRegion(o); err != nil {
			errs = append(errs, fmt.Errorf("other region: %w", err))
		}
		if o == region {
			errs = append(errs, fmt.Errorf("%w: region %q is listed among the others", ErrInvalidName, o))
		}
		if seen[o] {
			errs = append(errs, fmt.Errorf("%w: region %q is listed twice", ErrInvalidName, o))
		}
		seen[o] = true
	}
	return errors.Join(errs...)
}

// SourceInfo is the state of a purge stream's sourcing of one other region.
type SourceInfo struct {
	// Active is how long ago the stream last heard from the source (a message or a heartbeat,
	// every second when healthy); negative when it has not heard from it since the source was
	// (re)started (server start, KickSources).
	Active time.Duration
	// Lag is how many messages the source had left to send when last heard from; it is only as
	// fresh as Active.
	Lag uint64
	// Error is the server's last error for the source ("" when none).
	Error string
}

// stalled reports whether the source has gone quiet for longer than SourceStallAfter.
func (i SourceInfo) stalled() bool {
	return i.Active < 0 || i.Active > SourceStallAfter || i.Error != ""
}

// SourceStatus reports, for each region that region's purge stream sources, how long ago the
// stream last heard from it and its lag.
func SourceStatus(ctx context.Context, js jetstream.JetStream, region string) (map[string]SourceInfo, error) {
	_, status, err := streamState(ctx, js, purgeStreams(), region)
	return status, err
}

// streamKind names one family of per-region streams that source each other (purge streams,
// origin event streams), so that the source status, KickSources and WatchSources serve both.
type streamKind struct {
	what     string                             // "purge", for messages
	name     func(region string) string         // region → its stream's name
	regionOf func(stream string) (string, bool) // stream name → its region
}

// purgeStreams is the purge streams' family.
func purgeStreams() streamKind {
	return streamKind{what: "purge", name: PurgeStreamName, regionOf: regionOfPurgeStream}
}

// streamState returns region's stream's configuration and source status.
func streamState(ctx context.Context, js jetstream.JetStream, kind streamKind, region string) (jetstream.StreamConfig, map[string]SourceInfo, error) {
	name := kind.name(region)
	st, err := js.Stream(ctx, name)
	if err != nil {
		return jetstream.StreamConfig{}, nil, fmt.Errorf("%s stream %s: %w", kind.what, name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return jetstream.StreamConfig{}, nil, fmt.Errorf("%s stream %s info: %w", kind.what, name, err)
	}
	status := make(map[string]SourceInfo, len(info.Sources))
	for _, s := range info.Sources {
		other, ok := kind.regionOf(s.Name)
		if !ok {
			continue
		}
		si := SourceInfo{Active: s.Active, Lag: s.Lag}
		if s.Error != nil {
			si.Error = s.Error.Error()
		}
		status[other] = si
	}
	return info.Config, status, nil
}

// KickSources restarts the sourcing of every region whose source in region's purge stream is
// stalled (not heard from for SourceStallAfter, or in error), and returns the regions it
// restarted. Healthy sources are left alone, so it is cheap to call whenever the caller has a
// hint that a link is back (core NATS ticks or heartbeats from a region resume, a leafnode
// reconnects); WatchSources calls it by itself.
//
// Why: a source that lost its region retries with a backoff of its own, and one retry sent into
// a cut link waits 30 s for an answer, so the stream noticed a healed link only 30-60 s later
// (about 40 s measured). The server offers no "retry now", and re-applying an unchanged
// configuration (UpdateStream) does not touch running sources; removing a source and adding it
// back does: the new source starts at once, from where the stream left off (the server keeps
// per-source positions, and recovers them from the stored messages), so nothing is skipped or
// stored twice.
func KickSources(ctx context.Context, js jetstream.JetStream, region string) ([]string, error) {
	return kickSources(ctx, js, purgeStreams(), region, func(string) bool { return true })
}

// kickSources restarts the stalled sources of region's stream of kind that want accepts.
func kickSources(ctx context.Context, js jetstream.JetStream, kind streamKind, region string, want func(other string) bool) ([]string, error) {
	cfg, status, err := streamState(ctx, js, kind, region)
	if err != nil {
		return nil, fmt.Errorf("kick sources: %w", err)
	}
	var kick []string
	for other, si := range status {
		if si.stalled() && want(other) {
			kick = append(kick, other)
		}
	}
	if len(kick) == 0 {
		return nil, nil
	}
	slices.Sort(kick)
	all := cfg.Sources
	cfg.Sources = slices.DeleteFunc(slices.Clone(all), func(s *jetstream.StreamSource) bool {
		other, _ := kind.regionOf(s.Name)
		return slices.Contains(kick, other)
	})
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("kick sources %v of %s: remove: %w", kick, cfg.Name, err)
	}
	cfg.Sources = all
	// Put the sources back even when ctx has just ended: the stream must not stay without them.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := js.UpdateStream(actx, cfg); err != nil {
		return nil, fmt.Errorf("kick sources %v of %s: add back (run EnsurePurgeStream to repair): %w", kick, cfg.Name, err)
	}
	return kick, nil
}

// Pacing of WatchSources.
const (
	watchInterval = time.Second
	// kickHoldOff is how long WatchSources leaves a source it restarted to come up before it
	// restarts it again.
	kickHoldOff = 5 * time.Second
	// probeTimeout bounds one check that another region's purge stream answers.
	probeTimeout = time.Second
)

// WatchSources keeps region's purge stream's sourcing caught up until ctx ends (it then returns
// nil). Every second it looks for stalled sources (see KickSources) and asks each one's region,
// through its JetStream domain across the links, whether its purge stream answers. A source
// found stalled while its region answers, on two checks in a row, is restarted: the link is up,
// and a request the source sent since the link came up would have been answered by now, so the
// source is waiting for an answer that will never come (a request sent into the cut link) or in
// its retry backoff. It restarts a source at most every 5 s, and logs each restart. While a region
// is cut off, nothing is restarted. Run one per purge stream (in the purge service); a few
// (replicas) are harmless.
func WatchSources(ctx context.Context, js jetstream.JetStream, region string, log *slog.Logger) error {
	return watchSources(ctx, js, purgeStreams(), region, log)
}

// watchSources is WatchSources for region's stream of kind.
func watchSources(ctx context.Context, js jetstream.JetStream, kind streamKind, region string, log *slog.Logger) error {
	if err := ValidRegion(region); err != nil {
		return fmt.Errorf("watch sources: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &sourceWatch{
		js: js, kind: kind, region: region, log: log.With("component", "bus", "region", region),
		domains: map[string]jetstream.JetStream{}, suspect: map[string]bool{}, kicked: map[string]time.Time{},
	}
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		w.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sourceWatch is WatchSources's state; only its goroutine uses it.
type sourceWatch struct {
	js      jetstream.JetStream
	kind    streamKind
	region  string
	log     *slog.Logger
	domains map[string]jetstream.JetStream // other region → a JetStream context in its domain
	suspect map[string]bool                // other region → stalled while answering at the last check
	kicked  map[string]time.Time           // other region → when its source was last restarted
}

func (w *sourceWatch) check(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error(w.kind.what+" source watch panicked", "panic", r)
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, status, err := streamState(cctx, w.js, w.kind, w.region)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Debug("source status unavailable", "stream", w.kind.name(w.region), "error", err)
		}
		clear(w.suspect)
		return
	}
	var kick []string
	for other, si := range status {
		was := w.suspect[other]
		w.suspect[other] = si.stalled() && w.answers(cctx, other)
		if was && w.suspect[other] && time.Since(w.kicked[other]) >= kickHoldOff {
			kick = append(kick, other)
		}
	}
	if len(kick) == 0 {
		return
	}
	kicked, err := kickSources(cctx, w.js, w.kind, w.region, func(other string) bool { return slices.Contains(kick, other) })
	if err != nil {
		w.log.Warn(w.kind.what+" sources not restarted", "sources", kick, "error", err)
		return
	}
	now := time.Now()
	for _, other := range kicked {
		w.kicked[other] = now
		w.suspect[other] = false
		si := status[other]
		w.log.Info(w.kind.what+" source restarted: its region answers but the source had stalled",
			"source_region", other, "silent_for", si.Active, "source_error", si.Error)
	}
}

// answers reports whether other's stream of the watched kind answers through other's JetStream
// domain.
func (w *sourceWatch) answers(ctx context.Context, other string) bool {
	djs, ok := w.domains[other]
	if !ok {
		var err error
		if djs, err = jetstream.NewWithDomain(w.js.Conn(), other); err != nil {
			return false
		}
		w.domains[other] = djs
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := djs.Stream(pctx, w.kind.name(other))
	return err == nil
}
