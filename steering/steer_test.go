package steering_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/duetcdn/duet/steering/manifest"
)

// steeringDoc is a steering manifest as a player reads it (draft-pantos-content-steering §4,
// ETSI TS 103 998).
type steeringDoc struct {
	Version  *int     `json:"VERSION"`
	TTL      *int     `json:"TTL"`
	Reload   string   `json:"RELOAD-URI"`
	Priority []string `json:"PATHWAY-PRIORITY"`
	SLP      []string `json:"SERVICE-LOCATION-PRIORITY"`
	Clones   []struct {
		BaseID string `json:"BASE-ID"`
		ID     string `json:"ID"`
		URI    struct {
			Host   string            `json:"HOST"`
			Params map[string]string `json:"PARAMS"`
		} `json:"URI-REPLACEMENT"`
	} `json:"PATHWAY-CLONES"`
}

func (f *fixture) steer(t *testing.T, target, client, ctype string) (steeringDoc, map[string]json.RawMessage) {
	t.Helper()
	w := f.get(target, client)
	if w.Code != http.StatusOK {
		t.Fatalf("%s: %d %s", target, w.Code, w.Body)
	}
	if got := w.Header().Get("Content-Type"); got != ctype {
		t.Fatalf("%s: Content-Type %q, want %q", target, got, ctype)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%s: Cache-Control %q", target, w.Header().Get("Cache-Control"))
	}
	var d steeringDoc
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(w.Body.Bytes(), &raw)
	return d, raw
}

func TestHLSSteeringManifestFieldByField(t *testing.T) {
	f := fourEdges(t)
	const path = "/vod/show/master.m3u8"
	routeA := f.route(t, path, nearA)
	d, raw := f.steer(t, "/v1/steer/hls?path="+path+"&_HLS_pathway=%22A%22&_HLS_throughput=5000000", nearA, manifest.ContentTypeHLS)
	// VERSION: REQUIRED, 1. TTL: REQUIRED, seconds (config 10s).
	if d.Version == nil || *d.Version != 1 || d.TTL == nil || *d.TTL != 10 {
		t.Fatalf("VERSION/TTL: %+v", d)
	}
	// Only the specified keys (DASH's SERVICE-LOCATION-PRIORITY is not in an HLS manifest).
	for k := range raw {
		if !slices.Contains([]string{"VERSION", "TTL", "RELOAD-URI", "PATHWAY-PRIORITY", "PATHWAY-CLONES"}, k) {
			t.Errorf("unexpected key %s", k)
		}
	}
	// RELOAD-URI: relative to the manifest, same path; the _HLS_ parameters left for the
	// player to add, the reported pathway and throughput carried as duet_*.
	ru, err := url.Parse(d.Reload)
	if err != nil || ru.Path != "/v1/steer/hls" || ru.Query().Get("path") != path || ru.Query().Get("_HLS_pathway") != "" ||
		ru.Query().Get("duet_pathway") != "A" || ru.Query().Get("duet_throughput") != "5000000" {
		t.Fatalf("RELOAD-URI %q", d.Reload)
	}
	// PATHWAY-PRIORITY: nearest region first, then the other, then the base pathway.
	if !slices.Equal(d.Priority, []string{"A", "B", "."}) {
		t.Fatalf("PATHWAY-PRIORITY %v", d.Priority)
	}
	// PATHWAY-CLONES: each region a clone of the base pathway, HOST = the stream's edge there
	// (the same edge /v1/route gives).
	if len(d.Clones) != 2 {
		t.Fatalf("PATHWAY-CLONES %+v", d.Clones)
	}
	for i, region := range []string{"A", "B"} {
		c := d.Clones[i]
		var want string
		for _, e := range routeA.Edges {
			if e.Region == region {
				u, _ := url.Parse(e.URL)
				want = u.Hostname() // HLS replaces the host name only
				break
			}
		}
		if c.ID != region || c.BaseID != "." || c.URI.Host != want || c.URI.Params != nil {
			t.Errorf("clone %d: %+v, want ID %s BASE-ID . HOST %s", i, c, region, want)
		}
	}

	// A viewer near B gets B first.
	d, _ = f.steer(t, "/v1/steer/hls?path="+path, nearB, manifest.ContentTypeHLS)
	if !slices.Equal(d.Priority, []string{"B", "A", "."}) {
		t.Fatalf("near B: PATHWAY-PRIORITY %v", d.Priority)
	}

	// After A fails (both edges' probes), A goes last, still cloned (players may still be on it).
	f.probe.set(edgeURL("a1"), true)
	f.probe.set(edgeURL("a2"), true)
	f.srv.Check(t.Context())
	f.srv.Check(t.Context())
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&_HLS_pathway=A", nearA, manifest.ContentTypeHLS)
	if !slices.Equal(d.Priority, []string{"B", ".", "A"}) {
		t.Fatalf("A down: PATHWAY-PRIORITY %v", d.Priority)
	}
	if len(d.Clones) != 2 || d.Clones[0].ID != "B" || d.Clones[1].ID != "A" || !strings.HasPrefix(d.Clones[1].URI.Host, "a") {
		t.Fatalf("A down: clones %+v", d.Clones)
	}
	// hls.js sends the pathway unquoted: read too, carried in RELOAD-URI.
	if ru, _ := url.Parse(d.Reload); ru.Query().Get("duet_pathway") != "A" {
		t.Fatalf("RELOAD-URI %q", d.Reload)
	}
}

func TestDASHSteeringFieldByField(t *testing.T) {
	f := fourEdges(t)
	const path = "/live/ch1/manifest.mpd"
	d, raw := f.steer(t, "/v1/steer/dash?path="+path+"&_DASH_pathway=%22B,A%22&_DASH_throughput=8000000,2000000", nearB, manifest.ContentTypeDASH)
	if d.Version == nil || *d.Version != 1 || d.TTL == nil || *d.TTL != 10 {
		t.Fatalf("VERSION/TTL: %+v", d)
	}
	if _, ok := raw["SERVICE-LOCATION-PRIORITY"]; !ok {
		t.Fatal("no SERVICE-LOCATION-PRIORITY")
	}
	if !slices.Equal(d.Priority, []string{"B", "A", "."}) || !slices.Equal(d.SLP, d.Priority) {
		t.Fatalf("PATHWAY-PRIORITY %v SERVICE-LOCATION-PRIORITY %v", d.Priority, d.SLP)
	}
	ru, err := url.Parse(d.Reload)
	if err != nil || ru.Path != "/v1/steer/dash" || ru.Query().Get("_DASH_pathway") != "" || ru.Query().Get("duet_pathway") != "B" ||
		ru.Query().Get("duet_throughput") != "8000000" {
		t.Fatalf("RELOAD-URI %q", d.Reload)
	}
	if len(d.Clones) != 2 || d.Clones[0].ID != "B" || d.Clones[0].BaseID != "." || !strings.HasPrefix(d.Clones[0].URI.Host, "b") {
		t.Fatalf("clones %+v", d.Clones)
	}
	// B drains entirely: B goes last.
	f.beatState("b1", "draining", 0)
	f.beatState("b2", "draining", 0)
	d, _ = f.steer(t, "/v1/steer/dash?path="+path, nearB, manifest.ContentTypeDASH)
	if !slices.Equal(d.Priority, []string{"A", ".", "B"}) {
		t.Fatalf("B draining: %v", d.Priority)
	}
}
