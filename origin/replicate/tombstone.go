package replicate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/bus"
)

// Tombstones live in a JetStream key-value bucket per region ("duet_tombstones_<region>"),
// keyed by the base64url of the object key (KV keys allow few characters), with a TTL: the
// region's NATS is already durable, replicated by the operators and reachable whenever events
// are, so it needs no other store.

// tombstone is a remembered delete.
type tombstone struct {
	// Time is the delete's time.
	Time time.Time `json:"time"`
	// Region is where the delete was made first.
	Region string `json:"region"`
}

type tombstones struct{ kv jetstream.KeyValue }

// TombstoneBucket is the key-value bucket holding region's tombstones.
func TombstoneBucket(region string) string { return bus.TombstoneBucket(region) }

func openTombstones(ctx context.Context, js jetstream.JetStream, region string, ttl time.Duration) (*tombstones, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: TombstoneBucket(region), Description: "Duet deletes of region " + region + "'s bucket, against resurrection",
		TTL: ttl, Storage: jetstream.FileStorage, History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("open tombstones %s: %w", TombstoneBucket(region), err)
	}
	return &tombstones{kv: kv}, nil
}

func kvKey(objectKey string) string { return base64.RawURLEncoding.EncodeToString([]byte(objectKey)) }

// get returns key's tombstone; ok is false when there is none.
func (t *tombstones) get(ctx context.Context, key string) (tombstone, bool, error) {
	e, err := t.kv.Get(ctx, kvKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return tombstone{}, false, nil
	}
	if err != nil {
		return tombstone{}, false, fmt.Errorf("read tombstone of %s: %w", key, err)
	}
	var ts tombstone
	if err := json.Unmarshal(e.Value(), &ts); err != nil {
		return tombstone{}, false, nil // unreadable: as if none
	}
	return ts, true, nil
}

// put records a delete unless a later one is already recorded.
func (t *tombstones) put(ctx context.Context, key string, ts tombstone) error {
	if old, ok, err := t.get(ctx, key); err == nil && ok && !ts.Time.After(old.Time) {
		return nil
	}
	b, _ := json.Marshal(ts)
	if _, err := t.kv.Put(ctx, kvKey(key), b); err != nil {
		return fmt.Errorf("record tombstone of %s: %w", key, err)
	}
	return nil
}

// all returns every tombstone by object key.
func (t *tombstones) all(ctx context.Context) (map[string]tombstone, error) {
	lister, err := t.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return map[string]tombstone{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list tombstones: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	out := map[string]tombstone{}
	for k := range lister.Keys() {
		raw, err := base64.RawURLEncoding.DecodeString(k)
		if err != nil {
			continue
		}
		if ts, ok, err := t.get(ctx, string(raw)); err == nil && ok {
			out[string(raw)] = ts
		}
	}
	return out, nil
}
