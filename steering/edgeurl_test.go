package steering

import (
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEdgeURLPatterns(t *testing.T) {
	t.Parallel()
	ps, err := parseEdgeURLPatterns([]string{"https://{edge}.cdn.example.com", "http://127.0.10.*:8080", "http://[::1]:8081"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url, edge string
		ok        bool
	}{
		{"https://eu-1.cdn.example.com", "eu-1", true},
		{"https://eu-1.cdn.example.com:443/", "eu-1", true},
		{"https://EU-1.cdn.example.com", "eu-1", true},
		{"https://eu-2.cdn.example.com", "eu-1", false}, // another edge's name
		{"https://x.eu-1.cdn.example.com", "eu-1", false},
		{"http://eu-1.cdn.example.com", "eu-1", false},       // scheme
		{"https://eu-1.cdn.example.com:8443", "eu-1", false}, // port
		{"http://127.0.10.2:8080", "any", true},
		{"http://127.0.10.2:8081", "any", false},
		{"http://127.0.11.2:8080", "any", false},
		{"http://127.0.10.2.evil.com:8080", "any", false},
		{"http://[::1]:8081", "any", true},
		{"http://169.254.169.254", "any", false},
		{"http://user@127.0.10.2:8080", "any", false},
		{"http://127.0.10.2:8080/path", "any", false},
		{"http://127.0.10.2:8080?q=1", "any", false},
		{"ftp://127.0.10.2:8080", "any", false},
		{"not a url", "any", false},
	} {
		if err := checkEdgeURL(tc.url, tc.edge, "eu", ps); (err == nil) != tc.ok {
			t.Errorf("checkEdgeURL(%q, edge %q) = %v, want ok=%v", tc.url, tc.edge, err, tc.ok)
		}
	}
	// Without patterns: any http(s) base URL but the metadata services' link-local addresses.
	for u, ok := range map[string]bool{"https://edge.example.com": true, "http://10.0.0.7:8080": true,
		"http://169.254.169.254": false, "http://[fe80::1]:80": false, "http://0.0.0.0:8080": false, "http://x/y": false} {
		if err := checkEdgeURL(u, "e", "r", nil); (err == nil) != ok {
			t.Errorf("without patterns, checkEdgeURL(%q) = %v, want ok=%v", u, err, ok)
		}
	}
	for _, bad := range []string{"127.0.0.1:8080", "https://", "https://a/b", "https://u@a", "http://a:x", "http://[a"} {
		if _, err := parseEdgeURLPatterns([]string{bad}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if _, err := New(Config{Regions: []Region{{Name: "eu"}}, EdgeURLs: []string{"nope"}}, Deps{}); err == nil ||
		!strings.Contains(err.Error(), "edge_urls[0]") {
		t.Errorf("a bad edge_urls entry: %v, want an error naming it", err)
	}
}

// FuzzCheckEdgeURL: a heartbeat's URL comes from the network. Whatever it is, an accepted URL is
// an http(s) base URL that a pattern matches, and checking never panics.
func FuzzCheckEdgeURL(f *testing.F) {
	for _, s := range []string{"http://127.0.10.1:8080", "https://eu-1.cdn.example.com", "http://[::1]:8081", "http://169.254.169.254",
		"http://a/b", "http://127.0.10.1.x:8080", "%", "http://*:8080", "http://[::1]:8080/?#"} {
		f.Add(s, "eu-1")
	}
	ps, err := parseEdgeURLPatterns([]string{"https://{edge}.cdn.example.com", "http://127.0.10.*:8080", "http://[::1]:8081"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw, edge string) {
		if checkEdgeURL(raw, edge, "eu", ps) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", raw, err)
		}
		host := strings.ToLower(u.Hostname())
		ok := strings.HasPrefix(host, "127.0.10.") && !strings.Contains(strings.TrimPrefix(host, "127.0.10."), ".") && u.Scheme == "http" ||
			host == "::1" && u.Port() == "8081" ||
			strings.HasSuffix(host, ".cdn.example.com") && strings.Count(host, ".") == 3 && u.Scheme == "https"
		if !ok || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			t.Fatalf("accepted %q for edge %q", raw, edge)
		}
	})
}

func TestObserveMsgSubjectMustNameTheSender(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Regions: []Region{{Name: "eu"}}}, Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	hb := `{"edge":"eu-2","region":"eu","url":"http://127.0.0.1:1","state":"serving","origin_healthy":true}`
	s.observeMsg("duet.health.eu.eu-1", []byte(hb))
	if got := len(s.Topology().Regions[0].Edges); got != 0 {
		t.Fatalf("a heartbeat for eu-2 sent on eu-1's subject entered the table (%d edges)", got)
	}
	s.observeMsg("duet.health.eu.eu-2", []byte(hb))
	if got := len(s.Topology().Regions[0].Edges); got != 1 {
		t.Fatalf("a heartbeat on its own subject was not taken (%d edges)", got)
	}
}
