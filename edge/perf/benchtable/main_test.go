package main

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	in := `goos: linux
pkg: github.com/duetcdn/duet/edge
BenchmarkHit/memory/1KiB-2   	 1000000	      1159 ns/op	 883.30 MB/s	       6 B/op	       0 allocs/op
BenchmarkFlashCrowd-2   	       1	4650000000 ns/op	         1.000 origin_fetches	        12.5 release_p99_ms
--- some log line
PASS
ok  	github.com/duetcdn/duet/edge	9.1s
`
	var out strings.Builder
	if err := render(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"github.com/duetcdn/duet/edge", "Hit/memory/1KiB-2", "1159", "883.30", "FlashCrowd-2",
		"origin_fetches=1.000 release_p99_ms=12.5"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "PASS") || strings.Contains(got, "some log") {
		t.Errorf("table keeps non-result lines:\n%s", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("BenchmarkX-2 10 5 ns/op 3 B/op 1 allocs/op 2.5 hit_%")
	f.Add("Benchmark")
	f.Add("BenchmarkY 1 2")
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := parse(line)
		if ok && !strings.HasPrefix(line, "Benchmark") && !strings.HasPrefix(strings.TrimSpace(line), "Benchmark") {
			t.Fatalf("accepted %q as %+v", line, r)
		}
	})
}
