package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"

	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/config"
)

// TestEdgeDropQueryConfig: cache.drop_query left unset follows the origin type, and an explicit
// false (file, environment or flag) keeps the query even with an S3 origin.
func TestEdgeDropQueryConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "edge.yaml")
	for _, c := range []struct {
		name  string
		yaml  string
		env   []string
		flags []string
		want  bool
	}{
		{"s3 default", "origin: {type: s3, bucket: media}\n", nil, nil, true},
		{"http default", "origin: {type: http, endpoint: \"http://o\"}\n", nil, nil, false},
		{"s3 file false", "origin: {type: s3, bucket: media}\ncache: {drop_query: false}\n", nil, nil, false},
		{"s3 env false", "origin: {type: s3, bucket: media}\n", []string{"DUET_EDGE_CACHE_DROP_QUERY=false"}, nil, false},
		{"s3 flag false", "origin: {type: s3, bucket: media}\n", nil, []string{"--cache.drop_query=false"}, false},
		{"http flag true", "origin: {type: http, endpoint: \"http://o\"}\n", nil, []string{"--cache.drop_query"}, true},
	} {
		if err := os.WriteFile(file, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := edge.DefaultConfig()
		fs := pflag.NewFlagSet("edge", pflag.ContinueOnError)
		ld := config.NewLoader("edge", &cfg, fs)
		if err := fs.Parse(c.flags); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := ld.Load(file, c.env); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := cfg.QueryDropped(); got != c.want {
			t.Errorf("%s: query dropped %v, want %v", c.name, got, c.want)
		}
	}
}
