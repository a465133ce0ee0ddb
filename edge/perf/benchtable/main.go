// Command benchtable turns `go test -bench` output (on stdin) into one aligned table: a row per
// benchmark, the standard columns (ns/op, MB/s, B/op, allocs/op), then every custom metric a
// benchmark reported with b.ReportMetric, as unit=value. Other lines (PASS, ok, logs) are
// dropped, except `pkg:` lines, which start a section.
//
//	go test -run='^$' -bench=. -benchmem ./edge/... | go run ./edge/perf/benchtable
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

func main() {
	if err := render(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

// row is one benchmark result line.
type row struct {
	name   string
	std    map[string]string // ns/op, MB/s, B/op, allocs/op
	custom []string          // unit=value, in the order reported
}

var stdUnits = []string{"ns/op", "MB/s", "B/op", "allocs/op"}

// parse reads one result line ("BenchmarkX-2  100  123 ns/op  4 B/op ..."); ok is false for
// anything else.
func parse(line string) (row, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return row{}, false
	}
	r := row{name: strings.TrimPrefix(f[0], "Benchmark"), std: map[string]string{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, unit := f[i], f[i+1]
		if isStd(unit) {
			r.std[unit] = v
		} else {
			r.custom = append(r.custom, unit+"="+v)
		}
	}
	return r, true
}

func isStd(unit string) bool {
	for _, u := range stdUnits {
		if u == unit {
			return true
		}
	}
	return false
}

func render(in io.Reader, out io.Writer) error {
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	header := func() {
		fmt.Fprintln(tw, "benchmark\tns/op\tMB/s\tB/op\tallocs/op\tother")
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	started := false
	for sc.Scan() {
		line := sc.Text()
		if pkg, ok := strings.CutPrefix(line, "pkg: "); ok {
			if started {
				fmt.Fprintln(tw)
			}
			fmt.Fprintln(tw, pkg) // no tab: not part of the columns
			header()
			started = true
			continue
		}
		r, ok := parse(line)
		if !ok {
			continue
		}
		if !started {
			header()
			started = true
		}
		cell := func(u string) string {
			if v, ok := r.std[u]; ok {
				return v
			}
			return "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, cell("ns/op"), cell("MB/s"), cell("B/op"), cell("allocs/op"),
			strings.Join(r.custom, " "))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(table.String()) {
		if _, err := io.WriteString(out, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}
