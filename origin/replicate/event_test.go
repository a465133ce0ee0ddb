package replicate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/duetcdn/duet/origin/s3conf"
)

// Events as the pinned MinIO publishes them (captured from its NATS target).
const (
	minioPutEvent    = `{"EventName":"s3:ObjectCreated:Put","Key":"notify/a/one.ts","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-28T05:20:39.603Z","eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"duetadmin"},"requestParameters":{"principalId":"duetadmin","region":"","sourceIPAddress":"127.0.0.1"},"responseElements":{"x-amz-id-2":"a632aafd5ca61d0c0fee5f546ad1f3759996dc3bb774826605490b4a33113e27","x-amz-request-id":"18EC1DE95DBB52E1","x-minio-deployment-id":"075f93fe-dc39-4864-8509-cf096bfadfb6","x-minio-origin-endpoint":"http://127.0.0.1:44063"},"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"notify","ownerIdentity":{"principalId":"duetadmin"},"arn":"arn:aws:s3:::notify"},"object":{"key":"a%2Fone.ts","size":14,"eTag":"43d5d43d25a571caee710b0d63a7b885","contentType":"application/octet-stream","userMetadata":{"content-type":"application/octet-stream","X-Amz-Meta-Surrogate-Key":"show"},"sequencer":"18EC1DE95FB5EE09"}},"source":{"host":"127.0.0.1","port":"","userAgent":"aws-sdk-go-v2/1.48.0 ua/2.1 os/linux lang/go#1.26.8 md/GOOS#linux md/GOARCH#amd64 api/s3#1.114.10 m/e"}}]}`
	minioDeleteEvent = `{"EventName":"s3:ObjectRemoved:Delete","Key":"notify/a/one.ts","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-28T05:20:39.619Z","eventName":"s3:ObjectRemoved:Delete","userIdentity":{"principalId":"duetadmin"},"requestParameters":{"principalId":"duetadmin","region":"","sourceIPAddress":"127.0.0.1"},"responseElements":{"content-length":"0","x-amz-id-2":"a632aafd5ca61d0c0fee5f546ad1f3759996dc3bb774826605490b4a33113e27","x-amz-request-id":"18EC1DE96145BC52","x-minio-deployment-id":"075f93fe-dc39-4864-8509-cf096bfadfb6","x-minio-origin-endpoint":"http://127.0.0.1:44063"},"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"notify","ownerIdentity":{"principalId":"duetadmin"},"arn":"arn:aws:s3:::notify"},"object":{"key":"a%2Fone.ts","sequencer":"18EC1DE9614D87E5"}},"source":{"host":"127.0.0.1","port":"","userAgent":"aws-sdk-go-v2/1.48.0 ua/2.1 os/linux lang/go#1.26.8 md/GOOS#linux md/GOARCH#amd64 api/s3#1.114.10 m/e"}}]}`
)

