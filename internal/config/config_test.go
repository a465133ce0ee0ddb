package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type size int64

func (s *size) UnmarshalText(b []byte) error {
	if strings.HasSuffix(string(b), "KiB") {
		var n int64
		for _, c := range strings.TrimSuffix(string(b), "KiB") {
			n = n*10 + int64(c-'0')
		}
		*s = size(n << 10)
		return nil
	}
	return os.ErrInvalid
}

type sample struct {
	Name  string        `yaml:"name"`
	Wait  time.Duration `yaml:"wait"`
	Inner struct {
		Size  size     `yaml:"size"`
		List  []string `yaml:"list"`
		Flag  *bool    `yaml:"flag"`
		Count int      `yaml:"count"`
	} `yaml:"inner"`
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("name: fromfile\nwait: 3s\ninner:\n  size: 2KiB\n  count: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := sample{Name: "default", Wait: time.Second}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	ld := NewLoader("edge", &cfg, fs)
	if err := fs.Parse([]string{"--inner.count=9", "--inner.flag"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"DUET_EDGE_WAIT=7s", "DUET_EDGE_INNER_LIST=a, b", "DUET_EDGE_INNER_COUNT=5"}
	if err := ld.Load(file, env); err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "fromfile" || cfg.Wait != 7*time.Second || cfg.Inner.Size != 2048 ||
		cfg.Inner.Count != 9 || cfg.Inner.Flag == nil || !*cfg.Inner.Flag ||
		strings.Join(cfg.Inner.List, "|") != "a|b" {
		t.Fatalf("got %+v", cfg)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("nmae: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := sample{}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	ld := NewLoader("edge", &cfg, fs)
	if err := ld.Load(file, nil); err == nil || !strings.Contains(err.Error(), "nmae") {
		t.Fatalf("unknown key: got %v", err)
	}
	if err := ld.Load("", []string{"DUET_EDGE_WAIT=soon"}); err == nil || !strings.Contains(err.Error(), "DUET_EDGE_WAIT") {
		t.Fatalf("bad env: got %v", err)
	}
	if err := fs.Parse([]string{"--wait=soon"}); err == nil || !strings.Contains(err.Error(), "wait") {
		t.Fatalf("bad flag: got %v", err)
	}
}

// TestFlagUsage: a flag's usage shows its default as a flag or variable spells it (lists
// comma-separated, sizes and durations as they are written) and its environment variable.
func TestFlagUsage(t *testing.T) {
	cfg := sample{Name: "", Wait: 24 * time.Hour}
	cfg.Inner.List = []string{"a", "b"}
	cfg.Inner.Count = 3
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	NewLoader("demo", &cfg, fs)
	for flag, want := range map[string]string{
		"name":        `default ""; env DUET_DEMO_NAME`,
		"wait":        "default 24h; env DUET_DEMO_WAIT",
		"inner.list":  "default a,b; env DUET_DEMO_INNER_LIST",
		"inner.count": "default 3; env DUET_DEMO_INNER_COUNT",
		"inner.flag":  `default ""; env DUET_DEMO_INNER_FLAG`,
	} {
		if got := fs.Lookup(flag).Usage; got != want {
			t.Errorf("--%s usage %q, want %q", flag, got, want)
		}
	}
	if got := fs.FlagUsages(); strings.Contains(got, "(default") {
		t.Errorf("pflag repeats the default:\n%s", got)
	}
}
