package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// decode reads a steering document into a generic map, keeping numbers as
// json.Number so integer-ness can be checked.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return m
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func strs(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not an array", v)
	}
	out := make([]string, len(list))
	for i, x := range list {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("%v is not a string", x)
		}
		out[i] = s
	}
	return out
}

// sessionInput is a steering answer after a failure: the client was on eu,
// eu's edges are down, us is a clone of eu on another host.
func sessionInput() (Input, []Pathway) {
	in := Input{
		TTL:       10*time.Second + 700*time.Millisecond,
		ReloadURI: "https://steer.example.net/v1/steer/hls?path=%2Fvod%2Fabc&_HLS_pathway=%22eu%22&_HLS_throughput=1&duet_pathway=old",
		Request:   Request{Pathway: "eu", Throughput: 5_140_000},
	}
	order := []Pathway{
		{ID: "eu", Down: true},
		{ID: "us", Clone: &Clone{BaseID: "eu", Host: "us.edge.example.net", Params: map[string]string{"token": "a&b", "cdn": "duet"}}},
		{ID: "ap", Clone: &Clone{BaseID: "eu", Host: "ap.edge.example.net:8443"}},
	}
	return in, order
}

// TestHLSFields checks an HLS Steering Manifest field by field against the
// Content Steering specification (see the package doc).
func TestHLSFields(t *testing.T) {
	t.Parallel()
	in, order := sessionInput()
	b, err := HLS(in, order)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "hls-steering.json", b)
	m := decode(t, b)

	// Exactly the spec's top-level keys; no DASH name.
	if got, want := keys(m), []string{"PATHWAY-CLONES", "PATHWAY-PRIORITY", "RELOAD-URI", "TTL", "VERSION"}; !slices.Equal(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	// VERSION: REQUIRED, the number 1.
	if m["VERSION"] != json.Number("1") {
		t.Errorf("VERSION %v", m["VERSION"])
	}
	// TTL: REQUIRED, whole seconds (10.7s → 10).
	if m["TTL"] != json.Number("10") {
		t.Errorf("TTL %v", m["TTL"])
	}
	// PATHWAY-PRIORITY: the failed pathway moved to the end, not dropped.
	if got := strs(t, m["PATHWAY-PRIORITY"]); !slices.Equal(got, []string{"us", "ap", "eu"}) {
		t.Errorf("PATHWAY-PRIORITY %v", got)
	}
	// RELOAD-URI: the base's own parameters kept, the client's _HLS_
	// parameters removed (the client adds fresh ones), the session's
	// pathway and throughput carried.
	u, err := url.Parse(m["RELOAD-URI"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" || u.Host != "steer.example.net" || u.Path != "/v1/steer/hls" {
		t.Errorf("RELOAD-URI %v", u)
	}
	want := url.Values{"path": {"/vod/abc"}, "duet_pathway": {"eu"}, "duet_throughput": {"5140000"}}
	if q := u.Query(); !reflect.DeepEqual(q, want) {
		t.Errorf("RELOAD-URI query %v, want %v", q, want)
	}
	// PATHWAY-CLONES: BASE-ID, ID, URI-REPLACEMENT{HOST, PARAMS}.
	clones, ok := m["PATHWAY-CLONES"].([]any)
	if !ok || len(clones) != 2 {
		t.Fatalf("PATHWAY-CLONES %v", m["PATHWAY-CLONES"])
	}
	c0 := clones[0].(map[string]any)
	if got := keys(c0); !slices.Equal(got, []string{"BASE-ID", "ID", "URI-REPLACEMENT"}) {
		t.Errorf("clone keys %v", got)
	}
	if c0["BASE-ID"] != "eu" || c0["ID"] != "us" {
		t.Errorf("clone %v", c0)
	}
	r0 := c0["URI-REPLACEMENT"].(map[string]any)
	if got := keys(r0); !slices.Equal(got, []string{"HOST", "PARAMS"}) {
		t.Errorf("URI-REPLACEMENT keys %v", got)
	}
	if r0["HOST"] != "us.edge.example.net" || !reflect.DeepEqual(r0["PARAMS"], map[string]any{"token": "a&b", "cdn": "duet"}) {
		t.Errorf("URI-REPLACEMENT %v", r0)
	}
	r1 := clones[1].(map[string]any)["URI-REPLACEMENT"].(map[string]any)
	if got := keys(r1); !slices.Equal(got, []string{"HOST"}) || r1["HOST"] != "ap.edge.example.net:8443" {
		t.Errorf("second clone's URI-REPLACEMENT %v", r1)
	}
	// Every ID in PATHWAY-PRIORITY is a legal pathway ID, listed once.
	for _, id := range strs(t, m["PATHWAY-PRIORITY"]) {
		if !ValidPathwayID(id) {
			t.Errorf("illegal ID %q", id)
		}
	}
}

// TestDASHFields checks a DCSM field by field against ETSI TS 103 998.
func TestDASHFields(t *testing.T) {
	t.Parallel()
	in, order := sessionInput()
	in.ReloadURI = "/v1/steer/dash?path=%2Fvod%2Fabc&_DASH_pathway=%22eu%2Cus%22&_DASH_throughput=1%2C2"
	b, err := DASH(in, order)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "dash-steering.json", b)
	m := decode(t, b)
	if got, want := keys(m), []string{"PATHWAY-CLONES", "PATHWAY-PRIORITY", "RELOAD-URI", "SERVICE-LOCATION-PRIORITY", "TTL", "VERSION"}; !slices.Equal(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	if m["VERSION"] != json.Number("1") || m["TTL"] != json.Number("10") {
		t.Errorf("VERSION %v TTL %v", m["VERSION"], m["TTL"])
	}
	pp, slp := strs(t, m["PATHWAY-PRIORITY"]), strs(t, m["SERVICE-LOCATION-PRIORITY"])
	if !slices.Equal(pp, []string{"us", "ap", "eu"}) || !slices.Equal(pp, slp) {
		t.Errorf("PATHWAY-PRIORITY %v SERVICE-LOCATION-PRIORITY %v", pp, slp)
	}
	// A relative RELOAD-URI stays relative; _DASH_ parameters go.
	u, err := url.Parse(m["RELOAD-URI"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if u.IsAbs() || u.Path != "/v1/steer/dash" || u.Query().Has(ParamDASHPathway) || u.Query().Get(ParamPrevPathway) != "eu" {
		t.Errorf("RELOAD-URI %v", u)
	}
}

func TestPriorityAfterFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		order []Pathway
		want  []string
	}{
		{"all well: order kept", []Pathway{{ID: "a"}, {ID: "b"}, {ID: "c"}}, []string{"a", "b", "c"}},
		{"first down", []Pathway{{ID: "a", Down: true}, {ID: "b"}, {ID: "c"}}, []string{"b", "c", "a"}},
		{"two down keep their order", []Pathway{{ID: "a", Down: true}, {ID: "b", Down: true}, {ID: "c"}}, []string{"c", "a", "b"}},
		{"all down: still listed", []Pathway{{ID: "a", Down: true}, {ID: "b", Down: true}}, []string{"a", "b"}},
		{"default pathway", []Pathway{{ID: "."}, {ID: "b"}}, []string{".", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, build := range []func(Input, []Pathway) ([]byte, error){HLS, DASH} {
				b, err := build(Input{}, tc.order)
				if err != nil {
					t.Fatal(err)
				}
				m := decode(t, b)
				if got := strs(t, m["PATHWAY-PRIORITY"]); !slices.Equal(got, tc.want) {
					t.Errorf("PATHWAY-PRIORITY %v, want %v", got, tc.want)
				}
				if m["TTL"] != json.Number("300") {
					t.Errorf("default TTL %v", m["TTL"])
				}
				if _, ok := m["RELOAD-URI"]; ok {
					t.Error("RELOAD-URI without a ReloadURI")
				}
				if _, ok := m["PATHWAY-CLONES"]; ok {
					t.Error("PATHWAY-CLONES without clones")
				}
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	ok := []Pathway{{ID: "a"}}
	for _, tc := range []struct {
		name  string
		in    Input
		order []Pathway
	}{
		{"no pathways", Input{}, nil},
		{"ttl under a second", Input{TTL: 500 * time.Millisecond}, ok},
		{"negative ttl", Input{TTL: -time.Second}, ok},
		{"bad id", Input{}, []Pathway{{ID: "eu west"}}},
		{"empty id", Input{}, []Pathway{{ID: ""}}},
		{"quote in id", Input{}, []Pathway{{ID: `a"b`}}},
		{"duplicate id", Input{}, []Pathway{{ID: "a"}, {ID: "a", Down: true}}},
		{"clone of itself", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "a", Host: "h"}}}},
		{"clone with bad base", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "", Host: "h"}}}},
		{"clone host with path", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "b", Host: "h/x"}}}},
		{"clone host with scheme", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "b", Host: "https://h"}}}},
		{"clone host with user", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "b", Host: "u@h"}}}},
		{"clone host with space", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "b", Host: "h h"}}}},
		{"clone replacing nothing", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "b"}}}},
		{"clone with empty param", Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "b", Params: map[string]string{"": "x"}}}}},
		{"bad reload uri", Input{ReloadURI: "http://[::1"}, ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := HLS(tc.in, tc.order); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("HLS: %v", err)
			}
			if _, err := DASH(tc.in, tc.order); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("DASH: %v", err)
			}
		})
	}
	// Hosts that are fine.
	for _, h := range []string{"edge.example.net", "edge.example.net:8080", "192.0.2.1:80", "[2001:db8::1]:443", "[2001:db8::1]"} {
		if _, err := HLS(Input{}, []Pathway{{ID: "a", Clone: &Clone{BaseID: "b", Host: h}}}); err != nil {
			t.Errorf("host %q: %v", h, err)
		}
	}
}
