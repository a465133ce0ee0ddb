package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// series is one line of a chart.
type series struct {
	name  string
	color string
	y     []float64 // one value per second
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// eventColor marks stops red, starts green and purges grey.
func eventColor(kind string) string {
	switch {
	case strings.HasSuffix(kind, "-stop"):
		return "#d62728"
	case strings.HasSuffix(kind, "-start"):
		return "#2ca02c"
	}
	return "#7f7f7f"
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, for axis ticks.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// lineChart draws series over seconds 0..n-1 with vertical markers at the events, as SVG.
func lineChart(title, unit string, ss []series, events []Event, n int) template.HTML {
	const w, h, left, right, top, bottom = 900.0, 300.0, 60.0, 150.0, 30.0, 40.0
	pw, ph := w-left-right, h-top-bottom
	if n < 2 {
		n = 2
	}
	var ymax float64
	for _, s := range ss {
		for _, v := range s.y {
			ymax = max(ymax, v)
		}
	}
	ymax = niceMax(ymax)
	x := func(sec float64) float64 { return left + pw*sec/float64(n-1) }
	y := func(v float64) float64 { return top + ph - ph*v/ymax }
	esc := template.HTMLEscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, w, h, w, h, esc(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14" font-weight="bold">%s</text>`, left, esc(title))
	for i := 0; i <= 4; i++ { // horizontal grid and y ticks
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, left, left+pw, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, left-4, y(v)+4, esc(fmt.Sprintf("%.4g", v)))
	}
	step := max(1, (n-1)/10)
	for s := 0; s < n; s += step { // x ticks, seconds
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%ds</text>`, x(float64(s)), top+ph+16, s)
	}
	fmt.Fprintf(&b, `<text x="12" y="%.1f" font-size="11" transform="rotate(-90 12 %.1f)" text-anchor="middle">%s</text>`, top+ph/2, top+ph/2, esc(unit))
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`, left, top, pw, ph)
	for _, e := range events { // event markers
		sec := e.At.Seconds()
		if sec < 0 || sec > float64(n-1) {
			continue
		}
		c := eventColor(e.Kind)
		fmt.Fprintf(&b, `<g class="event"><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`, x(sec), x(sec), top, top+ph, c)
		if e.Kind != "purge" { // purges come by the hundred: a line each, no label
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="%s" transform="rotate(-90 %.1f %.1f)" text-anchor="end">%s</text>`,
				x(sec)+3, top+4, c, x(sec)+3, top+4, esc(e.Kind+" "+e.Target))
		}
		fmt.Fprintf(&b, `<title>%s at %s</title></g>`, esc(e.Kind+" "+e.Target), esc(e.At.Round(time.Millisecond).String()))
	}
	for i, s := range ss {
		var pts strings.Builder
		for sec, v := range s.y {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(float64(sec)), y(v))
		}
		fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.color, strings.TrimSpace(pts.String()))
		ly := top + 14*float64(i) + 10
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" font-size="11">%s</text>`,
			left+pw+10, ly-9, s.color, left+pw+24, ly, esc(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built above with every text escaped
}

// charts builds the report's charts from the per-second series.
func (s *Summary) charts() []template.HTML {
	n := len(s.Seconds)
	col := func(f func(Second) float64) []float64 {
		out := make([]float64, n)
		for i, sec := range s.Seconds {
			out[i] = f(sec)
		}
		return out
	}
	lat := []series{
		{"p50", palette[0], col(func(x Second) float64 { return x.P50 })},
		{"p90", palette[3], col(func(x Second) float64 { return x.P90 })},
		{"p99", palette[1], col(func(x Second) float64 { return x.P99 })},
	}
	tput := []series{
		{"total", "#333", col(func(x Second) float64 { return float64(x.Requests) })},
		{"errors", palette[1], col(func(x Second) float64 { return float64(x.Errors) })},
	}
	for i, r := range s.Regions {
		tput = append(tput, series{"region " + r, palette[(i+2)%len(palette)], col(func(x Second) float64 { return float64(x.ByRegion[r]) })})
	}
	out := []template.HTML{
		lineChart("Latency per second", "ms", lat, s.Events, n),
		lineChart("Throughput per second (total and served per region)", "requests/s", tput, s.Events, n),
	}
	out = append(out, lineChart("Origin requests per second (all edges)", "requests/s",
		[]series{{"origin", "#333", col(func(x Second) float64 { return x.OriginRequests })}}, s.Events, n))
	var edges []string
	for _, sec := range s.Seconds {
		for e := range sec.ByEdge {
			if !slices.Contains(edges, e) {
				edges = append(edges, e)
			}
		}
	}
	slices.Sort(edges)
	if len(edges) > 0 {
		var es []series
		for i, e := range edges {
			es = append(es, series{e, palette[i%len(palette)], col(func(x Second) float64 { return float64(x.ByEdge[e]) })})
		}
		out = append(out, lineChart("Served per edge per second", "requests/s", es, s.Events, n))
	}
	return out
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>duet loadtest: {{.S.Scenario}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.chart{display:block;margin:1em 0;max-width:100%;height:auto}
</style></head><body>
<h1>duet loadtest: {{.S.Scenario}}</h1>
<p>Started {{.S.Started.UTC.Format "2006-01-02 15:04:05 UTC"}} against {{.S.Control}}. Latency is measured from each
request's intended send time and recorded in an HdrHistogram (corrected for coordinated omission).</p>
<h2>Summary</h2>
<table id="summary">{{range .S.Rows}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
<h2>Charts</h2>
{{range .Charts}}{{.}}
{{end}}
{{if .S.Events}}<h2>Events</h2>
<table id="events"><tr><th>at</th><th>event</th><th>target</th><th>detail</th></tr>
{{range .S.Events}}<tr><td>{{dur .At}}</td><td>{{.Kind}}</td><td>{{.Target}}</td><td>{{.Detail}}</td></tr>{{end}}</table>{{end}}
{{if .S.Takeovers}}<h2>Takeovers</h2>
<table id="takeovers"><tr><th>after</th><th>served by region</th><th>edge</th><th>first success after</th></tr>
{{range .S.Takeovers}}<tr><td>{{.Event}}</td><td>{{.Region}}</td><td>{{.Edge}}</td><td>{{if .Found}}{{dur .After}}{{else}}never{{end}}</td></tr>{{end}}</table>{{end}}
{{range .S.Tables}}<h2>{{.Title}}</h2>
<table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>
{{end}}
{{range .S.Notes}}<p class="note">{{.}}</p>{{end}}
</body></html>
`))

// WriteHTML writes the self-contained HTML report.
func WriteHTML(w io.Writer, s *Summary) error {
	if err := page.Execute(w, struct {
		S      *Summary
		Charts []template.HTML
	}{s, s.charts()}); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}
