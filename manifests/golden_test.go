package manifests

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the manifests")

// TestGolden keeps what `kubectl apply -k` would apply for every overlay and the demo in
// testdata/, so a change to the manifests shows in review as a change to what runs. After a
// deliberate change: go test ./manifests -run TestGolden -update, and review the diff.
func TestGolden(t *testing.T) {
	for _, dir := range append(overlays(t), "demo") {
		rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		got, err := rm.AsYaml()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		name := filepath.Join("testdata", strings.ReplaceAll(filepath.ToSlash(dir), "/", "-")+".golden.yaml")
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("%v (run go test ./manifests -run TestGolden -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s builds differently from %s: rerun with -update if the change is meant, and review the diff.\n%s",
				dir, name, firstDiff(string(want), string(got)))
		}
	}
}

// firstDiff shows the first lines that differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  golden: " + wl + "\n  built:  " + gl
		}
	}
	return ""
}
