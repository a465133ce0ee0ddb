package steering_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/duetcdn/duet/steering"
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
	a1st, a2nd := routeA.Edges[0].Name, routeA.Edges[1].Name // the stream's edges in A, in order
	d, raw := f.steer(t, "/v1/steer/hls?path="+path+"&base="+a1st+"&_HLS_pathway=%22"+a1st+"%22&_HLS_throughput=5000000", nearA, manifest.ContentTypeHLS)
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
	// RELOAD-URI: relative to the manifest (no region has a steering_url here), same path; the
	// _HLS_ parameters left for the player to add, the reported pathway and throughput carried
	// as duet_*.
	ru, err := url.Parse(d.Reload)
	if err != nil || ru.Host != "" || ru.Path != "/v1/steer/hls" || ru.Query().Get("path") != path || ru.Query().Get("_HLS_pathway") != "" ||
		ru.Query().Get("duet_pathway") != a1st || ru.Query().Get("duet_throughput") != "5000000" {
		t.Fatalf("RELOAD-URI %q", d.Reload)
	}
	// PATHWAY-PRIORITY: one pathway per edge, the stream's edges of the nearest region first (in
	// /v1/route's order), then the other region's.
	if !slices.Equal(d.Priority, names(routeA)) {
		t.Fatalf("PATHWAY-PRIORITY %v, want the route's edges %v", d.Priority, names(routeA))
	}
	// PATHWAY-CLONES: every edge but the playlist's own, a clone of the playlist's pathway (the
	// steering URI's base), HOST = the edge's host name (HLS replaces the host name only).
	if len(d.Clones) != 3 {
		t.Fatalf("PATHWAY-CLONES %+v", d.Clones)
	}
	for i, c := range d.Clones {
		e := routeA.Edges[i+1]
		u, _ := url.Parse(e.URL)
		if c.ID != e.Name || c.BaseID != a1st || c.URI.Host != u.Hostname() || c.URI.Params != nil {
			t.Errorf("clone %d: %+v, want ID %s BASE-ID %s HOST %s", i, c, e.Name, a1st, u.Hostname())
		}
	}

	// A viewer near B, on A's edge (the edge that served its playlist): its first answer keeps
	// it there (a switch while the first segments load stalls hls.js), later ones move it to B.
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&base="+a1st+"&_HLS_pathway="+a1st, nearB, manifest.ContentTypeHLS)
	if d.Priority[0] != a1st || !strings.HasPrefix(d.Priority[1], "b") {
		t.Fatalf("near B, first answer: PATHWAY-PRIORITY %v", d.Priority)
	}
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&base="+a1st+"&_HLS_pathway="+a1st+"&duet_pathway="+a1st, nearB, manifest.ContentTypeHLS)
	if !strings.HasPrefix(d.Priority[0], "b") || !strings.HasPrefix(d.Priority[1], "b") {
		t.Fatalf("near B, reload: PATHWAY-PRIORITY %v", d.Priority)
	}

	// The player's edge dies: the other edge of its region comes first, then B; the dead one is
	// listed last (it is the pathway the player is on).
	f.probe.set(edgeURL(a1st), true)
	f.srv.Check(t.Context())
	f.srv.Check(t.Context())
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&base="+a1st+"&_HLS_pathway="+a1st+"&duet_pathway="+a1st, nearA, manifest.ContentTypeHLS)
	if len(d.Priority) != 4 || d.Priority[0] != a2nd || !strings.HasPrefix(d.Priority[1], "b") || d.Priority[3] != a1st {
		t.Fatalf("%s down: PATHWAY-PRIORITY %v", a1st, d.Priority)
	}
	// Once the player is on the other edge, it stays there even after its first edge returns
	// (no move without need); the returned edge is listed again, after it.
	f.probe.set(edgeURL(a1st), false)
	f.srv.Check(t.Context())
	f.beat(a1st)
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&base="+a1st+"&_HLS_pathway="+a2nd+"&duet_pathway="+a2nd, nearA, manifest.ContentTypeHLS)
	if !slices.Equal(d.Priority[:2], []string{a2nd, a1st}) {
		t.Fatalf("%s back: PATHWAY-PRIORITY %v", a1st, d.Priority)
	}
	// Clones are made of the playlist's own pathway (base), which players keep for good.
	for _, c := range d.Clones {
		if c.BaseID != a1st || c.ID == a1st {
			t.Fatalf("clones, want each of the playlist's pathway %s: %+v", a1st, d.Clones)
		}
	}

	// After A fails (both edges' probes), B comes first; the player's dead pathway last.
	f.probe.set(edgeURL("a1"), true)
	f.probe.set(edgeURL("a2"), true)
	f.srv.Check(t.Context())
	f.srv.Check(t.Context())
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&base=a1&_HLS_pathway=a1&duet_pathway=a1", nearA, manifest.ContentTypeHLS)
	if len(d.Priority) != 3 || !strings.HasPrefix(d.Priority[0], "b") || !strings.HasPrefix(d.Priority[1], "b") || d.Priority[2] != "a1" {
		t.Fatalf("A down: PATHWAY-PRIORITY %v", d.Priority)
	}
	// hls.js sends the pathway unquoted: read too, carried in RELOAD-URI.
	if ru, _ := url.Parse(d.Reload); ru.Query().Get("duet_pathway") != "a1" {
		t.Fatalf("RELOAD-URI %q", d.Reload)
	}
}

