package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/purgereq"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestMessagesJSON pins the wire format of the messages (golden files; -update rewrites them)
// and checks that each decodes back to itself.
func TestMessagesJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6000000, time.UTC)
	for _, tc := range []struct {
		name string
		msg  any
		ptr  any // a zero value of the same type to decode into
	}{
		{"purge", Purge{ID: "p1", Region: "eu1", Target: purgereq.Target{URLs: []string{"https://cdn.example/vod/a.m3u8"},
			Prefixes: []string{"https://cdn.example/vod/b/"}, Tags: []string{"show-42"}, Soft: true}, Accepted: at, By: "ops"}, &Purge{}},
		{"purge-minimal", Purge{ID: "p2", Region: "us1", Accepted: at}, &Purge{}},
		{"tick", Tick{Region: "eu1", At: at}, &Tick{}},
		{"purge-ack", PurgeAck{ID: "p1", Edge: "edge-a", Region: "eu1", Applied: at, Entries: 12, Error: "tag index unavailable"}, &PurgeAck{}},
		{"heartbeat", Heartbeat{Edge: "edge-a", Region: "eu1", URL: "https://a.eu1.cdn.example", State: StateServing, At: at,
			Connections: 120, RequestsPerSec: 850.5, EgressBytesPerSec: 1.25e9, CPU: 1.5, HitRatio: 0.97,
			MemoryBytes: 1 << 30, DiskBytes: 50 << 30, OriginHealthy: true}, &Heartbeat{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(tc.msg, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			file := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s changed:\n got: %s\nwant: %s", file, got, want)
			}
			if err := json.Unmarshal(want, tc.ptr); err != nil {
				t.Fatal(err)
			}
			if back := reflect.ValueOf(tc.ptr).Elem().Interface(); !reflect.DeepEqual(back, tc.msg) {
				t.Errorf("round trip: got %+v, want %+v", back, tc.msg)
			}
		})
	}
}

// TestPublishPurgeValidates: PublishPurge refuses what it must not store, before touching NATS.
func TestPublishPurgeValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    Purge
	}{
		{"no id", Purge{Region: "eu1"}},
		{"id with a dot", Purge{ID: "a.b", Region: "eu1"}},
		{"id with a wildcard", Purge{ID: "a>", Region: "eu1"}},
		{"no region", Purge{ID: "p1"}},
		{"bad region", Purge{ID: "p1", Region: "eu 1"}},
		{"reserved region", Purge{ID: "p1", Region: "ack"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PublishPurge(t.Context(), nil, tc.p)
			if !errors.Is(err, ErrInvalidPurge) {
				t.Errorf("PublishPurge(%+v) = %v, want ErrInvalidPurge", tc.p, err)
			}
		})
	}
	if err := PublishTick(t.Context(), nil, "eu.1", time.Now()); !errors.Is(err, ErrInvalidName) {
		t.Errorf("PublishTick with a bad region = %v, want ErrInvalidName", err)
	}
}

func TestEnsurePurgeStreamValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		region string
		others []string
	}{
		{"bad region", "eu.1", nil},
		{"bad other", "eu1", []string{"us 1"}},
		{"self among others", "eu1", []string{"eu1"}},
		{"other twice", "eu1", []string{"us1", "us1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EnsurePurgeStream(t.Context(), nil, tc.region, tc.others); !errors.Is(err, ErrInvalidName) {
				t.Errorf("EnsurePurgeStream(%q, %q) = %v, want ErrInvalidName", tc.region, tc.others, err)
			}
		})
	}
}

// TestPurgeStreamConfig pins the stream's configuration: what it captures, its limits, and that
// each source takes only the other region's own subjects through that region's domain.
func TestPurgeStreamConfig(t *testing.T) {
	t.Parallel()
	cfg := purgeStreamConfig("eu1", []string{"ap1", "us1"})
	if cfg.Name != "PURGE_eu1" || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "duet.purge.eu1.>" {
		t.Errorf("name %q subjects %v", cfg.Name, cfg.Subjects)
	}
	if cfg.MaxAge != 7*24*time.Hour || cfg.MaxMsgsPerSubject != 1 || cfg.Duplicates != 2*time.Minute {
		t.Errorf("limits: max age %s, per subject %d, duplicates %s", cfg.MaxAge, cfg.MaxMsgsPerSubject, cfg.Duplicates)
	}
	if len(cfg.Sources) != 2 {
		t.Fatalf("%d sources, want 2", len(cfg.Sources))
	}
	for i, o := range []string{"ap1", "us1"} {
		s := cfg.Sources[i]
		if s.Name != "PURGE_"+o || s.FilterSubject != "duet.purge."+o+".>" || s.External == nil || s.External.APIPrefix != "$JS."+o+".API" {
			t.Errorf("source %d = %+v (external %+v)", i, s, s.External)
		}
	}
}
