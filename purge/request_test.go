package purge

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeRequest(t *testing.T) {
	good := []struct{ body, wantURL string }{
		{`{"urls":["/vod/a/seg1.ts"]}`, "/vod/a/seg1.ts"},
		{`{"urls":["https://cdn.example.com/vod/a.ts?x=1"]}`, "/vod/a.ts?x=1"},
		{`{"prefixes":["/vod/"],"soft":true,"wait":"2s","id":"job-42"}`, ""},
		{`{"tags":["show-a"]}`, ""},
	}
	for _, g := range good {
		req, _, err := DecodeRequest(strings.NewReader(g.body), 10, time.Minute)
		if err != nil {
			t.Errorf("%s: %v", g.body, err)
			continue
		}
		if g.wantURL != "" && req.URLs[0] != g.wantURL {
			t.Errorf("%s: url %q", g.body, req.URLs[0])
		}
	}
	badBodies := map[string]string{
		``:                                  "not a purge object",
		`[]`:                                "not a purge object",
		`{}`:                                "at least one",
		`{"urls":["/a"],"bogus":1}`:         "unknown field",
		`{"urls":["/a"]} {"urls":["/b"]}`:   "data after",
		`{"urls":["a"]}`:                    "want a path",
		`{"urls":["ftp://h/a"]}`:            "want a path",
		`{"urls":["//evil/a"]}`:             "starts with //",
		`{"urls":["/a\u0000b"]}`:            "control",
		`{"prefixes":["/a?x=1"]}`:           "no query",
		`{"tags":["two words"]}`:            "without spaces",
		`{"tags":[""]}`:                     "without spaces",
		`{"urls":["/a"],"wait":"forever"}`:  "wait",
		`{"urls":["/a"],"wait":"2h"}`:       "at most",
		`{"urls":["/a"],"id":"no spaces!"}`: "letters, digits",
		`{"urls":["/1","/2","/3","/4","/5","/6","/7","/8","/9","/10","/11"]}`: "at most 10",
	}
	for body, want := range badBodies {
		_, _, err := DecodeRequest(strings.NewReader(body), 10, time.Minute)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want a bad request mentioning %q", body, err, want)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"urls":["/a"]}`, `{"prefixes":["/v/"],"soft":true,"wait":"1s"}`, `{"tags":["x"],"id":"a-b"}`, `{}`, `[`, `{"urls":["http://h/a?b"]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, wait, err := DecodeRequest(strings.NewReader(body), 100, time.Minute)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error that is not a bad request: %v", err)
			}
			return
		}
		if len(req.URLs)+len(req.Prefixes)+len(req.Tags) == 0 || wait < 0 || wait > time.Minute {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
		for _, u := range append(append([]string{}, req.URLs...), req.Prefixes...) {
			if !strings.HasPrefix(u, "/") {
				t.Fatalf("accepted path %q", u)
			}
		}
	})
}
