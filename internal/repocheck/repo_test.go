package repocheck

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot returns the module root: the directory holding go.mod, above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// git runs git in root and returns its output. Without git, or outside a git checkout (a
// source tarball), the test fails under CI=true, where the checkout is always a clone, and is
// skipped otherwise.
func git(t *testing.T, root string, stdin []byte, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		skipOrFail(t, "git is not installed: the check needs the list of tracked files")
	}
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		skipOrFail(t, "not a git checkout: the check needs the list of tracked files")
	}
	cmd := exec.CommandContext(t.Context(), "git", append([]string{"-c", "core.quotepath=off"}, args...)...)
	cmd.Dir = root
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// git check-ignore exits 1 when nothing is ignored: only a message on stderr is a failure.
	if err != nil && stderr.Len() > 0 {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("!!!!!!!! SKIPPED: " + msg + " !!!!!!!!")
}

// trackedFiles returns the paths git tracks, relative to root, with forward slashes.
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	for _, f := range bytes.Split(git(t, root, nil, "ls-files", "-z"), []byte{0}) {
		if len(f) > 0 {
			files = append(files, string(f))
		}
	}
	if len(files) == 0 {
		t.Fatal("git ls-files lists nothing")
	}
	return files
}
