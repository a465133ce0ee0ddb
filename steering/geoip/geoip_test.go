package geoip

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/geoip2-golang/v2"
)

// entry is one network of a test database.
type entry struct {
	network string
	value   mmdbtype.Map
}

func country(cc string) mmdbtype.Map {
	return mmdbtype.Map{
		"country": mmdbtype.Map{
			"iso_code": mmdbtype.String(cc),
			"names":    mmdbtype.Map{"en": mmdbtype.String("name of " + cc)},
		},
	}
}

func city(cc string, lat, lon float64, radius uint16) mmdbtype.Map {
	m := country(cc)
	m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("a city")}}
	m["location"] = mmdbtype.Map{
		"latitude":        mmdbtype.Float64(lat),
		"longitude":       mmdbtype.Float64(lon),
		"accuracy_radius": mmdbtype.Uint16(radius),
		"time_zone":       mmdbtype.String("Europe/London"),
	}
	return m
}

// buildDB writes a MaxMind DB of the given type with mmdbwriter.
func buildDB(t testing.TB, dbType string, entries []entry) []byte {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		RecordSize:              24,
		IncludeReservedNetworks: true, // so the tests can check that private addresses answer false anyway
		BuildEpoch:              1,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		_, n, err := net.ParseCIDR(e.network)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, e.value); err != nil {
			t.Fatalf("insert %s: %v", e.network, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func cityDB(t testing.TB) []byte {
	return buildDB(t, "GeoIP2-City", []entry{
		{"81.2.69.0/24", city("GB", 51.5142, -0.0931, 10)},
		{"2a02:ff00::/32", city("DE", 52.52, 13.405, 50)},
		{"89.160.20.0/24", country("SE")}, // City record without a location
		{"175.16.199.0/24", mmdbtype.Map{ // registered country only
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("CN")},
		}},
		{"67.43.156.0/24", country("ZZ")}, // a code without a known centre
		{"10.0.0.0/8", city("US", 40, -100, 1000)},
		{"52.0.0.0/8", city("US", 99, -100, 1)}, // latitude out of range: ignored
	})
}

func countryDB(t testing.TB, dbType string) []byte {
	return buildDB(t, dbType, []entry{
		{"1.0.0.0/24", country("AU")},
		{"2001:200::/32", country("JP")},
		{"192.168.0.0/16", country("AU")},
	})
}

func open(t testing.TB, b []byte) *DB {
	t.Helper()
	db, err := OpenBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestLookupCity(t *testing.T) {
	t.Parallel()
	db := open(t, cityDB(t))
	se, _ := CountryCentre("SE")
	cn, _ := CountryCentre("CN")
	tests := []struct {
		name string
		ip   string
		want Location
		ok   bool
	}{
		{"ipv4 city", "81.2.69.142", Location{Country: "GB", Lat: 51.5142, Lon: -0.0931, AccuracyKM: 10, Source: SourceRecord}, true},
		{"ipv6 city", "2a02:ff00::1", Location{Country: "DE", Lat: 52.52, Lon: 13.405, AccuracyKM: 50, Source: SourceRecord}, true},
		{"ipv4-mapped ipv6", "::ffff:81.2.69.142", Location{Country: "GB", Lat: 51.5142, Lon: -0.0931, AccuracyKM: 10, Source: SourceRecord}, true},
		{"zone ignored", "2a02:ff00::1%eth0", Location{Country: "DE", Lat: 52.52, Lon: 13.405, AccuracyKM: 50, Source: SourceRecord}, true},
		{"no location: country centre", "89.160.20.112", Location{Country: "SE", Lat: se.Lat, Lon: se.Lon, Source: SourceCountry}, true},
		{"registered country only", "175.16.199.1", Location{Country: "CN", Lat: cn.Lat, Lon: cn.Lon, Source: SourceCountry}, true},
		{"unknown country code", "67.43.156.1", Location{Country: "ZZ"}, false},
		{"bad latitude: country centre", "52.1.2.3", Location{Country: "US", Lat: 38, Lon: -97, Source: SourceCountry}, true},
		{"not in database", "8.8.8.8", Location{}, false},
		{"private, though in the database", "10.1.2.3", Location{}, false},
		{"loopback", "127.0.0.1", Location{}, false},
		{"ipv6 loopback", "::1", Location{}, false},
		{"link-local", "fe80::1", Location{}, false},
		{"ula", "fd00::1", Location{}, false},
		{"cgnat", "100.64.1.1", Location{}, false},
		{"documentation", "2001:db8::1", Location{}, false},
		{"multicast", "224.0.0.1", Location{}, false},
		{"unspecified", "0.0.0.0", Location{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for range 2 { // the second lookup is a cache hit
				got, ok := db.Lookup(netip.MustParseAddr(tc.ip))
				if got != tc.want || ok != tc.ok {
					t.Fatalf("Lookup(%s) = %+v, %v; want %+v, %v", tc.ip, got, ok, tc.want, tc.ok)
				}
			}
		})
	}
	if _, ok := db.Lookup(netip.Addr{}); ok {
		t.Fatal("zero Addr: ok")
	}
}

func TestLookupCountryDatabases(t *testing.T) {
	t.Parallel()
	// GeoLite2-Country and DB-IP's lite country database share a layout.
	for _, typ := range []string{"GeoLite2-Country", "GeoIP2-Country", "DBIP-Country-Lite"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			db := open(t, countryDB(t, typ))
			au, _ := CountryCentre("AU")
			jp, _ := CountryCentre("JP")
			if got, ok := db.Lookup(netip.MustParseAddr("1.0.0.1")); !ok || got != au {
				t.Errorf("1.0.0.1 = %+v, %v; want %+v", got, ok, au)
			}
			if got, ok := db.Lookup(netip.MustParseAddr("2001:200::1")); !ok || got != jp {
				t.Errorf("2001:200::1 = %+v, %v; want %+v", got, ok, jp)
			}
			if _, ok := db.Lookup(netip.MustParseAddr("192.168.1.1")); ok {
				t.Error("private address: ok")
			}
			if _, ok := db.Lookup(netip.MustParseAddr("9.9.9.9")); ok {
				t.Error("unknown address: ok")
			}
			if got := db.Metadata().DatabaseType; got != typ {
				t.Errorf("DatabaseType %q", got)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	asn := buildDB(t, "GeoLite2-ASN", []entry{{"1.0.0.0/24", mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(13335)}}})
	odd := buildDB(t, "Acme-Things", []entry{{"1.0.0.0/24", country("AU")}})
	good := countryDB(t, "GeoLite2-Country")
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"asn database", asn, ErrUnsupportedDatabase},
		{"unknown type", odd, ErrUnsupportedDatabase},
		{"not a database", []byte("hello"), ErrInvalidDatabase},
		{"empty", nil, ErrInvalidDatabase},
		{"truncated", good[:len(good)/2], ErrInvalidDatabase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := OpenBytes(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.mmdb")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestOpenPath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "GeoLite2-City.mmdb")
	if err := os.WriteFile(path, cityDB(t), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The file is in memory: replacing it does not disturb the DB.
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, ok := db.Lookup(netip.MustParseAddr("81.2.69.1")); !ok || got.Country != "GB" {
		t.Fatalf("got %+v, %v", got, ok)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	var nilDB *DB
	if err := nilDB.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := nilDB.Lookup(netip.MustParseAddr("81.2.69.1")); ok {
		t.Fatal("nil DB: ok")
	}
	db := open(t, cityDB(t))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				db.Lookup(netip.MustParseAddr("81.2.69.1"))
			}
		})
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	wg.Wait()
	if _, ok := db.Lookup(netip.MustParseAddr("81.2.69.1")); ok {
		t.Fatal("closed DB: ok")
	}
	if db.Metadata() != (Metadata{}) {
		t.Fatal("closed DB has metadata")
	}
}

func TestCountryCentre(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cc       string
		lat, lon float64
		ok       bool
	}{
		{"US", 38, -97, true},
		{"AU", -27, 133, true},
		{"FR", 46, 2, true},
		{"AN", 12.116667, -68.933333, true}, // Netherlands Antilles: Curaçao's position
		{"ZZ", 0, 0, false},
		{"us", 0, 0, false},
		{"USA", 0, 0, false},
		{"", 0, 0, false},
	} {
		got, ok := CountryCentre(tc.cc)
		if ok != tc.ok || got.Lat != tc.lat || got.Lon != tc.lon {
			t.Errorf("CountryCentre(%q) = %+v, %v", tc.cc, got, ok)
		}
	}
}

// TestDefault checks the embedded database: it loads with geoip2-golang
// itself, and well-known public addresses map to what the data says.
func TestDefault(t *testing.T) {
	t.Parallel()
	gr, err := geoip2.OpenBytes(defaultMMDB)
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	db, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct{ ip, cc string }{
		// Google Public DNS: registered to Google in the US (ARIN).
		{"8.8.8.8", "US"},
		{"2001:4860:4860::8888", "US"},
		// Cloudflare's 1.1.1.1 is anycast everywhere, but 1.1.1.0/24 is
		// APNIC space registered in Australia (APNIC's research
		// prefix), and registration data is what this database holds.
		{"1.1.1.1", "AU"},
		// RIPE NCC, Amsterdam.
		{"193.0.6.139", "NL"},
		// 6to4 of 8.8.8.8: aliased to the IPv4 tree.
		{"2002:808:808::1", "US"},
	} {
		c, err := gr.Country(netip.MustParseAddr(tc.ip))
		if err != nil {
			t.Fatalf("geoip2 Country(%s): %v", tc.ip, err)
		}
		if c.Country.ISOCode != tc.cc {
			t.Errorf("geoip2 Country(%s) = %q, want %q", tc.ip, c.Country.ISOCode, tc.cc)
		}
		got, ok := db.Lookup(netip.MustParseAddr(tc.ip))
		want, _ := CountryCentre(tc.cc)
		if !ok || got != want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", tc.ip, got, ok, want)
		}
	}
	// The source data maps 172.16.0.0/12 and 192.168.0.0/16 to a country;
	// the generator leaves special-purpose networks out.
	for _, ip := range []string{"172.16.0.1", "192.168.1.1", "10.0.0.1", "127.0.0.1"} {
		c, err := gr.Country(netip.MustParseAddr(ip))
		if err != nil {
			t.Fatal(err)
		}
		if c.HasData() {
			t.Errorf("embedded database has data for %s: %+v", ip, c.Country)
		}
	}
	m := db.Metadata()
	if m.DatabaseType != "GeoIP2-Country" || m.IPVersion != 6 || m.BuildEpoch == 0 {
		t.Errorf("metadata %+v", m)
	}
}

// TestDefaultMatchesGeoIP2 cross-checks the fast decoder against geoip2-golang
// on random addresses.
func TestDefaultMatchesGeoIP2(t *testing.T) {
	t.Parallel()
	gr, err := geoip2.OpenBytes(defaultMMDB)
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	db, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	found := 0
	for i := range 20000 {
		var ip netip.Addr
		if i%2 == 0 {
			var b [4]byte
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			ip = netip.AddrFrom4(b)
		} else {
			var b [16]byte
			b[0] = 0x20 | byte(rng.Uint32()&0x0f) // 2000::/4, where the addresses are
			for j := 1; j < 16; j++ {
				b[j] = byte(rng.Uint32())
			}
			ip = netip.AddrFrom16(b)
		}
		got, ok := db.Lookup(ip)
		c, err := gr.Country(ip)
		if err != nil {
			t.Fatal(err)
		}
		want := c.Country.ISOCode
		if !isPublic(ip) {
			want = ""
		}
		if got.Country != want || ok != (want != "") {
			t.Fatalf("%s: Lookup = %+v, %v; geoip2 says %q", ip, got, ok, c.Country.ISOCode)
		}
		if ok {
			found++
		}
	}
	if found < 5000 {
		t.Fatalf("only %d of 20000 random addresses found", found)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	db := open(t, cityDB(t))
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	for _, c := range []struct {
		db *DB
		ip netip.Addr
	}{
		{db, netip.MustParseAddr("81.2.69.142")},
		{db, netip.MustParseAddr("2a02:ff00::1")},
		{db, netip.MustParseAddr("10.0.0.1")},
		{def, netip.MustParseAddr("8.8.8.8")},
	} {
		c.db.Lookup(c.ip) // fill the cache
		if n := testing.AllocsPerRun(100, func() { c.db.Lookup(c.ip) }); n != 0 {
			t.Errorf("Lookup(%s): %v allocs", c.ip, n)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	def, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	defer def.Close()
	city := open(b, cityDB(b))
	rng := rand.New(rand.NewPCG(3, 4))
	randomV4 := make([]netip.Addr, 4096)
	for i := range randomV4 {
		randomV4[i] = netip.AddrFrom4([4]byte{byte(rng.Uint32()%223 + 1), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
	}
	for _, bc := range []struct {
		name string
		db   *DB
		ips  []netip.Addr
	}{
		{"default/ipv4", def, []netip.Addr{netip.MustParseAddr("8.8.8.8")}},
		{"default/ipv6", def, []netip.Addr{netip.MustParseAddr("2001:4860:4860::8888")}},
		{"default/random-ipv4", def, randomV4},
		{"city/ipv4", city, []netip.Addr{netip.MustParseAddr("81.2.69.142")}},
		{"private", def, []netip.Addr{netip.MustParseAddr("192.168.1.1")}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range 2 {
				for _, ip := range bc.ips {
					bc.db.Lookup(ip)
				}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					bc.db.Lookup(bc.ips[i%len(bc.ips)])
					i++
				}
			})
		})
	}
}

func BenchmarkDefaultOpen(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		db, err := Default()
		if err != nil {
			b.Fatal(err)
		}
		_ = db.Close()
	}
}
