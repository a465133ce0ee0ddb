// Package geoiptest builds small GeoIP2-City databases for tests, with mmdbwriter: a network
// maps to a country and a position, so a test can place its clients wherever it wants.
//
// The geoip package answers false for addresses that are not public (private, loopback,
// documentation ranges such as 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24, ...), whatever
// the database says: test networks must be public ranges.
package geoiptest

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/duetcdn/duet/steering/geoip"
)

// Place is where a test network is.
type Place struct {
	// Network is a CIDR prefix ("81.2.69.0/24").
	Network string
	// Country is an ISO 3166-1 alpha-2 code.
	Country string
	// Lat and Lon are degrees.
	Lat, Lon float64
}

// Bytes builds a GeoIP2-City database of the places.
func Bytes(tb testing.TB, places ...Place) []byte {
	tb.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", RecordSize: 24, BuildEpoch: 1})
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range places {
		_, n, err := net.ParseCIDR(p.Network)
		if err != nil {
			tb.Fatal(err)
		}
		rec := mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String(p.Country)},
			"location": mmdbtype.Map{"latitude": mmdbtype.Float64(p.Lat), "longitude": mmdbtype.Float64(p.Lon),
				"accuracy_radius": mmdbtype.Uint16(10)},
		}
		if err := tree.Insert(n, rec); err != nil {
			tb.Fatalf("insert %s: %v", p.Network, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Open builds the database and opens it; it is closed when the test ends.
func Open(tb testing.TB, places ...Place) *geoip.DB {
	tb.Helper()
	db, err := geoip.OpenBytes(Bytes(tb, places...))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// File writes the database into a temporary file and returns its path.
func File(tb testing.TB, places ...Place) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "test-city.mmdb")
	if err := os.WriteFile(p, Bytes(tb, places...), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
