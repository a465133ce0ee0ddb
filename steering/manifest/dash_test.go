package manifest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"strings"
	"testing"
)

// mpdView is what a DASH client reads of the steering elements.
type mpdView struct {
	XMLName  xml.Name `xml:"urn:mpeg:dash:schema:mpd:2011 MPD"`
	BaseURLs []struct {
		ServiceLocation string `xml:"serviceLocation,attr"`
		URL             string `xml:",chardata"`
	} `xml:"BaseURL"`
	ContentSteering []struct {
		DefaultServiceLocation string `xml:"defaultServiceLocation,attr"`
		QueryBeforeStart       string `xml:"queryBeforeStart,attr"`
		URL                    string `xml:",chardata"`
	} `xml:"ContentSteering"`
	Periods []struct {
		ID string `xml:"id,attr"`
	} `xml:"Period"`
}

// removeInsertions undoes injectDASH's insertions.
func removeInsertions(out []byte, ins []insertion) []byte {
	var b []byte
	pos, shift := 0, 0
	for _, in := range ins {
		at := in.at + shift
		b = append(b, out[pos:at]...)
		pos = at + len(in.text)
		shift += len(in.text)
	}
	return append(b, out[pos:]...)
}

var locations = []ServiceLocation{
	{ID: "eu", BaseURL: "https://eu.edge.example.net/live/ch7/"},
	{ID: "us", BaseURL: "https://us.edge.example.net/live/ch7/?token=a&b"},
}

func TestInjectDASH(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile("testdata/live.mpd")
	if err != nil {
		t.Fatal(err)
	}
	out, ins, err := injectDASH(in, "https://steer.example.net/v1/steer/dash?path=%2Flive%2Fch7&s=1", "eu", locations)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "live-steered.mpd", out)

	var v mpdView
	if err := xml.Unmarshal(out, &v); err != nil {
		t.Fatalf("result does not parse: %v", err)
	}
	if len(v.ContentSteering) != 1 {
		t.Fatalf("%d ContentSteering elements", len(v.ContentSteering))
	}
	cs := v.ContentSteering[0]
	if cs.DefaultServiceLocation != "eu" || cs.URL != "https://steer.example.net/v1/steer/dash?path=%2Flive%2Fch7&s=1" {
		t.Errorf("ContentSteering %+v", cs)
	}
	if len(v.BaseURLs) != 2 || v.BaseURLs[0].ServiceLocation != "eu" || v.BaseURLs[1].ServiceLocation != "us" ||
		v.BaseURLs[1].URL != "https://us.edge.example.net/live/ch7/?token=a&b" {
		t.Errorf("BaseURLs %+v", v.BaseURLs)
	}
	if len(v.Periods) != 1 || v.Periods[0].ID != "p0" {
		t.Errorf("Periods %+v", v.Periods)
	}
	// Nothing else changed, byte for byte.
	if back := removeInsertions(out, ins); !bytes.Equal(back, in) {
		t.Errorf("the rest of the MPD changed:\n%s", back)
	}
	// Placed after ProgramInformation, before Period, indented like it.
	want := "  </ProgramInformation>\n" +
		"  <BaseURL serviceLocation=\"eu\">https://eu.edge.example.net/live/ch7/</BaseURL>\n" +
		"  <BaseURL serviceLocation=\"us\">https://us.edge.example.net/live/ch7/?token=a&amp;b</BaseURL>\n" +
		"  <ContentSteering defaultServiceLocation=\"eu\">https://steer.example.net/v1/steer/dash?path=%2Flive%2Fch7&amp;s=1</ContentSteering>\n" +
		"  <Period id=\"p0\""
	if !bytes.Contains(out, []byte(want)) {
		t.Errorf("not placed as expected:\n%s", out)
	}
}

func TestInjectDASHForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		locs     []ServiceLocation
		def      string
		want     string
	}{
		{"one line, no locations, existing serviceLocation as default",
			`<MPD><BaseURL serviceLocation="a">http://a/</BaseURL><Period/></MPD>`, nil, "a",
			`<MPD><BaseURL serviceLocation="a">http://a/</BaseURL><ContentSteering defaultServiceLocation="a">/s</ContentSteering><Period/></MPD>`},
		{"new BaseURLs go before the MPD's own",
			"<MPD>\n\t<BaseURL>http://origin/</BaseURL>\n\t<Period/>\n</MPD>\n", locations[:1], "eu",
			"<MPD>\n\t<BaseURL serviceLocation=\"eu\">https://eu.edge.example.net/live/ch7/</BaseURL>\n\t<BaseURL>http://origin/</BaseURL>\n\t<ContentSteering defaultServiceLocation=\"eu\">/s</ContentSteering>\n\t<Period/>\n</MPD>\n"},
		{"prefixed root",
			"<dash:MPD xmlns:dash=\"urn:mpeg:dash:schema:mpd:2011\">\r\n  <dash:Period/>\r\n</dash:MPD>", locations[:1], "eu",
			"<dash:MPD xmlns:dash=\"urn:mpeg:dash:schema:mpd:2011\">\r\n  <dash:BaseURL serviceLocation=\"eu\">https://eu.edge.example.net/live/ch7/</dash:BaseURL>\r\n  <dash:ContentSteering defaultServiceLocation=\"eu\">/s</dash:ContentSteering>\r\n  <dash:Period/>\r\n</dash:MPD>"},
		{"ServiceDescription before Period",
			"<MPD>\n  <ServiceDescription id=\"0\"/>\n  <Period/>\n</MPD>", nil, "x",
			""}, // default unknown: error checked below
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, ins, err := injectDASH([]byte(tc.in), "/s", tc.def, tc.locs)
			if tc.want == "" {
				if !errors.Is(err, ErrUnknownPathway) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", out, tc.want)
			}
			if back := removeInsertions(out, ins); string(back) != tc.in {
				t.Fatalf("round trip: %s", back)
			}
		})
	}
}

func TestInjectDASHErrors(t *testing.T) {
	t.Parallel()
	good := "<MPD><Period/></MPD>"
	for _, tc := range []struct {
		name, in, server, def string
		locs                  []ServiceLocation
		want                  error
	}{
		{"already steered", `<MPD><ContentSteering>x</ContentSteering><Period/></MPD>`, "/s", "eu", locations, ErrAlreadySteered},
		{"steered in ServiceDescription", `<MPD><ServiceDescription><ContentSteering>x</ContentSteering></ServiceDescription><Period/></MPD>`, "/s", "eu", locations, ErrAlreadySteered},
		{"not an MPD", `<html><body/></html>`, "/s", "eu", locations, ErrNotMPD},
		{"empty", ``, "/s", "eu", locations, ErrNotMPD},
		{"a playlist", "#EXTM3U\n", "/s", "eu", locations, ErrMalformed},
		{"unclosed", `<MPD><Period>`, "/s", "eu", locations, ErrMalformed},
		{"mismatched", `<MPD><Period></MPD></Period>`, "/s", "eu", locations, ErrMalformed},
		{"two roots", `<MPD><Period/></MPD><MPD/>`, "/s", "eu", locations, ErrMalformed},
		{"text after root", `<MPD><Period/></MPD>junk`, "/s", "eu", locations, ErrMalformed},
		{"no period", `<MPD><BaseURL>x</BaseURL></MPD>`, "/s", "eu", locations, ErrMalformed},
		{"latin-1", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><MPD><Period/></MPD>", "/s", "eu", locations, ErrMalformed},
		{"invalid utf-8", "<MPD><Period id=\"\xff\"/></MPD>", "/s", "eu", locations, ErrMalformed},
		{"unknown default", good, "/s", "xx", locations, ErrUnknownPathway},
		{"bad default", good, "/s", "e u", locations, ErrInvalidInput},
		{"bad location id", good, "/s", "eu", []ServiceLocation{{ID: "e,u", BaseURL: "http://x/"}}, ErrInvalidInput},
		{"duplicate location", good, "/s", "eu", []ServiceLocation{locations[0], locations[0]}, ErrInvalidInput},
		{"empty base url", good, "/s", "eu", []ServiceLocation{{ID: "eu"}}, ErrInvalidInput},
		{"space in server url", good, "/s x", "eu", locations, ErrInvalidInput},
		{"empty server url", good, "", "eu", locations, ErrInvalidInput},
		{"too large", "<MPD>" + strings.Repeat(" ", MaxInputSize) + "<Period/></MPD>", "/s", "eu", locations, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := InjectDASH([]byte(tc.in), tc.server, tc.def, tc.locs)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
