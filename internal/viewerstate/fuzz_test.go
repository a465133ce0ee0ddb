package viewerstate_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/duetcdn/duet/internal/viewerstate"
)

// FuzzDecode feeds the JSON decoders of the network (PUT bodies from viewers, stored copies from
// other regions): they never panic, every refusal wraps ErrBadInput, and what they accept holds
// the limits; two stored copies merge to the same state in either order, and a copy merged with
// itself is itself.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"position": 12.5, "seek": true, "rendition": "540p", "audio": "en", "subtitle": "", "finished": false}`,
		`{"lang": "fr", "volume": null}`,
		`{"at":{"w":1700000000000,"l":2,"r":"eu"},"position":{"p":10,"e":{"w":1,"r":"us"},"s":{"w":2,"r":"eu"}},"audio":{"v":"en","s":{"w":2,"r":"eu"}}}`,
		`{"at":{"w":5,"r":"us"},"erased":{"w":5,"r":"us"},"settings":{"lang":{"v":"de","s":{"w":4,"r":"us"}},"x":{"v":null,"s":{"w":6,"r":"eu"}}}}`,
		`{"position": -1}`, `{"position": 1e400}`, `{} {}`, `[]`, `null`, `{"a":"\u0000"}`,
	} {
		f.Add([]byte(s), []byte(`{"at":{"w":3,"r":"eu"},"rendition":{"v":"720p","s":{"w":3,"r":"eu"}}}`))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if u, err := viewerstate.DecodeTitleUpdate(a); err != nil {
			if !errors.Is(err, viewerstate.ErrBadInput) {
				t.Fatalf("title update error without ErrBadInput: %v", err)
			}
		} else if u.Position != nil && (*u.Position < 0 || *u.Position > viewerstate.MaxPosition) {
			t.Fatalf("accepted position %v", *u.Position)
		}
		if u, err := viewerstate.DecodeSettingsUpdate(a); err != nil {
			if !errors.Is(err, viewerstate.ErrBadInput) {
				t.Fatalf("settings error without ErrBadInput: %v", err)
			}
		} else if len(u) == 0 || len(u) > viewerstate.MaxSettings {
			t.Fatalf("accepted %d settings", len(u))
		}
		da, errA := viewerstate.DecodeDoc(a)
		db, errB := viewerstate.DecodeDoc(b)
		if errA != nil && !errors.Is(errA, viewerstate.ErrBadInput) {
			t.Fatalf("stored copy error without ErrBadInput: %v", errA)
		}
		if errA != nil || errB != nil {
			return
		}
		ab, _ := viewerstate.Merge(da, db)
		ba, _ := viewerstate.Merge(db, da)
		if j1, j2 := mustJSON(t, ab.Visible()), mustJSON(t, ba.Visible()); j1 != j2 {
			t.Fatalf("merge depends on order:\n%s\n%s", j1, j2)
		}
		aa, _ := viewerstate.Merge(da, da)
		a1, _ := viewerstate.Merge(da)
		if j1, j2 := mustJSON(t, aa), mustJSON(t, a1); j1 != j2 {
			t.Fatalf("merging a copy with itself changed it:\n%s\n%s", j1, j2)
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
