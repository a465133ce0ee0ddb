package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"
)

const sample = `1.0.0.0,1.0.0.255,AU
1.0.1.0,1.0.3.255,CN
1.0.4.0,1.0.7.255,AU
1.0.8.0,1.0.15.255,AU
172.16.0.0,172.31.255.255,AU
2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP
2002:5a0:3602::,2002:5a0:3602::ffff,CA
`

func TestBuildIsReproducible(t *testing.T) {
	t.Parallel()
	build := func(input string) []byte {
		rs, err := parseRanges([]byte(input))
		if err != nil {
			t.Fatal(err)
		}
		var skipped []string
		db, err := buildMMDB(mergeRanges(rs), &skipped)
		if err != nil {
			t.Fatal(err)
		}
		if len(skipped) != 2 {
			t.Fatalf("skipped %v, want the private and the 6to4 network", skipped)
		}
		return db
	}
	a := build(sample)
	// Same data, other order: same bytes.
	lines := strings.Split(strings.TrimSpace(sample), "\n")
	for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
		lines[i], lines[j] = lines[j], lines[i]
	}
	if b := build(strings.Join(lines, "\n") + "\n"); !bytes.Equal(a, b) {
		t.Fatal("the same ranges in another order gave other bytes")
	}

	r, err := geoip2.OpenBytes(a)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for ip, want := range map[string]string{
		"1.0.0.1": "AU", "1.0.2.1": "CN", "1.0.9.1": "AU", "2001:200::1": "JP", "172.16.0.1": "", "9.9.9.9": "",
	} {
		c, err := r.Country(netip.MustParseAddr(ip))
		if err != nil {
			t.Fatal(err)
		}
		if c.Country.ISOCode != want {
			t.Errorf("%s: %q, want %q", ip, c.Country.ISOCode, want)
		}
	}
	if m := r.Metadata(); m.DatabaseType != "GeoIP2-Country" || int64(m.BuildEpoch) != buildEpoch || m.RecordSize != 24 {
		t.Errorf("metadata %+v", m)
	}
}

func TestMergeRanges(t *testing.T) {
	t.Parallel()
	rs, err := parseRanges([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	got := mergeRanges(rs)
	// AU 1.0.4.0-1.0.7.255 and 1.0.8.0-1.0.15.255 join; nothing else does.
	if len(got) != 6 || got[2].start != netip.MustParseAddr("1.0.4.0") || got[2].end != netip.MustParseAddr("1.0.15.255") {
		t.Fatalf("%v", got)
	}
}

func TestParseRangesErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"1.0.0.9,1.0.0.0,AU\n",    // end before start
		"1.0.0.0,2001::,AU\n",     // mixed families
		"1.0.0.0,1.0.0.255,au\n",  // lower case
		"1.0.0.0,1.0.0.255,AUS\n", // three letters
		"1.0.0.0,x,AU\n",
		"1.0.0.0,1.0.0.255\n",
	} {
		if _, err := parseRanges([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseCountries(t *testing.T) {
	t.Parallel()
	c, err := parseCountries([]byte(`[{"cca2":"FR","name":{"common":"France"},"latlng":[46,2]}]`))
	if err != nil || c["FR"] != (centre{name: "France", lat: 46, lon: 2}) {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{
		`[{"cca2":"FR","latlng":[46]}]`,
		`[{"cca2":"FR","latlng":[91,2]}]`,
		`[{"cca2":"fr","latlng":[46,2]}]`,
		`{}`,
	} {
		if _, err := parseCountries([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
