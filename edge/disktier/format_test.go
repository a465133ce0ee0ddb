package disktier

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/duetcdn/duet/edge/object"
)

// filledMeta sets every field of object.Meta to a non-zero value by reflection, so that a
// field added to Meta and forgotten by the encoding fails the round trip.
func filledMeta(t testing.TB, seed int) object.Meta {
	t.Helper()
	var m object.Meta
	n := seed
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		n++
		switch {
		case v.Type() == reflect.TypeFor[time.Time]():
			v.Set(reflect.ValueOf(time.Date(2000+n, time.Month(1+n%12), 1+n%28, n%24, n%60, n%60, 123456789+n, time.UTC)))
			return
		case v.Type() == reflect.TypeFor[time.Duration]():
			v.SetInt(-int64(n) * 1_000_000_007)
			return
		}
		switch v.Kind() {
		case reflect.String:
			v.SetString(fmt.Sprintf("%s-%d-\x00ü", path, n))
		case reflect.Int, reflect.Int64, reflect.Int32:
			v.SetInt(int64(n) * 1_000_003)
		case reflect.Uint, reflect.Uint64, reflect.Uint32:
			if v.Type().Bits() == 64 {
				v.SetUint(math.MaxUint64 - uint64(n))
			} else {
				v.SetUint(uint64(n) | 1<<31)
			}
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Slice:
			s := reflect.MakeSlice(v.Type(), 3, 3)
			for i := range 3 {
				fill(s.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
			v.Set(s)
		case reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		default:
			t.Fatalf("object.Meta field %s has kind %s: extend appendMeta/decodeMeta and this test", path, v.Kind())
		}
	}
	fill(reflect.ValueOf(&m).Elem(), "Meta")
	return m
}

func roundTrip(t *testing.T, m object.Meta) object.Meta {
	t.Helper()
	b := appendMeta(nil, &m)
	got, err := decodeMeta(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got
}

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	full := filledMeta(t, 0)
	if got := roundTrip(t, full); !reflect.DeepEqual(got, full) {
		t.Fatalf("round trip of a full Meta:\n got %#v\nwant %#v", got, full)
	}
	if got := roundTrip(t, object.Meta{}); !reflect.DeepEqual(got, object.Meta{}) {
		t.Fatalf("round trip of the zero Meta: %#v", got)
	}

	// nil and empty slices are the same thing.
	empty := object.Meta{Key: "k", Header: []object.Field{}, Tags: []string{}}
	if got := roundTrip(t, empty); got.Header != nil || got.Tags != nil || got.Key != "k" {
		t.Fatalf("empty slices: %#v", got)
	}

	// Extremes.
	ext := object.Meta{
		Key: string(bytes.Repeat([]byte{0xff, 0}, 300)), Status: -1,
		InitialAge: math.MinInt64, FreshFor: math.MaxInt64, Size: math.MaxInt64, Total: math.MinInt64,
		Checksum: math.MaxUint64, Flags: math.MaxUint32, MustRevalidate: true,
		LastModified: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),            // just after the zero time
		RequestTime:  time.Date(1600, 1, 1, 0, 0, 0, 999999999, time.UTC), // before 1970
		ResponseTime: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	if got := roundTrip(t, ext); !reflect.DeepEqual(got, ext) {
		t.Fatalf("extremes:\n got %#v\nwant %#v", got, ext)
	}

	// Non-UTC times keep the instant and the offset.
	zones := []*time.Location{time.Local, time.FixedZone("EST", -5*3600), time.FixedZone("", 5*3600+1800)}
	for _, loc := range zones {
		want := time.Date(2024, 7, 1, 12, 30, 15, 987654321, loc)
		got := roundTrip(t, object.Meta{ResponseTime: want}).ResponseTime
		_, wo := want.Zone()
		_, go_ := got.Zone()
		if !got.Equal(want) || wo != go_ {
			t.Fatalf("time in %s: got %v, want %v", loc, got, want)
		}
	}
	// time.Now carries a monotonic reading, which is dropped.
	now := time.Now()
	if got := roundTrip(t, object.Meta{RequestTime: now}).RequestTime; !got.Equal(now) {
		t.Fatalf("time.Now: got %v, want %v", got, now)
	}
}

func TestDecodeMetaRejectsGarbage(t *testing.T) {
	t.Parallel()
	full := filledMeta(t, 3)
	b := appendMeta(nil, &full)
	for i := range len(b) {
		if _, err := decodeMeta(b[:i]); err == nil {
			t.Fatalf("decoding the first %d of %d bytes succeeded", i, len(b))
		}
	}
	if _, err := decodeMeta(append(b, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func TestTrailer(t *testing.T) {
	t.Parallel()
	tr := appendTrailer(nil, 1234, 0xdeadbeef)
	if len(tr) != trailerSize {
		t.Fatalf("trailer is %d bytes", len(tr))
	}
	n, sum, err := parseTrailer(tr)
	if err != nil || n != 1234 || sum != 0xdeadbeef {
		t.Fatalf("parse: %d %x %v", n, sum, err)
	}
	bad := bytes.Clone(tr)
	bad[19]++ // version
	if _, _, err := parseTrailer(bad); err == nil {
		t.Fatal("wrong version accepted")
	}
	bad = bytes.Clone(tr)
	bad[13]++ // magic
	if _, _, err := parseTrailer(bad); err == nil {
		t.Fatal("wrong magic accepted")
	}
	if _, _, err := parseTrailer(appendTrailer(nil, MaxMetaBytes+1, 0)); err == nil {
		t.Fatal("oversized meta length accepted")
	}
}

func FuzzDecodeMeta(f *testing.F) {
	full := filledMeta(f, 0)
	f.Add(appendMeta(nil, &full))
	f.Add(appendMeta(nil, &object.Meta{}))
	f.Add(appendMeta(nil, &object.Meta{Key: "k", ResponseTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600))}))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes to the same thing.
		re := appendMeta(nil, &m)
		m2, err := decodeMeta(re)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if re2 := appendMeta(nil, &m2); !bytes.Equal(re, re2) {
			t.Fatalf("unstable encoding:\n%x\n%x", re, re2)
		}
	})
}
