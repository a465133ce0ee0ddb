package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version, when set with -ldflags "-X main.version=...", is what `duet version` prints; left
// empty, the version comes from what the Go toolchain stamped into the binary.
var version string

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version: the git revision the binary was built from",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			bi, _ := debug.ReadBuildInfo()
			fmt.Fprintln(cmd.OutOrStdout(), "duet", versionOf(version, bi))
		},
	}
}

// versionOf describes the build: the -ldflags version if set, else the module version (a tag, or
// a pseudo-version that names the commit) and the git revision, "+dirty" when the checkout had
// changes, with the commit time. `go build` in a git checkout stamps all of it (vcs.* settings,
// unless -buildvcs=false); a build outside one says "unknown revision".
func versionOf(ldflags string, bi *debug.BuildInfo) string {
	if ldflags != "" {
		return ldflags
	}
	if bi == nil {
		return "(no build info)"
	}
	var rev, at string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	if rev == "" {
		return v + ", unknown revision, " + bi.GoVersion
	}
	var b strings.Builder
	b.WriteString(v)
	b.WriteString(", git " + rev)
	if dirty {
		b.WriteString("+dirty")
	}
	if at != "" {
		b.WriteString(" of " + at)
	}
	b.WriteString(", " + bi.GoVersion)
	return b.String()
}
