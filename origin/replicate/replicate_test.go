package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/testenv"
)

// TestReplicatePut: objects uploaded to A with plain PutObject (and one 208 MiB multipart
// object) appear in B with identical bytes, headers and user metadata, stamped as replicas;
// each region's edges get a soft purge of each URL that changed in its bucket.
func TestReplicatePut(t *testing.T) {
	t.Parallel()
	a, b := twoRegions(t)
	a.startReplicator(t, testConfig(a, a, b))
	b.startReplicator(t, testConfig(b, a, b))

	want := map[string]string{}
	for i := range 5 {
		key := fmt.Sprintf("vod/show/seg%d.ts", i)
		data := randomBytes(uint64(i), 1000+i*70000)
		a.put(t, key, data, map[string]string{"surrogate-key": "show"})
		want[key] = sha(data)
	}
	big := "vod/show/big.mp4"
	want[big] = putMultipart(t, a, big, 13, 16<<20) // 208 MiB

	for key, sum := range want {
		testenv.Eventually(t, 2*time.Minute, func() bool { return b.sum(t, key) == sum }, "%s never reached B with sha256 %s", key, sum)
	}
	h, ok := b.head(t, "vod/show/seg1.ts")
	if !ok {
		t.Fatal("replica vanished")
	}
	if aws.ToString(h.ContentType) != "video/mp2t" || aws.ToString(h.CacheControl) != "max-age=60" || h.Metadata["surrogate-key"] != "show" {
		t.Errorf("replica lost headers or metadata: type %q cache %q meta %v", aws.ToString(h.ContentType), aws.ToString(h.CacheControl), h.Metadata)
	}
	if h.Metadata[metaRegion] != "A" || h.Metadata[metaETag] == "" || h.Metadata[metaMTime] == "" {
		t.Errorf("replica not stamped: %v", h.Metadata)
	}
	// Automatic purges: A's edges for A's writes, B's edges for B's replica writes; both
	// regions' purge streams hold both (each sources the other's).
	for _, r := range []*testRegion{a, b} {
		for _, from := range []string{"A", "B"} {
			testenv.Eventually(t, 30*time.Second, func() bool {
				return count(r.purgeURLs(t, from), "/"+big+" soft=true") >= 1
			}, "%s's purge stream has no soft purge of /%s from %s", r.name, big, from)
		}
	}
	if got := metricValue(t, b, "duet_replicate_bytes_total", "from", "A"); got < 208<<20 {
		t.Errorf("bytes_total{from=A} = %.0f, want at least 208 MiB", got)
	}
	if got := metricValue(t, b, "duet_replicate_objects_total", "from", "A"); got != 6 {
		t.Errorf("objects_total{from=A,op=put} = %.0f, want 6 (each object once)", got)
	}
	if got := histogramCount(t, b, "duet_replicate_lag_seconds"); got != 6 {
		t.Errorf("lag observations = %d, want 6", got)
	}
	// Replicas are not replicated back: A's objects keep their own ETags and times.
	before := a.listing(t)
	time.Sleep(2 * time.Second) //nolint:forbidigo // watching for something that must not happen
	if after := a.listing(t); !maps.Equal(before, after) {
		t.Errorf("A's bucket changed after replication (ping-pong): %v → %v", before, after)
	}
}

// putMultipart uploads parts×partSize deterministic bytes as a multipart object and returns
// their sha256; it never holds more than one part in memory.
func putMultipart(t testing.TB, r *testRegion, key string, parts int, partSize int) string {
	t.Helper()
	ctx := t.Context()
	up, err := r.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		ContentType: aws.String("video/mp4")})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{42})
	buf := make([]byte, partSize)
	var done []types.CompletedPart
	for i := 1; i <= parts; i++ {
		_, _ = rng.Read(buf)
		h.Write(buf)
		out, err := r.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i)), Body: bytes.NewReader(buf)})
		if err != nil {
			t.Fatalf("upload part %d: %v", i, err)
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i))})
	}
	if _, err := r.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestReplicateOverwriteDelete: an overwrite and a delete in A reach B, and both regions' purge