// A player that reports the default pathway (an edge that gives its content none of its own) is
// kept on it by its first answer, and moved to its edge's pathway by the next.
func TestHLSSteeringKeepsTheDefaultPathwayOnTheFirstAnswer(t *testing.T) {
	f := fourEdges(t)
	const path = "/vod/show/master.m3u8"
	d, _ := f.steer(t, "/v1/steer/hls?path="+path+"&_HLS_pathway=.", nearA, manifest.ContentTypeHLS)
	if d.Priority[0] != "." || len(d.Clones) != 4 || d.Clones[0].BaseID != "." {
		t.Fatalf("first answer: %v %+v", d.Priority, d.Clones)
	}
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&_HLS_pathway=.&duet_pathway=.", nearA, manifest.ContentTypeHLS)
	if !strings.HasPrefix(d.Priority[0], "a") || d.Priority[len(d.Priority)-1] != "." {
		t.Fatalf("reload: %v", d.Priority)
	}
}

// Shaka's first steering request reports no pathway: it is taken to be on the playlist's own
// (base), kept first. A bad base is a 400.
func TestSteeringFirstRequestWithoutAPathway(t *testing.T) {
	f := fourEdges(t)
	const path = "/vod/show/master.m3u8"
	for _, e := range []string{"a1", "a2"} {
		d, _ := f.steer(t, "/v1/steer/hls?path="+path+"&base="+e, nearA, manifest.ContentTypeHLS)
		if d.Priority[0] != e || len(d.Clones) != 3 || d.Clones[0].BaseID != e {
			t.Fatalf("base %s: %v %+v", e, d.Priority, d.Clones)
		}
	}
	if w := f.get("/v1/steer/hls?path="+path+"&base=a%2F1", nearA); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "base") {
		t.Fatalf("bad base: %d %s", w.Code, w.Body)
	}
}

// RELOAD-URI goes to another region's steering than the one the player plays from, so that the
// loss of that region does not take the player's steering with it.
func TestSteeringReloadGoesToAnotherRegion(t *testing.T) {
	cfg := testConfig()
	cfg.Regions[0].SteeringURL = "http://steer-a.test:8070"
	cfg.Regions[1].SteeringURL = "http://steer-b.test:8070/"
	f := newFixture(t, cfg)
	f.beat("a1", "a2", "b1", "b2")
	const path = "/vod/show/master.m3u8"
	d, _ := f.steer(t, "/v1/steer/hls?path="+path+"&base=a1&_HLS_pathway=a1", nearA, manifest.ContentTypeHLS)
	ru, err := url.Parse(d.Reload)
	if err != nil || ru.Scheme != "http" || ru.Host != "steer-b.test:8070" || ru.Path != "/v1/steer/hls" || ru.Query().Get("path") != path ||
		ru.Query().Get("duet_pathway") != "a1" || ru.Query().Get("base") != "a1" {
		t.Fatalf("RELOAD-URI %q, want B's steering", d.Reload)
	}
	w := f.get("/v1/steer/hls?path="+path, nearA)
	if w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("no CORS on a steering answer: %v", w.Header())
	}
	// A player on B's edge reloads from A.
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&_HLS_pathway=b1&duet_pathway=b1", nearB, manifest.ContentTypeHLS)
	if ru, _ := url.Parse(d.Reload); ru.Host != "steer-a.test:8070" {
		t.Fatalf("RELOAD-URI %q, want A's steering", d.Reload)
	}
	// With B gone, the only region left answers for itself.
	for _, e := range []string{"b1", "b2"} {
		f.probe.set(edgeURL(e), true)
	}
	f.srv.Check(t.Context())
	f.srv.Check(t.Context())
	d, _ = f.steer(t, "/v1/steer/hls?path="+path+"&base=a1&_HLS_pathway=a1&duet_pathway=a1", nearA, manifest.ContentTypeHLS)
	if ru, _ := url.Parse(d.Reload); ru.Host != "" || ru.Path != "/v1/steer/hls" {
		t.Fatalf("RELOAD-URI %q, want this steering's own", d.Reload)
	}
}

