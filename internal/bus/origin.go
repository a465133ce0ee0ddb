package bus

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Origin event streams: each region's object store (MinIO's NATS notification target) publishes
// its bucket notifications (object created, object removed) to OriginEventSubject(region), which
// the region's stream OriginStreamName(region) stores. Like the purge streams, every region's
// origin stream also sources every other region's, through that region's JetStream domain and
// filtered to that region's own subjects, so a region's replicator reads everything from its
// local NATS, and catches up by itself after a partition (WatchOriginSources shortens the wait).

// Origin stream limits.
const (
	// OriginMaxAge is how long an origin stream keeps an event. A replicator stopped for longer
	// misses events; its anti-entropy sweep heals what they would have done.
	OriginMaxAge = 7 * 24 * time.Hour
	// OriginMaxBytes caps one origin stream's size (oldest events go first); the sweep heals
	// what was dropped.
	OriginMaxBytes = 1 << 30
)

const (
	originPrefix    = "duet.origin."
	originStreamPfx = "DUET_ORIGIN_"
)

// originStreams is the origin event streams' family (see streamKind).
func originStreams() streamKind {
	return streamKind{what: "origin", name: OriginStreamName, regionOf: regionOfOriginStream}
}

// OriginEventSubject is where region's object store publishes its bucket notifications
// (JetStream, stream OriginStreamName(region)): "duet.origin.<region>.events". Configure MinIO's
// NATS notification target with this subject and JetStream on.
func OriginEventSubject(region string) string { return originPrefix + region + ".events" }

// OriginStreamName is region's origin event stream: "DUET_ORIGIN_<region>". It holds region's
// object store events and, by sourcing, those of every other region.
func OriginStreamName(region string) string { return originStreamPfx + region }

// originStreamSubjects is what region's origin stream captures: "duet.origin.<region>.>".
func originStreamSubjects(region string) string { return originPrefix + region + ".>" }

// RegionOfOriginSubject returns the region whose object store published an event on subject
// ("duet.origin.<region>.events"); ok is false for other subjects.
func RegionOfOriginSubject(subject string) (region string, ok bool) {
	rest, ok := strings.CutPrefix(subject, originPrefix)
	if !ok {
		return "", false
	}
	region, _, ok = strings.Cut(rest, ".")
	if !ok || region == "" {
		return "", false
	}
	return region, true
}

// regionOfOriginStream returns the region an origin stream name belongs to.
func regionOfOriginStream(stream string) (string, bool) {
	return strings.CutPrefix(stream, originStreamPfx)
}

// originStreamConfig is region's origin stream's configuration.
func originStreamConfig(region string, others []string) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:        OriginStreamName(region),
		Description: "Duet object store events of region " + region + ", and those of the other regions (sourced)",
		Subjects:    []string{originStreamSubjects(region)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      OriginMaxAge,
		MaxBytes:    OriginMaxBytes,
	}
	for _, o := range others {
		cfg.Sources = append(cfg.Sources, &jetstream.StreamSource{
			Name: OriginStreamName(o),
			// Only o's own events: never a third region's twice, nor ours back home.
			FilterSubject: originStreamSubjects(o),
			External:      &jetstream.ExternalStream{APIPrefix: apiPrefix(o)},
		})
	}
	return cfg
}

// EnsureOriginStream creates region's origin event stream, or updates it to the configuration
// below, and returns it. The stream, OriginStreamName(region), captures "duet.origin.<region>.>"
// in file storage with limits retention (OriginMaxAge, OriginMaxBytes), and sources the origin
// stream of every region in others through that region's JetStream domain, filtered to that
// region's own subjects, so every region's stream holds every region's events exactly once.
// Run WatchOriginSources beside it.
func EnsureOriginStream(ctx context.Context, js jetstream.JetStream, region string, others []string) (jetstream.Stream, error) {
	if err := checkRegions(region, others); err != nil {
		return nil, fmt.Errorf("ensure origin stream: %w", err)
	}
	sorted := slices.Sorted(slices.Values(others))
	st, err := js.CreateOrUpdateStream(ctx, originStreamConfig(region, sorted))
	if err != nil {
		return nil, fmt.Errorf("ensure origin stream %s: %w", OriginStreamName(region), err)
	}
	return st, nil
}

// OriginSourceStatus reports, for each region that region's origin stream sources, how long ago
// the stream last heard from it and its lag.
func OriginSourceStatus(ctx context.Context, js jetstream.JetStream, region string) (map[string]SourceInfo, error) {
	_, status, err := streamState(ctx, js, originStreams(), region)
	return status, err
}

// KickOriginSources is KickSources for region's origin stream.
func KickOriginSources(ctx context.Context, js jetstream.JetStream, region string) ([]string, error) {
	return kickSources(ctx, js, originStreams(), region, func(string) bool { return true })
}

// WatchOriginSources is WatchSources for region's origin stream: it keeps the stream's sourcing
// caught up after a partition heals (about a second instead of the server's 40 s) until ctx
// ends. Run one beside each region's replicator.
func WatchOriginSources(ctx context.Context, js jetstream.JetStream, region string, log *slog.Logger) error {
	return watchSources(ctx, js, originStreams(), region, log)
}
