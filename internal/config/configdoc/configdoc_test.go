package configdoc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/duetcdn/duet/internal/config/configdoc/testdata/sample"
)

func TestDocument(t *testing.T) {
	src := ModuleSources("../../..", "github.com/duetcdn/duet", ".")
	cfg := sample.Default()
	got, err := Document(Role{Name: "demo", Command: "duet demo", Config: &cfg, MachineDefaults: map[string]string{"host": "the host name"}}, src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{ // path → default, doc
		"host":          {"the host name", "Host is where it runs."},
		"tls.ca_file":   {"", "CAFile and CertFile enable TLS."},
		"tls.cert_file": {"", "CAFile and CertFile enable TLS."},
		"tls.retries":   {"3", "Retries is counted apart: a blank line ends a group."},
		"peers":         {"", "Peers are the other nodes."},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d settings, want %d: %+v", len(got), len(want), got)
	}
	for _, s := range got {
		w := want[s.Path]
		if s.Default != w[0] || s.Doc != w[1] || s.Env != "DUET_DEMO_"+strings.ToUpper(strings.ReplaceAll(s.Path, ".", "_")) {
			t.Errorf("%s: default %q doc %q env %s, want %q %q", s.Path, s.Default, s.Doc, s.Env, w[0], w[1])
		}
		// The first setting of a section carries the section's comment; a list of structs its
		// elements' fields.
		var sections, elements []Section
		switch s.Path {
		case "tls.ca_file":
			sections = []Section{{Path: "tls", Doc: "TLS is the TLS setup."}}
		case "peers":
			elements = []Section{{Path: "peers[].addr", Doc: "Addr is where the peer listens."}}
		}
		if !slices.Equal(s.Sections, sections) || !slices.Equal(s.Elements, elements) {
			t.Errorf("%s: sections %v elements %v, want %v %v", s.Path, s.Sections, s.Elements, sections, elements)
		}
	}
}

func TestUndocumentedFieldIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.go"), []byte("package main\n\ntype Undocumented struct {\n\tA int `yaml:\"a\"`\n\n\tB int `yaml:\"b\"`\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	docs, err := fieldDocs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if docs["Undocumented.A"] != "" || docs["Undocumented.B"] != "" {
		t.Fatalf("got %q", docs)
	}
	cfg := sample.Undocumented{}
	_, err = Document(Role{Name: "demo", Command: "duet demo", Config: &cfg}, ModuleSources("../../..", "github.com/duetcdn/duet", "."))
	if err == nil || !strings.Contains(err.Error(), "field Undocumented.Bare") || !strings.Contains(err.Error(), "no doc comment") {
		t.Fatalf("got %v", err)
	}
}