// A player GeoIP cannot place (a private address) reloads from the steering of the other region
// (RELOAD-URI), whose default region is its own: it must be answered as where it plays, not moved
// to the answering region and sent back to reload from the region it plays from, the one whose
// loss would then take its steering with it (issue 14: `duet dev` players reloaded from each
// region in turn, so killing the serving region failed every other player's reloads for good).
func TestSteeringKeepsAnUnlocatedPlayerAndItsReloadAcrossRegions(t *testing.T) {
	const path, unlocated = "/vod/show/master.m3u8", "192.168.7.7"
	steer := map[string]*fixture{}
	for _, home := range []string{"A", "B"} {
		cfg := testConfig()
		cfg.DefaultRegion = home // each region's steering starts unlocated viewers at home
		cfg.Regions[0].SteeringURL = "http://steer-a.test:8070"
		cfg.Regions[1].SteeringURL = "http://steer-b.test:8070"
		f := newFixture(t, cfg)
		f.beat("a1", "a2", "b1", "b2")
		steer[home] = f
	}
	for _, tc := range []struct{ on, reloadHost string }{{"a1", "steer-b.test:8070"}, {"b2", "steer-a.test:8070"}} {
		for _, at := range []string{"A", "B"} {
			q := "/v1/steer/hls?path=" + path + "&base=" + tc.on + "&_HLS_pathway=" + tc.on + "&duet_pathway=" + tc.on
			d, _ := steer[at].steer(t, q, unlocated, manifest.ContentTypeHLS)
			ru, err := url.Parse(d.Reload)
			if err != nil || len(d.Priority) == 0 || d.Priority[0] != tc.on || ru.Host != tc.reloadHost {
				t.Errorf("a player on %s asks %s's steering: PATHWAY-PRIORITY %v, RELOAD-URI %q; want %s kept first and the reload at %s",
					tc.on, at, d.Priority, d.Reload, tc.on, tc.reloadHost)
			}
		}
	}
	// Its region lost, the player is answered from the other, which then keeps its reloads.
	for _, e := range []string{"a1", "a2"} {
		steer["B"].probe.set(edgeURL(e), true)
	}
	steer["B"].srv.Check(t.Context())
	steer["B"].srv.Check(t.Context())
	d, _ := steer["B"].steer(t, "/v1/steer/hls?path="+path+"&base=a1&_HLS_pathway=a1&duet_pathway=a1", unlocated, manifest.ContentTypeHLS)
	if ru, _ := url.Parse(d.Reload); !strings.HasPrefix(d.Priority[0], "b") || ru.Host != "" {
		t.Fatalf("A down: PATHWAY-PRIORITY %v, RELOAD-URI %q; want B's edges and B's own steering", d.Priority, d.Reload)
	}
}

func TestSteeringRejectsABadSteeringURL(t *testing.T) {
	cfg := testConfig()
	cfg.Regions[1].SteeringURL = "steer-b.test:8070/?x=1"
	if _, err := steering.New(cfg, steering.Deps{}); err == nil || !strings.Contains(err.Error(), "steering_url") {
		t.Fatalf("got %v, want a steering_url error", err)
	}
}

func TestDASHSteeringFieldByField(t *testing.T) {
	f := fourEdges(t)
	const path = "/live/ch1/manifest.mpd"
	routeB := f.route(t, path, nearB)
	b1st := routeB.Edges[0].Name
	d, raw := f.steer(t, "/v1/steer/dash?path="+path+"&base="+b1st+"&_DASH_pathway=%22"+b1st+",a1%22&_DASH_throughput=8000000,2000000", nearB, manifest.ContentTypeDASH)
	if d.Version == nil || *d.Version != 1 || d.TTL == nil || *d.TTL != 10 {
		t.Fatalf("VERSION/TTL: %+v", d)
	}
	if _, ok := raw["SERVICE-LOCATION-PRIORITY"]; !ok {
		t.Fatal("no SERVICE-LOCATION-PRIORITY")
	}
	if !slices.Equal(d.Priority, names(routeB)) || !slices.Equal(d.SLP, d.Priority) {
		t.Fatalf("PATHWAY-PRIORITY %v SERVICE-LOCATION-PRIORITY %v, want %v", d.Priority, d.SLP, names(routeB))
	}
	ru, err := url.Parse(d.Reload)
	if err != nil || ru.Path != "/v1/steer/dash" || ru.Query().Get("_DASH_pathway") != "" || ru.Query().Get("duet_pathway") != b1st ||
		ru.Query().Get("duet_throughput") != "8000000" {
		t.Fatalf("RELOAD-URI %q", d.Reload)
	}
	if len(d.Clones) != 3 || d.Clones[0].ID != routeB.Edges[1].Name || d.Clones[0].BaseID != b1st || !strings.HasPrefix(d.Clones[0].URI.Host, "b") {
		t.Fatalf("clones %+v", d.Clones)
	}
	// B drains entirely: A's edges come first, the player's location last.
	f.beatState("b1", "draining", 0)
	f.beatState("b2", "draining", 0)
	d, _ = f.steer(t, "/v1/steer/dash?path="+path+"&base="+b1st+"&_DASH_pathway="+b1st+"&duet_pathway="+b1st, nearB, manifest.ContentTypeDASH)
	if len(d.Priority) != 3 || !strings.HasPrefix(d.Priority[0], "a") || d.Priority[2] != b1st {
		t.Fatalf("B draining: %v", d.Priority)
	}
}
