package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"eu-west_1", true},
		{"A", true},
		{strings.Repeat("x", MaxNameLen), true},
		{"", false},
		{strings.Repeat("x", MaxNameLen+1), false},
		{"eu.west", false},
		{"eu*", false},
		{"eu>", false},
		{"eu west", false},
		{"région", false},
		{"a/b", false},
	} {
		err := ValidName(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) error %v does not wrap ErrInvalidName", tc.name, err)
		}
	}
	if err := ValidRegion("ack"); !errors.Is(err, ErrInvalidName) {
		t.Errorf(`ValidRegion("ack") = %v, want ErrInvalidName (it would capture the acknowledgements)`, err)
	}
	if err := ValidRegion("eu1"); err != nil {
		t.Errorf(`ValidRegion("eu1") = %v`, err)
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{HealthSubject("eu1", "edge-a"), "duet.health.eu1.edge-a"},
		{EventSubject("edge_down"), "duet.events.edge_down"},
		{PurgeSubject("eu1", "p1"), "duet.purge.eu1.cmd.p1"},
		{PurgeTickSubject("eu1"), "duet.purge.eu1.tick"},
		{PurgeAckSubject("r", "e", "p1"), "duet.purge.ack.r.e.p1"},
		{PurgeStreamName("eu1"), "PURGE_eu1"},
		{purgeStreamSubjects("eu1"), "duet.purge.eu1.>"},
		{apiPrefix("eu1"), "$JS.eu1.API"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// FuzzValidName: a valid name is exactly one subject token, so the subjects built from it have a
// fixed shape, and region names other than "ack" never collide with the acknowledgements.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"eu1", "", "a.b", "ack", ">", "x y", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidName(s) != nil {
			return
		}
		for _, subj := range []string{PurgeSubject(s, s), HealthSubject(s, s), PurgeTickSubject(s), PurgeAckSubject(s, s, s)} {
			for tok := range strings.SplitSeq(subj, ".") {
				if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
					t.Fatalf("subject %q from valid name %q has a bad token %q", subj, s, tok)
				}
			}
		}
		if n := strings.Count(PurgeSubject(s, s), "."); n != 4 {
			t.Fatalf("PurgeSubject(%q) has %d dots, want 4", s, n)
		}
		if ValidRegion(s) == nil && strings.HasPrefix(PurgeSubject(s, s), "duet.purge.ack.") {
			t.Fatalf("region %q's purges would be taken for acknowledgements", s)
		}
	})
}
