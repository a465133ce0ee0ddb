package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261207160000-0123456789ab"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-07T16:00:00Z"}}}
	dirty := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261207160000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		name, ldflags string
		bi            *debug.BuildInfo
		want          string
	}{
		{"ldflags win", "v1.2.3", stamped, "v1.2.3"},
		{"git checkout", "", stamped, "v0.0.0-20261207160000-0123456789ab, git 0123456789abcdef of 2026-12-07T16:00:00Z, go1.26.8"},
		{"changed checkout", "", dirty, "v0.0.0-20261207160000-0123456789ab+dirty, git 0123456789abcdef+dirty, go1.26.8"},
		{"no git", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "(devel), unknown revision, go1.26.8"},
		{"no build info", "", nil, "(no build info)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionOf(tc.ldflags, tc.bi); got != tc.want {
				t.Errorf("versionOf = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVersionStampedByGoBuild: `go build ./cmd/duet` in a git checkout, nothing else, gives a
// binary whose `duet version` names the checkout's commit. -buildvcs=auto is go build's default;
// it is spelled out to override a GOFLAGS=-buildvcs=false in the environment (make build does too).
func TestVersionStampedByGoBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	head, err := exec.CommandContext(t.Context(), "git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	if fi, err := os.Stat("../../.git"); err != nil || !fi.IsDir() {
		// go build looks for a .git directory; a worktree's is a file (make build passes
		// -ldflags there instead: TestMakeBuildStampsWorktrees).
		t.Skip("a git worktree: go build does not stamp it")
	}
	bin := filepath.Join(t.TempDir(), "duet")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("duet version: %v\n%s", err, out)
	}
	if want := "git " + strings.TrimSpace(string(head)); !strings.Contains(string(out), want) {
		t.Errorf("duet version printed %q, want it to name %q", out, want)
	}
}

// TestMakeBuildStampsWorktrees: in a git worktree, make build hands the commit to -ldflags.
func TestMakeBuildStampsWorktrees(t *testing.T) {
	t.Parallel()
	if fi, err := os.Stat("../../.git"); err != nil || fi.IsDir() {
		t.Skip("not a git worktree: go build stamps the commit itself (TestVersionStampedByGoBuild)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	head, err := exec.CommandContext(t.Context(), "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "make", "-n", "-C", "../..", "build").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n build: %v\n%s", err, out)
	}
	if want := "-X main.version=" + strings.TrimSpace(string(head)); !strings.Contains(string(out), want) {
		t.Errorf("make build does not pass %q:\n%s", want, out)
	}
}
