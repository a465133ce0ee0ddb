package manifest

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func query(t *testing.T, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestParseHLSQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw string
		want      Request
		param     string // the bad parameter, when an error is expected
	}{
		{"nothing", "", Request{}, ""},
		{"quoted pathway (the spec)", `_HLS_pathway=%22eu-west.1%22&_HLS_throughput=5140000`,
			Request{Pathway: "eu-west.1", Throughput: 5140000, Reports: []Report{{"eu-west.1", 5140000}}}, ""},
		{"unquoted pathway (hls.js)", `_HLS_pathway=CDN_A&_HLS_throughput=0`,
			Request{Pathway: "CDN_A", Reports: []Report{{"CDN_A", 0}}}, ""},
		{"default pathway", `_HLS_pathway=.`, Request{Pathway: ".", Reports: []Report{{".", 0}}}, ""},
		{"fractional throughput", `_HLS_throughput=1234.9`, Request{Throughput: 1234}, ""},
		{"previous session", `duet_pathway=us&duet_throughput=99&_HLS_pathway=eu`,
			Request{Pathway: "eu", Reports: []Report{{"eu", 0}}, PrevPathway: "us", PrevThroughput: 99}, ""},
		{"other parameters ignored", `path=/vod/abc&session=x`, Request{}, ""},
		{"empty pathway", `_HLS_pathway=`, Request{}, ParamHLSPathway},
		{"empty quoted pathway", `_HLS_pathway=%22%22`, Request{}, ParamHLSPathway},
		{"space in pathway", `_HLS_pathway=eu+west`, Request{}, ParamHLSPathway},
		{"comma in pathway", `_HLS_pathway=a,b`, Request{}, ParamHLSPathway},
		{"long pathway", `_HLS_pathway=` + strings.Repeat("a", 129), Request{}, ParamHLSPathway},
		{"repeated pathway", `_HLS_pathway=a&_HLS_pathway=b`, Request{}, ParamHLSPathway},
		{"negative throughput", `_HLS_throughput=-1`, Request{}, ParamHLSThroughput},
		{"throughput with unit", `_HLS_throughput=5Mbps`, Request{}, ParamHLSThroughput},
		{"exponent", `_HLS_throughput=1e6`, Request{}, ParamHLSThroughput},
		{"empty throughput", `_HLS_throughput=`, Request{}, ParamHLSThroughput},
		{"dot only", `_HLS_throughput=.`, Request{}, ParamHLSThroughput},
		{"trailing dot", `_HLS_throughput=5.`, Request{}, ParamHLSThroughput},
		{"huge throughput", `_HLS_throughput=99999999999999999999`, Request{}, ParamHLSThroughput},
		{"over the cap", `_HLS_throughput=1000000000000001`, Request{}, ParamHLSThroughput},
		{"bad previous pathway", `duet_pathway=%3Cscript%3E`, Request{}, ParamPrevPathway},
		{"bad previous throughput", `duet_throughput=x`, Request{}, ParamPrevThroughput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHLSQuery(query(t, tc.raw))
			checkParse(t, got, err, tc.want, tc.param)
		})
	}
}

func TestParseDASHQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw string
		want      Request
		param     string
	}{
		{"nothing", "", Request{}, ""},
		{"dash.js: quoted list, paired throughput",
			`_DASH_pathway=%22beta,alpha%22&_DASH_throughput=802522000,647618000`,
			Request{Pathway: "beta", Throughput: 802522000, Reports: []Report{{"beta", 802522000}, {"alpha", 647618000}}}, ""},
		{"no throughput measured yet (empty value)", `_DASH_pathway=%22alpha%22&_DASH_throughput=`,
			Request{Pathway: "alpha", Reports: []Report{{"alpha", 0}}}, ""},
		{"fewer throughputs than pathways", `_DASH_pathway=%22a,b,c%22&_DASH_throughput=5`,
			Request{Pathway: "a", Throughput: 5, Reports: []Report{{"a", 5}, {"b", 0}, {"c", 0}}}, ""},
		{"empty entry is unknown", `_DASH_pathway=a,b&_DASH_throughput=,7`,
			Request{Pathway: "a", Reports: []Report{{"a", 0}, {"b", 7}}}, ""},
		{"each quoted", `_DASH_pathway=%22a%22,%22b%22`,
			Request{Pathway: "a", Reports: []Report{{"a", 0}, {"b", 0}}}, ""},
		{"spaces around", `_DASH_pathway=%22a,+b%22&_DASH_throughput=1,+2`,
			Request{Pathway: "a", Throughput: 1, Reports: []Report{{"a", 1}, {"b", 2}}}, ""},
		{"previous session", `_DASH_pathway=a&duet_pathway=b`,
			Request{Pathway: "a", Reports: []Report{{"a", 0}}, PrevPathway: "b"}, ""},
		{"empty list", `_DASH_pathway=%22%22`, Request{}, ParamDASHPathway},
		{"empty element", `_DASH_pathway=a,,b`, Request{}, ParamDASHPathway},
		{"bad element", `_DASH_pathway=a,b%2Fc`, Request{}, ParamDASHPathway},
		{"too many", `_DASH_pathway=` + strings.Repeat("a,", 32) + "a", Request{}, ParamDASHPathway},
		{"repeated", `_DASH_pathway=a&_DASH_pathway=b`, Request{}, ParamDASHPathway},
		{"more throughputs than pathways", `_DASH_pathway=a&_DASH_throughput=1,2`, Request{}, ParamDASHThroughput},
		{"throughput without pathway", `_DASH_throughput=1`, Request{}, ParamDASHThroughput},
		{"bad throughput", `_DASH_pathway=a&_DASH_throughput=fast`, Request{}, ParamDASHThroughput},
		{"negative throughput", `_DASH_pathway=a&_DASH_throughput=-5`, Request{}, ParamDASHThroughput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDASHQuery(query(t, tc.raw))
			checkParse(t, got, err, tc.want, tc.param)
		})
	}
}

func checkParse(t *testing.T, got Request, err error, want Request, param string) {
	t.Helper()
	if param != "" {
		var qe *QueryError
		if !errors.As(err, &qe) || qe.Param != param || !errors.Is(err, ErrBadQuery) {
			t.Fatalf("err = %v, want a QueryError on %s", err, param)
		}
		if !strings.Contains(err.Error(), param) || qe.Reason == "" {
			t.Fatalf("error %q does not say what is wrong", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestValidPathwayID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"eu": true, "CDN-A": true, "cdn_b.2": true, ".": true, "..": true,
		"": false, "a b": false, "a,b": false, `a"b`: false, "é": false, "a/b": false, "a:b": false,
		strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
	} {
		if got := ValidPathwayID(id); got != want {
			t.Errorf("ValidPathwayID(%q) = %v", id, got)
		}
	}
}
