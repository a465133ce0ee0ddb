package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWiringStaysThin: cmd/duet parses flags and wires packages; logic grows in the packages
// (devcluster, origin/upload/uploadcmd, the roles), so no file here passes 150 lines.
func TestWiringStaysThin(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n > 150 {
			t.Errorf("%s has %d lines: move its logic into a package, keep the wiring here", f, n)
		}
	}
	if len(files) < 5 {
		t.Fatalf("found %d files: not cmd/duet", len(files))
	}
}