// streams get a soft purge of the URL for each change.
func TestReplicateOverwriteDelete(t *testing.T) {
	t.Parallel()
	a, b := twoRegions(t)
	a.startReplicator(t, testConfig(a, a, b))
	b.startReplicator(t, testConfig(b, a, b))
	const key = "live/stream.m3u8"
	v1, v2 := []byte("#EXTM3U v1"), []byte("#EXTM3U v2, longer")
	a.put(t, key, v1, nil)
	testenv.Eventually(t, 30*time.Second, func() bool { return b.sum(t, key) == sha(v1) }, "v1 never reached B")
	purged := func(r *testRegion, from string) int { return count(r.purgeURLs(t, from), "/"+key+" soft=true") }
	testenv.Eventually(t, 30*time.Second, func() bool { return purged(b, "B") >= 1 && purged(b, "A") >= 1 }, "no purges for v1")
	nA, nB := purged(b, "A"), purged(b, "B")

	a.put(t, key, v2, nil)
	testenv.Eventually(t, 30*time.Second, func() bool { return b.sum(t, key) == sha(v2) }, "the overwrite never reached B")
	testenv.Eventually(t, 30*time.Second, func() bool { return purged(b, "A") > nA && purged(b, "B") > nB },
		"the overwrite was not purged in both regions")
	testenv.Eventually(t, 30*time.Second, func() bool { return purged(a, "B") > nB }, "A's stream misses B's purge")
	nA, nB = purged(b, "A"), purged(b, "B")

	a.del(t, key)
	testenv.Eventually(t, 30*time.Second, func() bool { _, ok := b.head(t, key); return !ok }, "the delete never reached B")
	testenv.Eventually(t, 30*time.Second, func() bool { return purged(b, "A") > nA && purged(b, "B") > nB },
		"the delete was not purged in both regions")
	if _, ok := a.head(t, key); ok {
		t.Fatal("the object came back in A")
	}
	// B's replicator's own writes and deletes are marked as such in B's events (what stops
	// them from going back to A).
	testenv.Eventually(t, 30*time.Second, func() bool {
		evs := b.ownEvents(t)
		return slices.ContainsFunc(evs, func(e Event) bool { return e.Op == OpDelete && e.Key == key && e.ByReplicator }) &&
			slices.ContainsFunc(evs, func(e Event) bool { return e.Op == OpPut && e.Key == key && e.ByReplicator && isReplica(e.Meta) })
	}, "B's events do not mark the replicator's writes and deletes")
}

// ownEvents reads the region's own events from its origin stream.
func (r *testRegion) ownEvents(t *testing.T) []Event {
	t.Helper()
	st, err := r.js.Stream(t.Context(), bus.OriginStreamName(r.name))
	if err != nil {
		return nil
	}
	info, err := st.Info(t.Context())
	if err != nil {
		return nil
	}
	var out []Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil || m.Subject != bus.OriginEventSubject(r.name) {
			continue
		}
		evs, _ := ParseEvents(m.Data)
		out = append(out, evs...)
	}
	return out
}

// TestReplicateOutage: B's MinIO is down while 50 objects are uploaded to A; once it is back,
// B holds all 50 and nothing else, and both buckets stay still (no ping-pong).
func TestReplicateOutage(t *testing.T) {
	t.Parallel()
	a, b := twoRegions(t)
	a.startReplicator(t, testConfig(a, a, b))
	b.startReplicator(t, testConfig(b, a, b))
	a.put(t, "warmup", []byte("w"), nil)
	testenv.Eventually(t, 30*time.Second, func() bool { return b.sum(t, "warmup") == sha([]byte("w")) }, "warm-up never reached B")

	if err := b.minio.Stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"warmup": sha([]byte("w"))}
	for i := range 50 {
		key := fmt.Sprintf("outage/%02d", i)
		data := randomBytes(uint64(100+i), 2000+i)
		a.put(t, key, data, nil)
		want[key] = sha(data)
	}
	time.Sleep(time.Second) //nolint:forbidigo // B stays down a little after the uploads
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := b.minio.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, func() bool { return len(b.listing(t)) == len(want) }, "B does not hold the 50 objects")
	for key, sum := range want {
		if got := b.sum(t, key); got != sum {
			t.Errorf("%s in B: sha256 %s, want %s", key, got, sum)
		}
	}
	checkStill(t, 3*time.Second, a, b)
	if got := b.listing(t); len(got) != len(want) {
		t.Errorf("B holds %d objects, want %d", len(got), len(want))
	}
}

// checkStill fails if any region's bucket changes (keys, ETags, times) during d.
func checkStill(t *testing.T, d time.Duration, regions ...*testRegion) {
	t.Helper()
	var before []map[string]string
	for _, r := range regions {
		before = append(before, r.listing(t))
	}
	time.Sleep(d) //nolint:forbidigo // watching for something that must not happen
	for i, r := range regions {
		if after := r.listing(t); !maps.Equal(before[i], after) {
			t.Errorf("%s's bucket changed while it should be still (ping-pong?): %d → %d objects", r.name, len(before[i]), len(after))
		}
	}
}

