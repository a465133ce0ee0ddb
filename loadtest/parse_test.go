package loadtest

import (
	"strings"
	"testing"
	"time"

	hlssample "github.com/duetcdn/duet/internal/sample"
)

func TestParseSamplePlaylists(t *testing.T) {
	files := map[string][]byte{}
	for _, f := range hlssample.Stream() {
		files["/vod/s/"+f.Path] = f.Body
	}
	variants, err := parseMaster("/vod/s/master.m3u8", files["/vod/s/master.m3u8"])
	if err != nil || len(variants) == 0 {
		t.Fatalf("parseMaster = %v, %v", variants, err)
	}
	for _, v := range variants {
		segs, err := parseMedia(v, files[v])
		if err != nil {
			t.Fatalf("parseMedia(%s): %v", v, err)
		}
		var play time.Duration
		for _, s := range segs {
			if _, ok := files[s.path]; !ok {
				t.Errorf("%s lists %s, which the sample does not have", v, s.path)
			}
			play += s.duration
		}
		if !segs[0].init || play < 10*time.Second {
			t.Errorf("%s: init first %v, play time %s", v, segs[0].init, play)
		}
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range [][3]string{
		{"/vod/a/master.m3u8", "720p/index.m3u8", "/vod/a/720p/index.m3u8"},
		{"/vod/a/720p/index.m3u8", "../audio/x.m4s?tok=1", "/vod/a/audio/x.m4s"},
		{"/vod/a/720p/index.m3u8", "/other/seg.ts", "/other/seg.ts"},
		{"/vod/a/720p/index.m3u8", "http://cdn.example/vod/b/1.ts", "/vod/b/1.ts"},
	} {
		if got := resolve(tc[0], tc[1]); got != tc[2] {
			t.Errorf("resolve(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestParseCounters(t *testing.T) {
	in := `# HELP duet_edge_served_bytes_total x
# TYPE duet_edge_served_bytes_total counter
duet_edge_served_bytes_total{tier="memory"} 100
duet_edge_served_bytes_total{tier="disk"} 50
duet_edge_served_bytes_total{tier="origin"} 25
duet_edge_origin_bytes_total 30 1700000000000
duet_edge_origin_fetches_total{result="ok"} 3
duet_edge_origin_fetches_total{result="5xx"} 1
duet_edge_requests_total{cache_status="hit"} 7
duet_edge_requests_totalx 99
go_goroutines 12
`
	c, err := parseCounters(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if c != (edgeCounters{ServedBytes: 175, OriginBytes: 30, OriginFetches: 4, Requests: 7}) {
		t.Fatalf("counters %+v", c)
	}
	if d := delta(edgeCounters{ServedBytes: 200, OriginBytes: 10}, c); d.ServedBytes != 175 || d.OriginBytes != 20 {
		t.Fatalf("delta over a restart %+v: a counter that went down counts from zero", d)
	}
}

func FuzzParsePlaylists(f *testing.F) {
	for _, file := range hlssample.Stream() {
		if strings.HasSuffix(file.Path, ".m3u8") {
			f.Add(string(file.Body))
		}
	}
	f.Add("#EXTM3U\n#EXT-X-MAP:URI=\"a,b=\\\"c\",BYTERANGE=1\n#EXTINF:x,\nseg")
	f.Add("#EXTM3U\n#EXT-X-STREAM-INF:\n\n#EXT-X-MAP:URI=\n")
	f.Fuzz(func(t *testing.T, body string) {
		if vs, err := parseMaster("/a/b/master.m3u8", []byte(body)); err == nil {
			for _, v := range vs {
				if !strings.HasPrefix(v, "/") {
					t.Fatalf("variant %q is not an absolute path", v)
				}
			}
		}
		if segs, err := parseMedia("/a/b/index.m3u8", []byte(body)); err == nil {
			for _, s := range segs {
				if !strings.HasPrefix(s.path, "/") || s.duration < 0 || len(segs) > maxSegments {
					t.Fatalf("segment %+v", s)
				}
			}
		}
	})
}

func FuzzParseCounters(f *testing.F) {
	f.Add("duet_edge_served_bytes_total{tier=\"memory\"} 100\n")
	f.Add("duet_edge_origin_bytes_total 1e3 17\n# c\n")
	f.Add("duet_edge_requests_total{a=\"}\"} 1\n")
	f.Add("duet_edge_requests_total} {x 1\n")
	f.Fuzz(func(t *testing.T, in string) {
		_, _ = parseCounters(strings.NewReader(in))
	})
}

func FuzzParseRoute(f *testing.F) {
	f.Add(`{"key":"/vod/a","region":"eu","edges":[{"name":"eu-1","region":"eu","url":"http://127.0.0.1:8081/","state":"serving"}]}`)
	f.Add(`{"edges":[]}`)
	f.Add(`{"edges":[{"url":""}]}`)
	f.Fuzz(func(t *testing.T, in string) {
		rt, err := parseRoute([]byte(in))
		if err == nil && (len(rt.Edges) == 0 || rt.Edges[0].URL == "") {
			t.Fatalf("accepted a route without a usable edge: %+v", rt)
		}
	})
}
