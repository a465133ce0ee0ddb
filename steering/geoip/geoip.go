// Package geoip finds where a client is: its country and a position (latitude
// and longitude) from a MaxMind DB file.
//
// It reads any GeoIP2 or GeoLite2 City or Country database, and DB-IP's lite
// databases (same format), opened by path with [Open]. [Default] opens the
// database embedded in this package, so a fresh install steers by country:
// country.mmdb, IP ranges to ISO country codes, built by `go generate` (see
// internal/gen and NOTICE for the data sources and their licences).
//
// Positions: a City record's own location is used when it has one; otherwise
// the position is the centre of the record's country, from a table embedded in
// this package (countries_gen.go, generated with the database). The embedded
// database carries only country codes, like GeoIP2-Country, so that the same
// table serves it and any Country database an operator brings; keeping the
// positions out of the MMDB also keeps the two data sets, and their licences,
// apart.
//
// A lookup is cheap: a walk of the database's search tree and, after the first
// lookup that lands on a record, a lock-free cache hit keyed by the record's
// offset (a Country database has a few hundred distinct records). It does not
// allocate on a cache hit.
package geoip

import (
	_ "embed" // the default database
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

//go:generate go run ./internal/gen -out .

// defaultMMDB is the embedded default database. It is read-only by
// convention: every DB opened from it only reads it.
//
//go:embed country.mmdb
var defaultMMDB []byte

// Source says where a Location's position comes from.
type Source uint8

const (
	// SourceNone: no position (the lookup answered false).
	SourceNone Source = iota
	// SourceRecord: the database record's own location (City databases).
	SourceRecord
	// SourceCountry: the centre of the record's country (Country databases,
	// or City records without a location).
	SourceCountry
)

// String names the source: "none", "record" or "country".
func (s Source) String() string {
	switch s {
	case SourceRecord:
		return "record"
	case SourceCountry:
		return "country"
	default:
		return "none"
	}
}

// Location is where an address is, as far as the database knows.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code, upper case ("US"); from the
	// record's country, else its registered country. Empty when the record
	// names none.
	Country string
	// Lat and Lon are degrees (WGS 84), meaningful when Source is not
	// SourceNone.
	Lat, Lon float64
	// AccuracyKM is the database's accuracy radius in kilometres for a
	// SourceRecord position (0 when the database gives none); 0 for a
	// country centre, which is only as good as the country is small.
	AccuracyKM uint16
	// Source says where Lat and Lon come from.
	Source Source
}

// DB is an open database. It is safe for concurrent use.
type DB struct {
	// st is the reader state; nil once closed. Lookups load it once, so a
	// concurrent Close never pulls data from under a lookup in flight.
	st atomic.Pointer[state]
}

type state struct {
	reader *maxminddb.Reader
	meta   Metadata
	cache  *offsetCache
}

// Metadata describes an open database.
type Metadata struct {
	// DatabaseType as the file states it, e.g. "GeoLite2-City".
	DatabaseType string
	// Description in English, when the file has one.
	Description string
	// BuildEpoch is the build time, Unix seconds.
	BuildEpoch int64
	// IPVersion is 4 (IPv4 only) or 6 (IPv4 and IPv6).
	IPVersion int
	// NodeCount is the size of the search tree.
	NodeCount int
}

// Open reads the database at path into memory and returns it. The file may be
// replaced afterwards (for example by geoipupdate) without affecting the DB;
// open it again to use the new data.
func Open(path string) (*DB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open geoip database: %w", err)
	}
	db, err := OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("open geoip database %s: %w", path, err)
	}
	return db, nil
}

// OpenBytes opens a database held in b. b must not be changed while the DB
// is in use. Only the metadata is read here; a damaged search tree or data
// section makes the lookups that reach it answer false (the reader bounds its
// work and reports errors, it does not panic: see FuzzOpenBytes). maxminddb's
// full Verify is not run: it takes time on big files and refuses some files
// that read fine (it insists on a description, for example).
func OpenBytes(b []byte) (*DB, error) {
	// geoip2-golang decides which database types carry country data
	// (GeoIP2/GeoLite2 City and Country, DB-IP lite and commercial,
	// Enterprise), so the list of accepted files stays its list.
	gr, err := geoip2.OpenBytes(b)
	if err != nil {
		if _, ok := errors.AsType[geoip2.UnknownDatabaseTypeError](err); ok {
			return nil, fmt.Errorf("%w: %w", ErrUnsupportedDatabase, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidDatabase, err)
	}
	if _, err := gr.Country(netip.IPv4Unspecified()); err != nil {
		if _, ok := errors.AsType[geoip2.InvalidMethodError](err); ok {
			return nil, fmt.Errorf("%w: %s has no country data", ErrUnsupportedDatabase, gr.Metadata().DatabaseType)
		}
	}
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDatabase, err)
	}
	m := r.Metadata
	db := &DB{}
	db.st.Store(&state{
		reader: r,
		meta: Metadata{
			DatabaseType: m.DatabaseType,
			Description:  m.Description["en"],
			BuildEpoch:   int64(m.BuildEpoch),
			IPVersion:    int(m.IPVersion),
			NodeCount:    int(m.NodeCount),
		},
		cache: new(offsetCache),
	})
	return db, nil
}

