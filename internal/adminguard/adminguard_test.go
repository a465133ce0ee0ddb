package adminguard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const tok = "admin-token-0123456789"

// serve runs a guarded API on loopback: GET /open (Browser only), POST /do and GET /secret
// (Token).
func serve(t *testing.T, cfg Config) string {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "done") })
	mux.Handle("GET /open", g.Browser(ok))
	mux.Handle("POST /do", g.Token(ok))
	mux.Handle("GET /secret", g.Token(ok))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestGuardRefusesWhatABrowserPageOrAStrangerSends(t *testing.T) {
	base := serve(t, Config{Tokens: []string{"old-token-0123456789", tok}, Hosts: []string{"edge-admin.internal"}, Realm: "test"})
	json := "application/json"
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		want               string
	}{
		{"no token", "POST", "/do", map[string]string{"Content-Type": json}, 401, "missing bearer token"},
		{"wrong token", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer nope-nope-nope-nope"}, 401, "wrong bearer token"},
		{"basic", "GET", "/secret", map[string]string{"Authorization": "Basic " + tok}, 401, "missing bearer token"},
		{"token", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok}, 200, "done"},
		{"old token still accepted", "GET", "/secret", map[string]string{"Authorization": "Bearer old-token-0123456789"}, 200, "done"},
		{"json with charset", "POST", "/do", map[string]string{"Content-Type": "application/json; charset=utf-8", "Authorization": "Bearer " + tok}, 200, "done"},
		{"text/plain", "POST", "/do", map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + tok}, 415, "application/json"},
		{"form", "POST", "/do", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer " + tok}, 415, "application/json"},
		{"no content type", "POST", "/do", map[string]string{"Authorization": "Bearer " + tok}, 415, "application/json"},
		{"foreign origin", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok, "Origin": "https://evil.example"}, 403, "cross-site"},
		{"null origin", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok, "Origin": "null"}, 403, "cross-site"},
		{"sec-fetch-site cross-site", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok, "Sec-Fetch-Site": "cross-site"}, 403, "cross-site"},
		{"sec-fetch-site same-site", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok, "Sec-Fetch-Site": "same-site"}, 403, "cross-site"},
		{"sec-fetch-site same-origin", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok, "Sec-Fetch-Site": "same-origin"}, 200, "done"},
		{"rebound host", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok, "Host": "attacker.example:8080"}, 403, "not an address"},
		{"rebound host on a GET", "GET", "/open", map[string]string{"Host": "attacker.example"}, 403, "not an address"},
		{"configured host", "POST", "/do", map[string]string{"Content-Type": json, "Authorization": "Bearer " + tok, "Host": "Edge-Admin.internal.:9090"}, 200, "done"},
		{"localhost", "GET", "/open", map[string]string{"Host": "localhost:1"}, 200, "done"},
		{"ipv6 literal", "GET", "/open", map[string]string{"Host": "[::1]:9090"}, 200, "done"},
		{"cross-site GET is no change", "GET", "/open", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200, "done"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, base+c.path, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			if h := c.hdr["Host"]; h != "" {
				req.Host = h
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
				t.Fatalf("%d %q, want %d mentioning %q", resp.StatusCode, b, c.status, c.want)
			}
			if c.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: %v", resp.Header)
			}
		})
	}
}

// Without a configured token the endpoints that need one are off, and say how to turn them on.
func TestGuardWithoutTokensRefusesAll(t *testing.T) {
	base := serve(t, Config{NoTokenReason: "set admin_token to enable"})
	req, _ := http.NewRequest("GET", base+"/secret", nil)
	req.Header.Set("Authorization", "Bearer ")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "admin_token") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestNewRejectsWeakTokensAndBadHosts(t *testing.T) {
	for _, cfg := range []Config{
		{Tokens: []string{"short"}},
		{Tokens: []string{"has a space in it, too long"}},
		{Hosts: []string{"host:9090"}},
		{Hosts: []string{"http://host"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// FuzzCheck: whatever the headers, a state-changing request passes only when it is JSON, its
// Host is an address or a configured name, and nothing says it is cross-site.
func FuzzCheck(f *testing.F) {
	f.Add("POST", "127.0.0.1:9090", "application/json", "", "")
	f.Add("POST", "evil.example", "text/plain", "http://evil.example", "cross-site")
	f.Add("PUT", "[::1]:1", "application/json;charset=x", "http://[::1]:1", "same-origin")
	g, err := New(Config{Hosts: []string{"admin.example"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, host, ct, origin, site string) {
		r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Method, r.Host = method, host
		r.Header.Set("Content-Type", ct)
		r.Header.Set("Origin", origin)
		r.Header.Set("Sec-Fetch-Site", site)
		status, reason := g.Check(r)
		if status != 0 && reason == "" {
			t.Fatalf("refusal %d without a reason", status)
		}
		if status != 0 || method == "GET" || method == "HEAD" || method == "OPTIONS" {
			return
		}
		if site != "" && site != "same-origin" && site != "none" {
			t.Fatalf("Sec-Fetch-Site %q passed", site)
		}
		if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/json") {
			t.Fatalf("Content-Type %q passed", ct)
		}
	})
}
