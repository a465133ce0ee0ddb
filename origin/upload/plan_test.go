package upload_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/duetcdn/duet/origin/upload"
)

// TestPlan: keys, symlinks, hidden files and key clashes, without a bucket.
func TestPlan(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "show/master.m3u8", []byte("#EXTM3U\n"))
	write(t, dir, "show/720p/seg1.ts", []byte("a"))
	write(t, dir, "show/.cache/x", []byte("a"))
	write(t, dir, "other/poster.jpg", []byte("jpg"))
	write(t, dir, "single.ts", []byte("s"))
	write(t, dir, "dup/single.ts", []byte("d"))
	if err := os.Symlink(filepath.Join(dir, "other/poster.jpg"), filepath.Join(dir, "show/poster.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "other"), filepath.Join(dir, "show/linked")); err != nil {
		t.Fatal(err)
	}
	p, err := upload.Plan(t.Context(), upload.Config{Prefix: "vod//abc/"},
		[]string{filepath.Join(dir, "show") + "/", filepath.Join(dir, "single.ts"), filepath.Join(dir, "dup/single.ts")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range p.Items {
		s := it.Key + " " + it.Kind.String() + " " + it.Action.String()
		if it.Err != nil {
			s += " " + strings.TrimPrefix(it.Err.Error(), dir)
		}
		got = append(got, s)
	}
	slices.Sort(got)
	want := []string{
		"vod/abc/720p/seg1.ts segment upload",
		"vod/abc/master.m3u8 playlist upload",
		"vod/abc/poster.jpg image upload", // a symlink to a file is followed
		"vod/abc/single.ts segment fail /dup/single.ts: key vod/abc/single.ts is also the key of " + filepath.Join(dir, "single.ts"),
		"vod/abc/single.ts segment upload",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p.Hidden != 1 || len(p.SymlinkedDirs) != 1 || p.SymlinkedDirs[0] != filepath.Join(dir, "show/linked") {
		t.Fatalf("hidden %d, symlinked folders %q", p.Hidden, p.SymlinkedDirs)
	}
}