// Default opens the embedded default database (country level; see the
// package doc). Each call returns a new DB over the same read-only bytes.
func Default() (*DB, error) {
	db, err := OpenBytes(defaultMMDB)
	if err != nil {
		return nil, fmt.Errorf("open embedded geoip database: %w", err)
	}
	return db, nil
}

// Metadata describes the database; the zero Metadata once closed.
func (db *DB) Metadata() Metadata {
	if db == nil {
		return Metadata{}
	}
	st := db.st.Load()
	if st == nil {
		return Metadata{}
	}
	return st.meta
}

// Lookup returns where ip is. ok is true only when Location has a position;
// the caller then steers by it, and otherwise falls back to its configured
// default region. ok is false for addresses that are not public (loopback,
// private, link-local, multicast, unspecified, CGNAT and the other special
// ranges), addresses the database does not know, records without a usable
// country or location, and after Close. When ok is false, Location.Country may
// still name a country the database knows but has no position for.
//
// IPv4-mapped IPv6 addresses are looked up as IPv4; zones are ignored.
func (db *DB) Lookup(ip netip.Addr) (Location, bool) {
	if db == nil || !isPublic(ip) {
		return Location{}, false
	}
	st := db.st.Load()
	if st == nil {
		return Location{}, false
	}
	res := st.reader.Lookup(ip.Unmap().WithZone(""))
	if res.Err() != nil || !res.Found() {
		return Location{}, false
	}
	off := res.Offset()
	if e := st.cache.get(off); e != nil {
		return e.loc, e.ok
	}
	var rec record
	if err := res.Decode(&rec); err != nil {
		return Location{}, false
	}
	loc, ok := rec.location()
	st.cache.put(&cacheEntry{off: off, loc: loc, ok: ok})
	return loc, ok
}

// Close releases the database. It is nil-safe and idempotent; lookups after
// Close answer false. The memory goes when the last lookup in flight ends
// and the DB is no longer referenced.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	db.st.Store(nil)
	return nil
}

// record is the part of a GeoIP2 City/Country record that steering reads.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	Location struct {
		Latitude       *float64 `maxminddb:"latitude"`
		Longitude      *float64 `maxminddb:"longitude"`
		AccuracyRadius uint16   `maxminddb:"accuracy_radius"`
	} `maxminddb:"location"`
}

func (r *record) location() (Location, bool) {
	var loc Location
	loc.Country = r.Country.ISOCode
	if loc.Country == "" {
		loc.Country = r.RegisteredCountry.ISOCode
	}
	if lat, lon := r.Location.Latitude, r.Location.Longitude; lat != nil && lon != nil &&
		*lat >= -90 && *lat <= 90 && *lon >= -180 && *lon <= 180 {
		loc.Lat, loc.Lon = *lat, *lon
		loc.AccuracyKM = r.Location.AccuracyRadius
		loc.Source = SourceRecord
		return loc, true
	}
	if c, ok := CountryCentre(loc.Country); ok {
		loc.Lat, loc.Lon = c.Lat, c.Lon
		loc.Source = SourceCountry
		return loc, true
	}
	return loc, false
}

// centre is one entry of the generated countryCentres table.
type centre struct {
	lat, lon float64
	ok       bool
}

// CountryCentre returns the central position of the country with ISO 3166-1
// alpha-2 code cc (upper case), from the embedded country table. It serves
// configuration too (a region "in FR"). The Location's Source is
// SourceCountry.
func CountryCentre(cc string) (Location, bool) {
	if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
		return Location{}, false
	}
	c := countryCentres[int(cc[0]-'A')*26+int(cc[1]-'A')]
	if !c.ok {
		return Location{}, false
	}
	return Location{Country: cc, Lat: c.lat, Lon: c.lon, Source: SourceCountry}, true
}

// isPublic reports whether ip may be in a GeoIP database: a global unicast
// address outside the private, shared (CGNAT), documentation, benchmarking and
// other special-purpose ranges.
func isPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range specialPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// specialPrefixes are special-purpose ranges (RFC 6890 and successors) that
// IsGlobalUnicast and IsPrivate let through. GeoIP databases have no data for
// them, so answering false early only saves the tree walk, except where a
// database does hold data (some do for 6to4 and Teredo, which carry an
// embedded IPv4 address of a relay rather than of the client). 6to4
// (2002::/16) is not listed: its addresses embed the client's own IPv4
// address, and databases alias it to the IPv4 tree.
var specialPrefixes = [...]netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use IPv4/IPv6 translation
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo 2001::/32 included)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("3fff::/20"),       // documentation (RFC 9637)
}
