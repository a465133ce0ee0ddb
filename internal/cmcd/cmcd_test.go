package cmcd

import (
	"errors"
	"net/url"
	"testing"
)

func TestParseQuery(t *testing.T) {
	// What hls.js 1.x sends on a video segment (query mode), escaped as in a URL.
	raw := url.QueryEscape(`bl=21300,br=3200,bs,cid="sample",d=4004,mtp=25400,ot=v,rtp=15000,sf=h,sid="6e2fb550-c457-11e9",st=v,su,tb=6000`)
	var d Data
	if err := ParseQuery(&d, raw); err != nil {
		t.Fatal(err)
	}
	want := Data{BufferLength: 21300, Bitrate: 3200, Duration: 4004, Deadline: -1, Throughput: 25400, TopBitrate: 6000,
		RequestedTP: 15000, Starved: true, Startup: true, ObjectType: Video, StreamType: "v", StreamFormat: "h",
		SessionID: "6e2fb550-c457-11e9", ContentID: "sample", Version: 1}
	if d != want {
		t.Fatalf("got %+v\nwant %+v", d, want)
	}
}

func TestParseHeaders(t *testing.T) {
	var d Data
	err := ParseHeaders(&d, Headers{Request: "bl=2000, mtp=900", Object: "ot=a, br=128", Status: "bs", Session: `sid="s1", sf=d, v=1, x-vendor="ignored"`})
	if err != nil {
		t.Fatal(err)
	}
	if d.BufferLength != 2000 || d.Throughput != 900 || d.ObjectType != Audio || d.Bitrate != 128 || !d.Starved || d.SessionID != "s1" || d.StreamFormat != "d" {
		t.Fatalf("got %+v", d)
	}
	if err := ParseHeaders(&d, Headers{}); err != nil || !d.Empty() {
		t.Fatalf("no headers: %+v %v", d, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, v := range []string{
		`bl="x"`, `bl=-1`, `bs=1`, `ot="v"`, `st=x`, `sid=tok`, `sid="` + string(make([]byte, 65)) + `"`,
		`bl=(1 2)`, `,,`, `BL=1`, `pr=-1.5`,
	} {
		var d Data
		if err := ParseQuery(&d, url.QueryEscape(v)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err %v, want ErrInvalid", v, err)
		}
	}
	var d Data
	if err := ParseQuery(&d, url.QueryEscape("ot=zz,nor=(\"a\" \"b\")")); err != nil || d.ObjectType != OtherObject {
		t.Fatalf("a later version's object type: %+v %v", d, err)
	}
}

func TestQueryValue(t *testing.T) {
	for _, c := range []struct {
		q, want string
		ok      bool
	}{{"a=1&CMCD=bl%3D1&b=2", "bl%3D1", true}, {"CMCD", "", true}, {"cmcd=x", "", false}, {"", "", false}} {
		got, ok := QueryValue(c.q)
		if got != c.want || ok != c.ok {
			t.Errorf("%q: %q %v", c.q, got, ok)
		}
	}
}

// FuzzParse: no input panics, and whatever is read stays within the limits.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`bl=21300,br=3200,bs,cid="x",ot=v,sid="s",su`, `nor=("a" "b")`, `pr=1.25`, `ot=*x`, `a=?0;p=1`} {
		f.Add(s, url.QueryEscape(s))
	}
	f.Fuzz(func(t *testing.T, header, query string) {
		var d Data
		for _, err := range []error{ParseHeaders(&d, Headers{Request: header, Session: header}), ParseQuery(&d, query)} {
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			if err == nil && (len(d.SessionID) > MaxIDLen || len(d.ContentID) > MaxIDLen || d.BufferLength < -1 || d.Throughput < -1) {
				t.Fatalf("out of limits: %+v", d)
			}
		}
		QueryValue(query)
	})
}
