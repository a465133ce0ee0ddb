package replicate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Op is what happened to an object.
type Op string

// Ops.
const (
	OpPut    Op = "put"
	OpDelete Op = "delete"
)

// Event is one object change read from an origin stream.
type Event struct {
	Op     Op
	Bucket string
	Key    string
	Size   int64
	// ETag is the object's ETag without quotes (puts only).
	ETag string
	// MTime is the object's modification time (puts; from MinIO's sequencer, in ms) or the
	// delete's time (deletes).
	MTime time.Time
	// Time is when the store emitted the event.
	Time time.Time
	// ByReplicator: the write or delete was made by a replicator (its User-Agent).
	ByReplicator bool
	// Meta is the object's user metadata, keys lower case without "x-amz-meta-" (puts only).
	Meta map[string]string
}

// replicatorAppID goes into the replicator's S3 User-Agent ("app/duet-replicate"); MinIO copies
// the User-Agent into the event, which is how events of the replicator's own writes are known.
const replicatorAppID = "duet-replicate"

// minioLog is the JSON MinIO's NATS target publishes (event.Log).
type minioLog struct {
	Records []struct {
		EventName string `json:"eventName"`
		EventTime string `json:"eventTime"`
		S3        struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object struct {
				Key          string            `json:"key"`
				Size         int64             `json:"size"`
				ETag         string            `json:"eTag"`
				UserMetadata map[string]string `json:"userMetadata"`
				Sequencer    string            `json:"sequencer"`
			} `json:"object"`
		} `json:"s3"`
		Source struct {
			UserAgent string `json:"userAgent"`
		} `json:"source"`
	} `json:"Records"`
}

// errIgnored marks an event that is valid but of no interest (an object access, a folder).
var errIgnored = errors.New("event ignored")

// ParseEvents reads a MinIO bucket notification (the JSON of its NATS target). Records of
// other kinds than object created or removed are skipped; a record that cannot be read is an
// error naming what is wrong.
func ParseEvents(data []byte) ([]Event, error) {
	var l minioLog
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("parse origin event: %w", err)
	}
	var out []Event
	for i, r := range l.Records {
		ev, err := parseRecord(r.EventName, r.EventTime, r.S3.Bucket.Name, r.S3.Object.Key, r.S3.Object.Size,
			r.S3.Object.ETag, r.S3.Object.Sequencer, r.S3.Object.UserMetadata, r.Source.UserAgent)
		if errors.Is(err, errIgnored) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse origin event record %d: %w", i, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func parseRecord(name, at, bucket, key string, size int64, etag, seq string, meta map[string]string, ua string) (Event, error) {
	var ev Event
	switch {
	case strings.HasPrefix(name, "s3:ObjectCreated:"):
		ev.Op = OpPut
	case strings.HasPrefix(name, "s3:ObjectRemoved:"):
		ev.Op = OpDelete
	default:
		return ev, errIgnored
	}
	k, err := url.QueryUnescape(key) // MinIO query-escapes keys in events
	if err != nil {
		return ev, fmt.Errorf("object key %q: %w", key, err)
	}
	if k == "" || bucket == "" {
		return ev, errors.New("no bucket or object key")
	}
	if strings.HasSuffix(k, "/") {
		return ev, errIgnored // a folder marker
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return ev, fmt.Errorf("event time %q: %w", at, err)
	}
	if size < 0 {
		return ev, fmt.Errorf("negative size %d", size)
	}
	ev.Bucket, ev.Key, ev.Time, ev.Size = bucket, k, t.UTC(), size
	ev.ByReplicator = strings.Contains(ua, "app/"+replicatorAppID)
	ev.MTime = ev.Time.Truncate(time.Millisecond)
	if ev.Op == OpDelete {
		return ev, nil
	}
	ev.ETag = strings.Trim(etag, `"`)
	// MinIO's sequencer is the object's modification time in hex nanoseconds: the same instant
	// that ListObjectsV2 reports (to the millisecond).
	if ns, err := strconv.ParseUint(seq, 16, 63); err == nil && ns > 0 {
		ev.MTime = time.Unix(0, int64(ns)).UTC().Truncate(time.Millisecond)
	}
	if len(meta) > 0 {
		ev.Meta = make(map[string]string, len(meta))
		for mk, mv := range meta {
			lk := strings.ToLower(mk)
			if rest, ok := strings.CutPrefix(lk, "x-amz-meta-"); ok {
				ev.Meta[rest] = mv
			}
		}
	}
	return ev, nil
}

// isReplica reports whether user metadata marks an object as a replicator's copy.
func isReplica(meta map[string]string) bool { return meta[metaRegion] != "" }
