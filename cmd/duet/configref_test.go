package main

//go:generate go test -run TestConfigReference -update .

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/duetcdn/duet/internal/config/configdoc"
	"github.com/duetcdn/duet/origin/upload/uploadcmd"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md and internal/config/help_gen.go")

// configRoles are the commands whose settings config.Loader binds, with their defaults as the
// commands build them.
func configRoles() []configdoc.Role {
	edgeCfg := defaultEdgeRoleConfig()
	steeringCfg := defaultSteeringRoleConfig()
	purgeCfg := defaultPurgeServeConfig()
	replicateCfg := defaultReplicateRoleConfig()
	uploadCfg := uploadcmd.DefaultSettings()
	host := map[string]string{"name": "the host name"}
	return []configdoc.Role{
		{Name: "edge", Command: "duet edge", Config: &edgeCfg, MachineDefaults: host},
		{Name: "steering", Command: "duet steering", Config: &steeringCfg, MachineDefaults: host},
		{Name: "purge", Command: "duet purge serve", Config: &purgeCfg},
		{Name: "replicate", Command: "duet replicate", Config: &replicateCfg, MachineDefaults: host},
		{Name: "upload", Command: "duet upload", Config: &uploadCfg, OwnHelp: true},
	}
}

// TestConfigReference: docs/configuration.md and the flags' help (internal/config/help_gen.go)
// are what the configuration structs and their doc comments say today.
func TestConfigReference(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	md, help, err := configdoc.Generate(configRoles(), configdoc.ModuleSources(root, "github.com/duetcdn/duet", "."))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		want []byte
	}{{"docs/configuration.md", md}, {"internal/config/help_gen.go", help}} {
		path := filepath.Join(root, filepath.FromSlash(f.path))
		if *update {
			if err := os.WriteFile(path, f.want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("%s is out of date with the configuration structs: run `%s`", f.path, configdoc.Command)
		}
	}
}

// TestRoleHelp: every flag of a role's --help says what it does, its default and its
// environment variable.
func TestRoleHelp(t *testing.T) {
	line := regexp.MustCompile(`^\s+(?:-\w, )?--([\w.-]+)(?:\[=\S+\])?(?: \w+)?\s{2,}(.*)$`)
	for _, args := range [][]string{{"edge"}, {"steering"}, {"purge", "serve"}, {"replicate"}} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), append(args, "--help"), &out, &out, nil); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, l := range strings.Split(out.String(), "\n") {
				m := line.FindStringSubmatch(l)
				if m == nil || m[1] == "config" || m[1] == "help" || m[1] == "log-format" || m[1] == "log-level" {
					continue
				}
				n++
				usage := m[2]
				i := strings.Index(usage, "(default ")
				if i <= 0 || strings.TrimSpace(usage[:i]) == "" {
					t.Errorf("--%s: no description before its default: %q", m[1], usage)
				}
				if !strings.Contains(usage, "(default ") || !strings.Contains(usage, "; env DUET_") {
					t.Errorf("--%s: no default or environment variable: %q", m[1], usage)
				}
			}
			if n < 5 {
				t.Fatalf("found %d setting flags in:\n%s", n, out.String())
			}
		})
	}
}
