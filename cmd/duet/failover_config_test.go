package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
)

// loadEdge loads an edge config from YAML, environment and flags through `duet edge`'s loader.
func loadEdge(t *testing.T, yaml string, environ, args []string) (edge.Config, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := edge.DefaultConfig()
	fs := pflag.NewFlagSet("edge", pflag.ContinueOnError)
	ld := config.NewLoader("edge", &cfg, fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if err := ld.Load(file, environ); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// TestFailoverConfigYAML: the README's failover example loads, the primary keeps its defaults
// and name, fallbacks get theirs.
func TestFailoverConfigYAML(t *testing.T) {
	cfg, err := loadEdge(t, `name: edge-eu-1
region: eu
origin:
  name: eu
  type: s3
  endpoint: "http://minio.eu:9000"
  bucket: media
  breaker_failures: 5
  breaker_cooldown: 1s
  fallbacks:
    - {name: us, type: s3, endpoint: "http://minio.us:9000", bucket: media-us}
    - name: origin-http
      type: http
      endpoint: "http://packager.internal:8080/vod"
      timeout: 3s
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Origin
	switch {
	case o.Name != "eu" || o.Timeout != 10*time.Second || o.BreakerFailures != 5 || o.BreakerCooldown != time.Second:
		t.Errorf("primary: %+v", o)
	case len(o.Fallbacks) != 2:
		t.Fatalf("fallbacks: %+v", o.Fallbacks)
	case o.Fallbacks[0].Name != "us" || o.Fallbacks[0].Bucket != "media-us" || o.Fallbacks[0].Type != "s3":
		t.Errorf("fallback 0: %+v", o.Fallbacks[0])
	case o.Fallbacks[1].Timeout != 3*time.Second || o.Fallbacks[1].Endpoint != "http://packager.internal:8080/vod":
		t.Errorf("fallback 1: %+v", o.Fallbacks[1])
	}

	// Without a name, the primary is "primary"; without fallbacks there is no group.
	cfg, err = loadEdge(t, `origin: {type: http, endpoint: "http://o:8080"}`, nil, nil)
	if err != nil || cfg.Origin.OriginName() != "primary" || len(cfg.Origin.Fallbacks) != 0 {
		t.Fatalf("plain origin: %v %+v", err, cfg.Origin)
	}
}

// TestFailoverConfigEnvAndFlag: DUET_EDGE_ORIGIN_FALLBACKS and --origin.fallbacks take the list in
// YAML flow form, the flag winning.
func TestFailoverConfigEnvAndFlag(t *testing.T) {
	base := `origin: {type: s3, bucket: media, fallbacks: [{name: from-file, type: s3, bucket: b}]}`
	cfg, err := loadEdge(t, base,
		[]string{`DUET_EDGE_ORIGIN_FALLBACKS=[{name: us, type: s3, endpoint: "http://minio.us:9000", bucket: media}, {name: ap, type: http, endpoint: "http://ap"}]`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Origin.Fallbacks; len(f) != 2 || f[0].Name != "us" || f[0].Endpoint != "http://minio.us:9000" || f[1].Type != "http" {
		t.Fatalf("from the environment: %+v", f)
	}
	cfg, err = loadEdge(t, base, []string{`DUET_EDGE_ORIGIN_FALLBACKS=[{name: us, type: s3, bucket: m}]`},
		[]string{"--origin.fallbacks", "[{name: flagged, type: http, endpoint: 'http://f'}]"})
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Origin.Fallbacks; len(f) != 1 || f[0].Name != "flagged" {
		t.Fatalf("the flag did not win: %+v", f)
	}
	if _, err := loadEdge(t, base, []string{`DUET_EDGE_ORIGIN_FALLBACKS=[{name: us, typo: s3}]`}, nil); err == nil ||
		!strings.Contains(err.Error(), "DUET_EDGE_ORIGIN_FALLBACKS") || !strings.Contains(err.Error(), "typo") {
		t.Fatalf("an unknown field in the environment's list: %v", err)
	}
}

// TestFailoverConfigErrors: every mistake is reported, naming the setting to fix.
func TestFailoverConfigErrors(t *testing.T) {
	_, err := loadEdge(t, `origin:
  name: "eu west"
  type: s3
  bucket: media
  breaker_failures: 0
  fallbacks:
    - {name: us, type: s3, bucket: b}
    - {name: ap, type: http}
    - {type: s3, bucket: c}
    - {name: us, type: ftp}
    - {name: nested, type: s3, bucket: d, fallbacks: [{name: x, type: s3, bucket: e}]}
`, nil, nil)
	if err == nil {
		t.Fatal("a broken failover config was accepted")
	}
	for _, want := range []string{
		`origin.name "eu west"`,
		"origin.fallbacks[1].endpoint (the base URL) is required",
		"origin.fallbacks[2].name is required",
		`origin.fallbacks[3].name "us" is already used by origin.fallbacks[0].name`,
		`origin.fallbacks[3].type "ftp" is unknown`,
		"origin.fallbacks[4]: fallbacks, breaker_failures and breaker_cooldown belong to origin",
		"origin.breaker_failures and origin.breaker_cooldown must be positive",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
