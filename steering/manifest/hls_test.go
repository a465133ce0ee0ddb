package manifest

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// byHost puts URIs on backup.example.net in pathway "backup" and the rest
// in "eu", the way an edge maps origin URIs to pathways.
func byHost(uri string) string {
	if strings.HasPrefix(uri, "https://backup.example.net/") {
		return "backup"
	}
	return "eu"
}

// tags returns the playlist's lines that start with prefix.
func tags(b []byte, prefix string) []string {
	var out []string
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, prefix) {
			out = append(out, strings.TrimRight(line, "\r\n"))
		}
	}
	return out
}

func TestInjectHLS(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile("testdata/multivariant.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	out, err := InjectHLS(in, "https://steer.example.net/v1/steer/hls?path=%2Fvod%2Fabc&session=1", "eu", byHost)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "multivariant-steered.m3u8", out)

	// One EXT-X-CONTENT-STEERING, right before the first rendition tag,
	// after the header tags.
	cs := tags(out, "#EXT-X-CONTENT-STEERING")
	want := `#EXT-X-CONTENT-STEERING:SERVER-URI="https://steer.example.net/v1/steer/hls?path=%2Fvod%2Fabc&session=1",PATHWAY-ID="eu"`
	if len(cs) != 1 || cs[0] != want {
		t.Fatalf("steering tags %q", cs)
	}
	lines := strings.Split(string(out), "\n")
	if lines[0] != "#EXTM3U" || !strings.HasPrefix(lines[5], "#EXT-X-CONTENT-STEERING") || !strings.HasPrefix(lines[6], "#EXT-X-MEDIA") {
		t.Fatalf("tag placed at the wrong line:\n%s", out)
	}
	// Every variant has exactly one PATHWAY-ID, from its URI; the stale one
	// is replaced; the other attributes, quoted commas included, are kept.
	streams := tags(out, "#EXT-X-STREAM-INF:")
	wantIDs := []string{`PATHWAY-ID="eu"`, `PATHWAY-ID="eu"`, `PATHWAY-ID="backup"`}
	for i, s := range streams {
		if strings.Count(s, "PATHWAY-ID=") != 1 || !strings.HasSuffix(s, ","+wantIDs[i]) {
			t.Errorf("variant %d: %s", i, s)
		}
		list, err := parseAttrs([]byte(strings.TrimPrefix(s, "#EXT-X-STREAM-INF:")))
		if err != nil {
			t.Fatalf("variant %d no longer parses: %v", i, err)
		}
		if v, _ := list.get("CODECS"); !strings.Contains(v, ",") {
			t.Errorf("variant %d CODECS %s", i, v)
		}
	}
	iframes := tags(out, "#EXT-X-I-FRAME-STREAM-INF:")
	if len(iframes) != 2 || !strings.HasSuffix(iframes[0], `URI="v5/iframe_index.m3u8",PATHWAY-ID="eu"`) ||
		!strings.HasSuffix(iframes[1], `,PATHWAY-ID="backup"`) {
		t.Errorf("I-frame streams %q", iframes)
	}
	// EXT-X-MEDIA has no PATHWAY-ID attribute in the spec.
	for _, m := range tags(out, "#EXT-X-MEDIA:") {
		if strings.Contains(m, "PATHWAY-ID") {
			t.Errorf("rendition got a PATHWAY-ID: %s", m)
		}
	}
	// Apart from the new line and the PATHWAY-IDs, nothing changed.
	if got := stripSteering(out); !bytes.Equal(got, stripSteering(in)) {
		t.Errorf("other content changed:\n%s", got)
	}
}

// stripSteering removes EXT-X-CONTENT-STEERING lines and PATHWAY-ID
// attributes.
func stripSteering(b []byte) []byte {
	var out []byte
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "#EXT-X-CONTENT-STEERING") {
			continue
		}
		if i := strings.Index(line, ",PATHWAY-ID=\""); i >= 0 {
			j := strings.IndexByte(line[i+len(",PATHWAY-ID=\""):], '"')
			line = line[:i] + line[i+len(",PATHWAY-ID=\"")+j+1:]
		}
		out = append(out, line...)
	}
	return out
}

