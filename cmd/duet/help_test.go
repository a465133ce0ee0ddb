package main

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestEveryFlagHasHelpAndDefault: every flag of every command says what it does, and what it
// is when not given: pflag prints "(default X)" unless X is the zero value, so a flag whose
// default is empty, 0 or a list of none says its default in its description.
func TestEveryFlagHasHelpAndDefault(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			where := c.CommandPath() + " --" + f.Name
			if strings.HasPrefix(f.Usage, "env DUET_") && !strings.Contains(f.Usage, " (") {
				// A role setting that internal/config describes (its own test checks it).
				return
			}
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s has no description", where)
			}
			switch f.DefValue {
			case "", "0", "[]", "0s":
				if f.Value.Type() != "bool" && !strings.Contains(f.Usage, "default") {
					t.Errorf("%s: %q does not say its default (%q)", where, f.Usage, f.DefValue)
				}
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(io.Discard, io.Discard, nil))
}

// TestLoadtestHelpControlFlag: pflag takes a `quoted` word in a flag's description for the
// value's name, which once printed "--control duet dev" for loadtest.
func TestLoadtestHelpControlFlag(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(t.Context(), []string{"loadtest", "--help"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "--control duet") {
		t.Errorf("loadtest --help shows %q", "--control duet dev")
	}
	if !strings.Contains(out.String(), "--control string") {
		t.Errorf("loadtest --help lacks --control string:\n%s", out.String())
	}
}

// TestDevHelpStatesThePorts: `duet dev --help` lists the ports the cluster really listens on.
func TestDevHelpStatesThePorts(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(t.Context(), []string{"dev", "--help"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"control API 127.0.0.1:7070", "edges 8080 (admin 9090)", "steering 8400", "purge API 8500", "NATS 4222"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dev --help lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "8081") {
		t.Errorf("dev --help still names the edges' old port 8081")
	}
}

// TestMakeRunPassesArgs: `make run ARGS='--port-offset 1000'` hands the flags to duet dev (the
// port-in-use error tells users to run it so).
func TestMakeRunPassesArgs(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	out, err := exec.CommandContext(t.Context(), "make", "-n", "-C", "../..", "run", "ARGS=--port-offset 1000").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/duet dev --port-offset 1000") {
		t.Errorf("make run does not pass ARGS to duet dev:\n%s", out)
	}
}
