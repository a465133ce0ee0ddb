package geoip

import (
	"net/netip"
	"testing"
)

// FuzzOpenBytes feeds arbitrary files to OpenBytes and looks addresses up in
// whatever opens: an operator's database is input from outside the process,
// and a damaged one must fail cleanly, never panic or hang.
func FuzzOpenBytes(f *testing.F) {
	city := cityDB(f)
	f.Add(city)
	f.Add(countryDB(f, "GeoLite2-Country"))
	f.Add(city[:len(city)-1])
	f.Add(city[len(city)/3:])
	corrupt := append([]byte(nil), city...)
	for i := 0; i < len(corrupt)/2; i += 7 {
		corrupt[i] ^= 0x5a
	}
	f.Add(corrupt)
	f.Add([]byte("\xab\xcd\xefMaxMind.com"))
	addrs := []netip.Addr{
		netip.MustParseAddr("81.2.69.142"),
		netip.MustParseAddr("2a02:ff00::1"),
		netip.MustParseAddr("89.160.20.112"),
		netip.MustParseAddr("1.0.0.1"),
		netip.MustParseAddr("2001:200::1"),
		netip.MustParseAddr("8.8.8.8"),
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		db, err := OpenBytes(b)
		if err != nil {
			return
		}
		defer db.Close()
		_ = db.Metadata()
		for _, ip := range addrs {
			loc, ok := db.Lookup(ip)
			if ok && (loc.Source == SourceNone || loc.Lat < -90 || loc.Lat > 90 || loc.Lon < -180 || loc.Lon > 180) {
				t.Fatalf("Lookup(%s) = %+v, true", ip, loc)
			}
		}
	})
}
