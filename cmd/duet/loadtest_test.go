package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// TestLoadtestBadInput: what an operator who mistypes sees from `duet loadtest`.
func TestLoadtestBadInput(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown scenario", []string{"--scenario", "stampede"}, []string{`unknown scenario "stampede"`, "failover, flash-crowd, purge-storm, zipf"}},
		{"remote control", []string{"--control", "http://192.0.2.10:7070"}, []string{"192.0.2.10", "not on loopback", "--allow-remote"}},
		{"unreachable control", []string{"--control", dead, "--duration", "1s"}, []string{dead, "make run"}},
		{"too long", []string{"--duration", "2h"}, []string{"duration 2h0m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), append([]string{"loadtest", "--report", t.TempDir() + "/r.html"}, tc.args...), &out, io.Discard, nil)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadtestHelpListsScenarios(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"loadtest", "--help"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"zipf", "flash-crowd", "failover", "purge-storm", "--allow-remote", "--report", "--json", "--seed"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("help lacks %q", w)
		}
	}
}