// TestSweepHeals: an object written to A while its bucket notification is off (so no event) is
// copied to B by B's sweep; a tombstone stops the sweep from resurrecting a deleted object
// that another region still holds.
func TestSweepHeals(t *testing.T) {
	t.Parallel()
	a, b := twoRegions(t)
	ra := a.startReplicator(t, testConfig(a, a, b))
	cfgB := testConfig(b, a, b)
	cfgB.PurgeMode = PurgeHard
	rb := b.startReplicator(t, cfgB)

	// A missed event.
	setNotify(t, a, false)
	a.put(t, "missed.ts", []byte("no event for me"), map[string]string{"surrogate-key": "m"})
	setNotify(t, a, true)
	if err := rb.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.sum(t, "missed.ts"); got != sha([]byte("no event for me")) {
		t.Fatalf("the sweep did not copy the missed object to B (sha256 %q)", got)
	}
	if h, _ := b.head(t, "missed.ts"); h == nil || h.Metadata["surrogate-key"] != "m" || h.Metadata[metaRegion] != "A" {
		t.Errorf("healed replica lacks metadata")
	}
	// The healed copy is a write in B's bucket: B's edges get a purge, hard as configured.
	testenv.Eventually(t, 30*time.Second, func() bool { return count(b.purgeURLs(t, "B"), "/missed.ts soft=false") >= 1 },
		"no hard purge of the healed object in B")

	// A deleted object that B still holds (B missed the delete: it comes back into B's bucket
	// with no event) must not come back to A from B.
	a.put(t, "gone.ts", []byte("old"), nil)
	testenv.Eventually(t, 30*time.Second, func() bool { return b.sum(t, "gone.ts") == sha([]byte("old")) }, "gone.ts never reached B")
	stale, _ := b.head(t, "gone.ts")
	a.del(t, "gone.ts")
	testenv.Eventually(t, 30*time.Second, func() bool { _, ok := b.head(t, "gone.ts"); return !ok }, "the delete never reached B")
	setNotify(t, b, false)
	b.put(t, "gone.ts", []byte("old"), stale.Metadata) // the stale replica, as if the delete had been missed
	setNotify(t, b, true)
	if err := ra.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.head(t, "gone.ts"); ok {
		t.Fatal("A's sweep resurrected a deleted object from B's stale copy")
	}
	if err := rb.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.head(t, "gone.ts"); ok {
		t.Fatal("B's sweep kept a copy older than its tombstone")
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		return metricValue(t, b, "duet_replicate_sweep_healed_total", "op", "put") >= 1 &&
			metricValue(t, b, "duet_replicate_sweep_healed_total", "op", "delete") >= 1
	}, "healed metrics not counted")
}

// setNotify turns the region's bucket notification on or off.
func setNotify(t *testing.T, r *testRegion, on bool) {
	t.Helper()
	if on {
		if err := EnsureNotification(t.Context(), r.s3, testBucket, r.arn); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := r.s3.PutBucketNotificationConfiguration(t.Context(), &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(testBucket), NotificationConfiguration: &types.NotificationConfiguration{}}); err != nil {
		t.Fatal(err)
	}
}

// metricValue reads one counter of the region's replicator.
func metricValue(t *testing.T, r *testRegion, name, label, value string) float64 {
	t.Helper()
	r.mu.Lock()
	reg := r.reg
	r.mu.Unlock()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// histogramCount is how many observations a histogram of the region's replicator has.
func histogramCount(t *testing.T, r *testRegion, name string) uint64 {
	t.Helper()
	r.mu.Lock()
	reg := r.reg
	r.mu.Unlock()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestConflict: both regions write the same key at about the same time; both converge on one
// version (the later write), and stay there.
func TestConflict(t *testing.T) {
	t.Parallel()
	a, b := twoRegions(t)
	a.startReplicator(t, testConfig(a, a, b))
	b.startReplicator(t, testConfig(b, a, b))
	for i := range 3 {
		key := fmt.Sprintf("conflict-%d", i)
		da, db := []byte("written in A "+key), []byte("written in B "+key)
		done := make(chan struct{})
		go func() { defer close(done); b.put(t, key, db, nil) }()
		a.put(t, key, da, nil)
		<-done
		testenv.Eventually(t, 30*time.Second, func() bool {
			sa, sb := a.sum(t, key), b.sum(t, key)
			return sa != "" && sa == sb
		}, "%s: A and B never converged", key)
		got := a.sum(t, key)
		if got != sha(da) && got != sha(db) {
			t.Fatalf("%s: converged on neither write", key)
		}
	}
	checkStill(t, 3*time.Second, a, b)
	for i := range 3 {
		key := fmt.Sprintf("conflict-%d", i)
		if a.sum(t, key) != b.sum(t, key) {
			t.Errorf("%s diverged", key)
		}
	}
}

// TestDeleteLosesToLaterWrite: a delete in A and a later overwrite in B (whose replicator is
// down at the time) converge on B's write in both regions: a delete beats only writes that are
// not later than it.
func TestDeleteLosesToLaterWrite(t *testing.T) {
	t.Parallel()
	a, b := twoRegions(t)
	a.startReplicator(t, testConfig(a, a, b))
	b.startReplicator(t, testConfig(b, a, b))
	const key = "contested.ts"
	a.put(t, key, []byte("first"), nil)
	testenv.Eventually(t, 30*time.Second, func() bool { return b.sum(t, key) == sha([]byte("first")) }, "first never reached B")

	b.stopReplicator()
	a.del(t, key)
	time.Sleep(10 * time.Millisecond) //nolint:forbidigo // the write must be later than the delete
	later := []byte("written in B after A's delete")
	b.put(t, key, later, nil)
	b.startReplicator(t, testConfig(b, a, b))
	testenv.Eventually(t, 30*time.Second, func() bool { return a.sum(t, key) == sha(later) }, "A did not take B's later write")
	checkStill(t, 3*time.Second, a, b)
	if got := b.sum(t, key); got != sha(later) {
		t.Fatalf("B lost its later write to an older delete (sha256 %q)", got)
	}
}
