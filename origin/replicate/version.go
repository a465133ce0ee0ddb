package replicate

import (
	"strings"
	"time"
)

// Metadata a replicator stamps on every replica (user metadata, x-amz-meta-*).
const (
	metaRegion = "duet-source-region"
	metaETag   = "duet-source-etag"
	metaMTime  = "duet-source-mtime"
)

// Version is an object's logical version (see the package documentation).
type Version struct {
	// MTime is the time of the original write, to the millisecond.
	MTime time.Time
	// ETag is the original write's ETag, without quotes.
	ETag string
	// Region is where the original write happened.
	Region string
}

// Newer reports whether v wins over o: a later mtime, or the same mtime and a larger ETag.
func (v Version) Newer(o Version) bool {
	if !v.MTime.Equal(o.MTime) {
		return v.MTime.After(o.MTime)
	}
	return v.ETag > o.ETag
}

// Same reports whether v and o are the same write.
func (v Version) Same(o Version) bool { return v.MTime.Equal(o.MTime) && v.ETag == o.ETag }

// BeatsDelete reports whether v survives a delete made at t: only a strictly later write does.
func (v Version) BeatsDelete(t time.Time) bool { return v.MTime.After(t) }

// versionOf is the logical version of an object in region whose own ETag, mtime and user
// metadata are given: the stamped original for a replica, its own otherwise.
func versionOf(region, etag string, mtime time.Time, meta map[string]string) Version {
	if isReplica(meta) {
		if t, err := time.Parse(time.RFC3339Nano, meta[metaMTime]); err == nil {
			return Version{MTime: t.UTC(), ETag: meta[metaETag], Region: meta[metaRegion]}
		}
	}
	return Version{MTime: mtime.UTC().Truncate(time.Millisecond), ETag: strings.Trim(etag, `"`), Region: region}
}

// stamp is the metadata that marks a replica of v.
func (v Version) stamp() map[string]string {
	return map[string]string{metaRegion: v.Region, metaETag: v.ETag, metaMTime: v.MTime.UTC().Format(time.RFC3339Nano)}
}
