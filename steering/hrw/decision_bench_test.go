package hrw_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/duetcdn/duet/internal/clientaddr"
	"github.com/duetcdn/duet/steering/geoip"
	"github.com/duetcdn/duet/steering/hrw"
)

// BenchmarkDecision measures a whole routing decision as the steering
// service will make it, with and without the GeoIP part: client address
// (X-Forwarded-For from a trusted proxy), GeoIP lookup in the embedded
// database, content key, route over two regions of two edges.
func BenchmarkDecision(b *testing.B) {
	db, err := geoip.Default()
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p, err := hrw.New(hrw.Config{DefaultRegion: "eu"})
	if err != nil {
		b.Fatal(err)
	}
	regions := []hrw.Region{
		{Name: "eu", Loc: hrw.Point{Lat: 50.11, Lon: 8.68}, Edges: []hrw.Edge{
			{ID: "eu-1", Capacity: 1000, Load: 100}, {ID: "eu-2", Capacity: 1000, Load: 300},
		}},
		{Name: "us", Loc: hrw.Point{Lat: 38.9, Lon: -77.04}, Edges: []hrw.Edge{
			{ID: "us-1", Capacity: 1000, Load: 100}, {ID: "us-2", Capacity: 1000, State: hrw.Draining},
		}},
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	paths := make([]string, 256)
	for i := range paths {
		paths[i] = fmt.Sprintf("/vod/title-%d/720p/seg-%d.ts", i, i*7)
	}
	// X-Forwarded-For as a trusted proxy sends it: the client, then a
	// proxy of ours.
	xffs := []string{"8.8.8.8, 10.9.9.9", "193.0.6.139, 10.9.9.9", "1.1.1.1, 10.9.9.9", "2001:4860:4860::8888, 10.9.9.9", "81.2.69.142, 10.9.9.9"}

	b.Run("route-only", func(b *testing.B) {
		var buf hrw.Buffer
		req := hrw.Request{From: hrw.Point{Lat: 48.85, Lon: 2.35}, Located: true}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			req.Key = hrw.ContentKey(paths[i%len(paths)], 2)
			if d := p.Route(&buf, req, regions); len(d.Choices) == 0 {
				b.Fatal("no choice")
			}
			i++
		}
	})
	b.Run("with-geoip", func(b *testing.B) {
		var buf hrw.Buffer
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ip, err := clientaddr.Parse("10.1.2.3:51234", xffs[i%len(xffs)], trusted)
			if err != nil {
				b.Fatal(err)
			}
			req := hrw.Request{Key: hrw.ContentKey(paths[i%len(paths)], 2)}
			if loc, ok := db.Lookup(ip); ok {
				req.From, req.Located = hrw.Point{Lat: loc.Lat, Lon: loc.Lon}, true
			}
			if d := p.Route(&buf, req, regions); len(d.Choices) == 0 {
				b.Fatal("no choice")
			}
			i++
		}
	})
}
