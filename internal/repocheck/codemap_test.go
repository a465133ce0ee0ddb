package repocheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeCodeMap fails when a Go package is missing from README.md's code map, or the map
// names a package that no longer exists: the map is how a newcomer finds their way in, and it
// had fallen a dozen packages behind the code.
func TestReadmeCodeMap(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### Code map\n")
	if !ok {
		t.Fatal(`README.md has no "### Code map" section`)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	packages := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (skipDirs[d.Name()] || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			packages[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range packages {
		if !strings.Contains(section, "[`"+p+"`]("+p+"/)") {
			t.Errorf("README.md's code map does not list %s: add a row \"| [`%s`](%s/) | what it does |\"", p, p, p)
		}
	}
	for _, line := range strings.Split(section, "\n") {
		if p, ok := strings.CutPrefix(line, "| [`"); ok {
			p, _, _ = strings.Cut(p, "`")
			if !packages[p] {
				t.Errorf("README.md's code map lists %s, which is not a package (any more)", p)
			}
		}
	}
}