func TestInjectHLSForms(t *testing.T) {
	t.Parallel()
	const crlf = "#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1000\r\nlow.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=2000,PATHWAY-ID=\"x\"\r\nhigh.m3u8"
	for _, tc := range []struct {
		name, in, initial string
		pathway           func(string) string
		want              string
	}{
		{"crlf kept, last line without newline, nil mapper", crlf, "eu", nil,
			"#EXTM3U\r\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s\",PATHWAY-ID=\"eu\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1000,PATHWAY-ID=\"eu\"\r\nlow.m3u8\r\n#EXT-X-STREAM-INF:BANDWIDTH=2000,PATHWAY-ID=\"eu\"\r\nhigh.m3u8"},
		{"no initial pathway, default pathway variants", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n", "", func(string) string { return "" },
			"#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"},
		{"initial is the default pathway", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,PATHWAY-ID=\"old\"\na.m3u8\n", ".", func(string) string { return "." },
			"#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s\",PATHWAY-ID=\".\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"},
		{"only a PATHWAY-ID attribute", "#EXTM3U\n#EXT-X-STREAM-INF:PATHWAY-ID=\"old\"\na.m3u8\n", "eu", nil,
			"#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s\",PATHWAY-ID=\"eu\"\n#EXT-X-STREAM-INF:PATHWAY-ID=\"eu\"\na.m3u8\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := InjectHLS([]byte(tc.in), "/s", tc.initial, tc.pathway)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", out, tc.want)
			}
		})
	}
}

func TestInjectHLSErrors(t *testing.T) {
	t.Parallel()
	good := "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"
	for _, tc := range []struct {
		name, in, server, initial string
		pathway                   func(string) string
		want                      error
	}{
		{"media playlist", "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\ns1.ts\n", "/s", "eu", nil, ErrNotMultivariant},
		{"no header", "#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n", "/s", "eu", nil, ErrNotMultivariant},
		{"bom", "\ufeff" + good, "/s", "eu", nil, ErrNotMultivariant},
		{"empty", "", "/s", "eu", nil, ErrNotMultivariant},
		{"no variants", "#EXTM3U\n#EXT-X-VERSION:3\n", "/s", "eu", nil, ErrNotMultivariant},
		{"renditions only", "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"x\",URI=\"a.m3u8\"\n", "/s", "eu", nil, ErrNotMultivariant},
		{"already steered", "#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/x\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n", "/s", "eu", nil, ErrAlreadySteered},
		{"variant without uri", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-STREAM-INF:BANDWIDTH=2\nb.m3u8\n", "/s", "eu", nil, ErrMalformed},
		{"variant at the end", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "/s", "eu", nil, ErrMalformed},
		{"i-frame without uri", "#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n", "/s", "eu", nil, ErrMalformed},
		{"unterminated quote", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1\na.m3u8\n", "/s", "eu", nil, ErrMalformed},
		{"lower-case name", "#EXTM3U\n#EXT-X-STREAM-INF:bandwidth=1\na.m3u8\n", "/s", "eu", nil, ErrMalformed},
		{"trailing comma", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,\na.m3u8\n", "/s", "eu", nil, ErrMalformed},
		{"space in value", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1 2\na.m3u8\n", "/s", "eu", nil, ErrMalformed},
		{"quote in server uri", good, "/s\"x", "eu", nil, ErrInvalidInput},
		{"newline in server uri", good, "/s\nx", "eu", nil, ErrInvalidInput},
		{"empty server uri", good, "", "eu", nil, ErrInvalidInput},
		{"bad initial pathway", good, "/s", "e u", nil, ErrInvalidInput},
		{"bad mapped pathway", good, "/s", "eu", func(string) string { return "e,u" }, ErrInvalidInput},
		{"initial pathway not among the variants", good, "/s", "us", func(string) string { return "eu" }, ErrUnknownPathway},
		{"too large", "#EXTM3U\n" + strings.Repeat("#", MaxInputSize), "/s", "eu", nil, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := InjectHLS([]byte(tc.in), tc.server, tc.initial, tc.pathway)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestInjectHLSVariantWithoutAttributes(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"#EXTM3U\n#EXT-X-STREAM-INF\na.m3u8\n", "#EXTM3U\n#EXT-X-STREAM-INF:\na.m3u8\n"} {
		if _, err := InjectHLS([]byte(in), "/s", "eu", nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", in, err)
		}
	}
}
