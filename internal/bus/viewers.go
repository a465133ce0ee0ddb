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

// Viewer state buckets: each region keeps its viewers' state (package viewerstate: resume
// positions, choices, settings, erasures) in a JetStream key-value bucket of its own,
// ViewerBucket(region). Keys start with the region that wrote them ("<region>.<viewer>...."): a
// region writes only its own keys, and its bucket sources every other region's, filtered to that
// region's own keys (so nothing comes back home or arrives twice through a third region) and
// renamed into the local bucket's subjects. Every region's bucket so ends up holding every
// region's copy of every key, and a reader merges the copies (one per region) by the conflict
// rule; no copy ever overwrites another region's. Sourcing stalls after a partition as the purge
// streams' does: run WatchViewerSources beside the bucket.

const viewerBucketPfx = "duet_viewers_"

// ViewerBucket is region's viewer state bucket: "duet_viewers_<region>" (its stream is
// "KV_duet_viewers_<region>").
func ViewerBucket(region string) string { return viewerBucketPfx + region }

// viewerStreamName is the stream behind region's viewer bucket.
func viewerStreamName(region string) string { return "KV_" + ViewerBucket(region) }

// viewerStreams is the viewer buckets' family (see streamKind).
func viewerStreams() streamKind {
	return streamKind{what: "viewer state", name: viewerStreamName, regionOf: func(stream string) (string, bool) {
		return strings.CutPrefix(stream, "KV_"+viewerBucketPfx)
	}}
}

// ViewerBucketConfig sizes a region's viewer bucket.
type ViewerBucketConfig struct {
	// Retention is how long a key lives after its last write (the bucket's TTL), erasures
	// included. Required.
	Retention time.Duration
	// MaxBytes caps the bucket; writes fail when it is full. Required.
	MaxBytes int64
	// MaxValueSize caps one value. Required.
	MaxValueSize int32
}

// EnsureViewerBucket creates region's viewer state bucket, or updates it to the configuration
// above, and returns it: file storage, one value per key (history 1), and a source per region in
// others through that region's JetStream domain, taking only the keys that region wrote
// ("$KV.duet_viewers_<other>.<other>.>") into the local bucket's subjects.
func EnsureViewerBucket(ctx context.Context, js jetstream.JetStream, region string, others []string, cfg ViewerBucketConfig) (jetstream.KeyValue, error) {
	if err := checkRegions(region, others); err != nil {
		return nil, fmt.Errorf("ensure viewer bucket: %w", err)
	}
	if cfg.Retention <= 0 || cfg.MaxBytes <= 0 || cfg.MaxValueSize <= 0 {
		return nil, fmt.Errorf("ensure viewer bucket: retention, max bytes and max value size must be positive")
	}
	kc := jetstream.KeyValueConfig{
		Bucket:       ViewerBucket(region),
		Description:  "Duet viewer state written in region " + region + ", and that of the other regions (sourced)",
		History:      1,
		TTL:          cfg.Retention,
		MaxBytes:     cfg.MaxBytes,
		MaxValueSize: cfg.MaxValueSize,
		Storage:      jetstream.FileStorage,
	}
	for _, o := range slices.Sorted(slices.Values(others)) {
		kc.Sources = append(kc.Sources, viewerSource(region, o))
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
	if err != nil {
		return nil, fmt.Errorf("ensure viewer bucket %s: %w", ViewerBucket(region), err)
	}
	return kv, nil
}

// viewerSource is how region's bucket sources other's: other's own keys only, renamed into
// region's bucket. (A source with its own subject transforms is taken as it is by nats.go.)
func viewerSource(region, other string) *jetstream.StreamSource {
	return &jetstream.StreamSource{
		Name: viewerStreamName(other),
		SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source:      "$KV." + ViewerBucket(other) + "." + other + ".>",
			Destination: "$KV." + ViewerBucket(region) + "." + other + ".>",
		}},
		External: &jetstream.ExternalStream{APIPrefix: apiPrefix(other)},
	}
}

// ViewerSourceStatus reports, for each region that region's viewer bucket sources, how long ago
// the bucket last heard from it and its lag.
func ViewerSourceStatus(ctx context.Context, js jetstream.JetStream, region string) (map[string]SourceInfo, error) {
	_, status, err := streamState(ctx, js, viewerStreams(), region)
	return status, err
}

// KickViewerSources is KickSources for region's viewer bucket.
func KickViewerSources(ctx context.Context, js jetstream.JetStream, region string) ([]string, error) {
	return kickSources(ctx, js, viewerStreams(), region, func(string) bool { return true })
}

// WatchViewerSources is WatchSources for region's viewer bucket: it keeps the bucket's sourcing
// caught up after a partition heals until ctx ends. Run one beside each region's viewer state
// (steering does).
func WatchViewerSources(ctx context.Context, js jetstream.JetStream, region string, log *slog.Logger) error {
	return watchSources(ctx, js, viewerStreams(), region, log)
}
