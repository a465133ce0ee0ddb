package repocheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxFileBytes bounds a tracked file: a source file, a golden file or a small fixture is far
// below it; a compiled binary is far above.
const maxFileBytes = 1 << 20

// largeData lists the tracked files allowed above maxFileBytes, with why. Each must be named in
// README.md, so that a reader knows what it is and where it comes from.
var largeData = map[string]string{
	"steering/geoip/country.mmdb": "the embedded GeoIP country database, built by go generate from openly licensed data (steering/geoip/NOTICE)",
}

// TestTrackedFileSizes fails on a tracked file over 1 MiB that is not listed data: the 33 MB
// cmd/duet/duet that `cd cmd/duet && go build` wrote into the tree was committed this way.
func TestTrackedFileSizes(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range trackedFiles(t, root) {
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree but not yet committed, or a symlink
		}
		if _, ok := largeData[f]; ok {
			seen[f] = true
			continue
		}
		if fi.Size() > maxFileBytes {
			t.Errorf("%s is tracked and %.1f MiB: build outputs belong in .gitignore (git rm --cached %s); "+
				"data the project needs goes in largeData here and is described in README.md",
				f, float64(fi.Size())/(1<<20), f)
		}
	}
	for f, why := range largeData {
		if !seen[f] {
			t.Errorf("largeData lists %s (%s), which is not tracked: drop it from the list", f, why)
		}
		if !strings.Contains(string(readme), f) {
			t.Errorf("README.md does not name %s (%s): every large data file is documented there", f, why)
		}
	}
}
