package manifest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
)

// FuzzInjectHLS feeds origin playlists to InjectHLS. On success the result
// has exactly one EXT-X-CONTENT-STEERING tag, every variant has one
// PATHWAY-ID, and removing the steering tag and PATHWAY-IDs gives back the
// input (for inputs that had none).
func FuzzInjectHLS(f *testing.F) {
	seed, err := os.ReadFile("testdata/multivariant.m3u8")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1000\r\nlow.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=2000,PATHWAY-ID=\"x\"\r\nhigh.m3u8"))
	f.Add([]byte("#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"i.m3u8\"\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"a,b\",BANDWIDTH=1\n\n# c\nhttps://backup.example.net/a.m3u8\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\ns.ts\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := InjectHLS(in, "https://steer.example.net/s?a=1", "eu", byHost)
		if err != nil {
			for _, want := range []error{ErrNotMultivariant, ErrAlreadySteered, ErrMalformed, ErrUnknownPathway, ErrInvalidInput, ErrTooLarge} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("unexpected error %v", err)
		}
		if n := len(tags(out, "#EXT-X-CONTENT-STEERING:")); n != 1 {
			t.Fatalf("%d steering tags in\n%q", n, out)
		}
		// Variants: every STREAM-INF and I-FRAME-STREAM-INF line parses
		// and has exactly one PATHWAY-ID.
		for line := range strings.Lines(string(out)) {
			line = strings.TrimRight(line, "\r\n")
			tag, attrs, ok := cutTag([]byte(line))
			if !ok || (tag != "EXT-X-STREAM-INF" && tag != "EXT-X-I-FRAME-STREAM-INF") {
				continue
			}
			list, err := parseAttrs(attrs)
			if err != nil {
				t.Fatalf("output line does not parse: %v\n%q", err, line)
			}
			n := 0
			for _, a := range list {
				if a.name == "PATHWAY-ID" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d PATHWAY-IDs on %q", n, line)
			}
		}
		if !bytes.Contains(in, []byte("PATHWAY-ID")) && !bytes.Equal(stripSteering(out), stripSteering(in)) {
			t.Fatalf("content changed:\n%q\n%q", in, out)
		}
		// Idempotence guard: a steered playlist is not steered twice.
		if _, err := InjectHLS(out, "/s", "eu", byHost); !errors.Is(err, ErrAlreadySteered) {
			t.Fatalf("second injection: %v", err)
		}
	})
}

// FuzzInjectDASH feeds origin MPDs to InjectDASH. On success the result is
// well-formed XML with one ContentSteering, and removing the insertions
// gives back the input byte for byte.
func FuzzInjectDASH(f *testing.F) {
	seed, err := os.ReadFile("testdata/live.mpd")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`<MPD><BaseURL serviceLocation="eu">http://a/</BaseURL><Period/></MPD>`))
	f.Add([]byte("<dash:MPD xmlns:dash=\"urn:mpeg:dash:schema:mpd:2011\">\r\n  <dash:Period/>\r\n</dash:MPD>"))
	f.Add([]byte("<?xml version=\"1.0\"?>\n<!DOCTYPE MPD>\n<MPD>\n\t<BaseURL>x</BaseURL>\n\t<Period><![CDATA[x]]></Period>\n</MPD>\n"))
	f.Add([]byte(`<MPD><ServiceDescription><ContentSteering>x</ContentSteering></ServiceDescription><Period/></MPD>`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, ins, err := injectDASH(in, "https://steer.example.net/s?a=1&b=2", "eu", locations)
		if err != nil {
			for _, want := range []error{ErrNotMPD, ErrAlreadySteered, ErrMalformed, ErrUnknownPathway, ErrInvalidInput, ErrTooLarge} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("unexpected error %v", err)
		}
		if back := removeInsertions(out, ins); !bytes.Equal(back, in) {
			t.Fatalf("round trip changed the input:\n%q\n%q", in, back)
		}
		dec := xml.NewDecoder(bytes.NewReader(out))
		dec.Strict = true
		depth, steering := 0, 0
		for {
			tok, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("output is not well-formed: %v\n%q", err, out)
			}
			switch el := tok.(type) {
			case xml.StartElement:
				if el.Name.Local == "ContentSteering" {
					if depth != 1 {
						t.Fatalf("ContentSteering at depth %d", depth)
					}
					steering++
				}
				depth++
			case xml.EndElement:
				depth--
			}
		}
		if steering != 1 {
			t.Fatalf("%d ContentSteering elements", steering)
		}
		if _, err := InjectDASH(out, "/s", "eu", nil); !errors.Is(err, ErrAlreadySteered) {
			t.Fatalf("second injection: %v", err)
		}
	})
}

// FuzzParseQuery feeds raw query strings to both parsers: they answer a
// *QueryError or a Request whose pathways are legal and throughputs in
// range, and never panic.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		`_HLS_pathway=%22eu%22&_HLS_throughput=5140000`,
		`_HLS_pathway=CDN_A&_HLS_throughput=12.5&duet_pathway=us&duet_throughput=1`,
		`_DASH_pathway=%22beta,alpha%22&_DASH_throughput=802522000,647618000`,
		`_DASH_pathway=%22a%22,%22b%22&_DASH_throughput=,7`,
		`_DASH_pathway=a&_DASH_pathway=b`,
		`_HLS_throughput=99999999999999999999`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for _, parse := range []func(url.Values) (Request, error){ParseHLSQuery, ParseDASHQuery} {
			r, err := parse(q)
			if err != nil {
				if _, ok := errors.AsType[*QueryError](err); !ok {
					t.Fatalf("error %v is not a *QueryError", err)
				}
				continue
			}
			check := func(id string, bps int64) {
				if id != "" && !ValidPathwayID(id) {
					t.Fatalf("illegal pathway %q from %q", id, raw)
				}
				if bps < 0 || bps > MaxThroughput {
					t.Fatalf("throughput %d from %q", bps, raw)
				}
			}
			check(r.Pathway, r.Throughput)
			check(r.PrevPathway, r.PrevThroughput)
			for _, rep := range r.Reports {
				if rep.Pathway == "" {
					t.Fatalf("empty reported pathway from %q", raw)
				}
				check(rep.Pathway, rep.Throughput)
			}
			// What a RELOAD-URI carries back parses again.
			if r.Pathway != "" {
				b, err := HLS(Input{ReloadURI: "/s?" + raw, Request: r}, []Pathway{{ID: r.Pathway}})
				if err != nil {
					if errors.Is(err, ErrInvalidInput) {
						continue // raw is not a valid URL tail
					}
					t.Fatal(err)
				}
				_ = b
			}
		}
	})
}