func TestParseEvents(t *testing.T) {
	evs, err := ParseEvents([]byte(minioPutEvent))
	if err != nil || len(evs) != 1 {
		t.Fatalf("ParseEvents(put) = %v, %v", evs, err)
	}
	ev := evs[0]
	wantMTime := time.Unix(0, 0x18EC1DE95FB5EE09).UTC().Truncate(time.Millisecond)
	if ev.Op != OpPut || ev.Bucket != "notify" || ev.Key != "a/one.ts" || ev.Size != 14 ||
		ev.ETag != "43d5d43d25a571caee710b0d63a7b885" || !ev.MTime.Equal(wantMTime) || ev.ByReplicator ||
		ev.Meta["surrogate-key"] != "show" {
		t.Errorf("put event = %+v", ev)
	}
	evs, err = ParseEvents([]byte(minioDeleteEvent))
	if err != nil || len(evs) != 1 {
		t.Fatalf("ParseEvents(delete) = %v, %v", evs, err)
	}
	if ev := evs[0]; ev.Op != OpDelete || ev.Key != "a/one.ts" || ev.ETag != "" || ev.MTime.IsZero() {
		t.Errorf("delete event = %+v", ev)
	}
	byRep := strings.Replace(minioDeleteEvent, "m/e", "m/e app/duet-replicate", 1)
	if evs, _ := ParseEvents([]byte(byRep)); len(evs) != 1 || !evs[0].ByReplicator {
		t.Errorf("a replicator's delete not recognised: %+v", evs)
	}
	accessed := strings.ReplaceAll(minioPutEvent, "s3:ObjectCreated:Put", "s3:ObjectAccessed:Get")
	if evs, err := ParseEvents([]byte(accessed)); err != nil || len(evs) != 0 {
		t.Errorf("an access event = %v, %v; want skipped", evs, err)
	}
	for name, bad := range map[string]string{
		"not json": "{",
		"bad key":  strings.Replace(minioPutEvent, "a%2Fone.ts", "a%zz", 1),
		"bad time": strings.Replace(minioPutEvent, "2026-11-28T05:20:39.603Z", "yesterday", 1),
		"no key":   strings.Replace(minioPutEvent, `"key":"a%2Fone.ts"`, `"key":""`, 1),
	} {
		if _, err := ParseEvents([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzParseEvents: the event parser reads what arrives from the network; it must not panic, and
// what it accepts is usable (a key, a bucket, a known op, no negative size).
func FuzzParseEvents(f *testing.F) {
	f.Add([]byte(minioPutEvent))
	f.Add([]byte(minioDeleteEvent))
	f.Add([]byte(`{"Records":[{"eventName":"s3:ObjectCreated:Put","eventTime":"2026-01-01T00:00:00Z","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-1,"sequencer":"zz"}}}]}`))
	f.Add([]byte(`{"Records":[{"eventName":"s3:ObjectRemoved:Delete","eventTime":"2026-01-01T00:00:00Z","s3":{"bucket":{"name":"b"},"object":{"key":"dir%2F"}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ParseEvents(data)
		if err != nil {
			return
		}
		for _, ev := range evs {
			if ev.Key == "" || ev.Bucket == "" || (ev.Op != OpPut && ev.Op != OpDelete) || ev.Size < 0 || strings.HasSuffix(ev.Key, "/") {
				t.Fatalf("accepted an unusable event %+v", ev)
			}
		}
	})
}

func TestVersionOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Version{MTime: t0, ETag: "aaa"}
	b := Version{MTime: t0, ETag: "bbb"}
	later := Version{MTime: t0.Add(time.Millisecond), ETag: "000", Region: "A"}
	switch {
	case !b.Newer(a) || a.Newer(b):
		t.Error("a tie must go to the larger ETag")
	case !later.Newer(b) || b.Newer(later):
		t.Error("the later mtime must win")
	case a.Newer(a) || !a.Same(a) || a.Same(b):
		t.Error("a version is the same as itself and no newer")
	case a.BeatsDelete(t0) || !later.BeatsDelete(t0):
		t.Error("a delete beats writes up to its time")
	}
	// A replica's version is its stamp; a native object's is its own.
	meta := later.stamp()
	if v := versionOf("B", "other", t0, meta); !v.Same(later) {
		t.Errorf("replica version = %+v, want %+v", v, later)
	}
	if v := versionOf("B", `"abc"`, t0.Add(1500*time.Microsecond), nil); v.ETag != "abc" || !v.MTime.Equal(t0.Add(time.Millisecond)) || v.Region != "B" {
		t.Errorf("native version = %+v", v)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Region = "A"
	good.Regions = []RegionConfig{{Name: "A", Config: s3conf.Config{Bucket: "a", AccessKey: "k", SecretKey: "s"}},
		{Name: "B", Config: s3conf.Config{Bucket: "b", AccessKey: "k", SecretKey: "s"}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	bad := good
	bad.Region = "C"
	bad.PurgeMode = "later"
	bad.PartSize = 1 << 20
	bad.Regions = append([]RegionConfig{}, good.Regions...)
	bad.Regions = append(bad.Regions, RegionConfig{Name: "A", Config: s3conf.Config{Endpoint: "s3.example"}})
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{`region "C" is not listed`, "purge_mode", "part_size", `regions[2].name: "A" is listed twice`, "regions[2].bucket", "regions[2].endpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	var r RegionConfig
	if err := r.UnmarshalText([]byte("name=A;endpoint=http://h:9000;bucket=b;access_key=ak;secret_key=sk")); err != nil ||
		r != (RegionConfig{Name: "A", Config: s3conf.Config{Endpoint: "http://h:9000", Bucket: "b", AccessKey: "ak", SecretKey: "sk"}}) {
		t.Errorf("UnmarshalText = %+v, %v", r, err)
	}
	if strings.Contains(r.String(), "sk") {
		t.Errorf("String shows the secret: %s", r)
	}
	if err := r.UnmarshalText([]byte("name=A;colour=blue")); err == nil {
		t.Error("an unknown region setting was accepted")
	}
}
