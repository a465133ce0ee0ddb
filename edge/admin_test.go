package edge

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// adminCall sends one request to the admin listener with the given headers ("Host" sets the
// request's Host).
func adminCall(t *testing.T, h *harness, method, path, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if v := hdr["Host"]; v != "" {
		req.Host = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminRefusesStrangersAndWebPages replays what a process on the machine, or a web page in
// the operator's browser, could send to the admin port: none of it purges or profiles, and the
// cached object stays a HIT until the operator's own request purges it.
func TestAdminRefusesStrangersAndWebPages(t *testing.T) {
	t.Parallel()
	o := httpOriginFor(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, "segment")
	})
	h := startEdge(t, o, nil)
	h.get("/v/1.ts")
	resp, _ := h.get("/v/1.ts")
	expect(t, resp, 200, "HIT")

	bearer := "Bearer " + testAdminToken
	body := `{"prefixes":["/v/"]}`
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		want               string
	}{
		{"purge without token", "POST", "/purge", map[string]string{"Content-Type": "application/json"}, 401, "bearer token"},
		{"purge with a wrong token", "POST", "/purge", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer not-the-admin-token"}, 401, "wrong bearer token"},
		{"purge as text/plain", "POST", "/purge", map[string]string{"Content-Type": "text/plain", "Authorization": bearer}, 415, "application/json"},
		{"purge from a foreign Origin", "POST", "/purge", map[string]string{"Content-Type": "application/json", "Authorization": bearer, "Origin": "http://evil.example"}, 403, "cross-site"},
		{"purge from a cross-site fetch", "POST", "/purge", map[string]string{"Content-Type": "application/json", "Authorization": bearer, "Sec-Fetch-Site": "cross-site"}, 403, "cross-site"},
		{"purge through a rebound name", "POST", "/purge", map[string]string{"Content-Type": "application/json", "Authorization": bearer, "Host": "rebind.evil.example:9090"}, 403, "Host"},
		{"pprof without token", "GET", "/debug/pprof/", nil, 401, "bearer token"},
		{"pprof cmdline without token", "GET", "/debug/pprof/cmdline", nil, 401, "bearer token"},
		{"pprof symbol post without token", "POST", "/debug/pprof/symbol", map[string]string{"Content-Type": "application/json"}, 401, "bearer token"},
		{"pprof through a rebound name", "GET", "/debug/pprof/cmdline", map[string]string{"Authorization": bearer, "Host": "rebind.evil.example"}, 403, "Host"},
	}
	for _, c := range cases {
		status, got := adminCall(t, h, c.method, c.path, body, c.hdr)
		if status != c.status || !strings.Contains(got, c.want) {
			t.Errorf("%s: %d %q, want %d mentioning %q", c.name, status, got, c.status, c.want)
		}
	}
	resp, _ = h.get("/v/1.ts")
	expect(t, resp, 200, "HIT")

	// Open: the probes and /metrics. The operator, with the token: pprof and the purge.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if status, got := adminCall(t, h, "GET", p, "", nil); status != 200 {
			t.Errorf("%s: %d %s", p, status, got)
		}
	}
	if status, got := adminCall(t, h, "GET", "/debug/pprof/cmdline", "", map[string]string{"Authorization": bearer}); status != 200 {
		t.Errorf("pprof with token: %d %s", status, got)
	}
	status, got := adminCall(t, h, "POST", "/purge", body, map[string]string{"Authorization": bearer, "Content-Type": "application/json", "Host": "localhost"})
	if status != 200 || !strings.Contains(got, `"entries":1`) {
		t.Fatalf("operator's purge: %d %s", status, got)
	}
	resp, _ = h.get("/v/1.ts")
	expect(t, resp, 200, "MISS")
}

// Without a token configured the token-protected endpoints are off and say which setting turns
// them on; a token can come from a file (a mounted Secret), and a configured name is accepted as
// Host.
func TestAdminTokenSources(t *testing.T) {
	t.Parallel()
	o := httpOriginFor(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "x") })
	off := startEdge(t, o, func(c *Config) { c.AdminToken = "" })
	status, got := adminCall(t, off, "GET", "/debug/pprof/", "", map[string]string{"Authorization": "Bearer " + testAdminToken})
	if status != 401 || !strings.Contains(got, "admin_token") {
		t.Fatalf("no token configured: %d %q", status, got)
	}

	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := startEdge(t, o, func(c *Config) {
		c.AdminToken, c.AdminTokenFile, c.AdminHosts = "", file, []string{"edge-1.admin.internal"}
	})
	hdr := map[string]string{"Authorization": "Bearer from-a-file-0123456789", "Content-Type": "application/json", "Host": "edge-1.admin.internal:9090"}
	if status, got := adminCall(t, fromFile, "POST", "/purge", `{"urls":["/x"]}`, hdr); status != 200 {
		t.Fatalf("token from file: %d %q", status, got)
	}
}

func TestAdminTokenConfigErrors(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Config){
		"short token":   func(c *Config) { c.AdminToken = "short" },
		"both":          func(c *Config) { c.AdminTokenFile = "/nonexistent" },
		"missing file":  func(c *Config) { c.AdminToken, c.AdminTokenFile = "", "/nonexistent/token" },
		"host and port": func(c *Config) { c.AdminHosts = []string{"admin:9090"} },
	} {
		cfg := testConfig(t)
		mutate(&cfg)
		o := httpOriginFor(t, func(http.ResponseWriter, *http.Request) {})
		if _, err := New(t.Context(), cfg, Deps{Origin: o}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
