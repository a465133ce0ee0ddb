package manifests

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
)

// builtinMetrics are series Prometheus makes itself for every target.
var builtinMetrics = map[string]bool{"up": true}

// codeMetrics finds every metric the Go code defines: the Namespace, Subsystem and Name of each
// prometheus.*Opts literal in the module's non-test sources (string literals or string
// constants), including names passed to a local helper that builds the Opts.
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			base := d.Name()
			if path != root && (strings.HasPrefix(base, ".") || base == "bin" || base == "testdata" || base == "manifests" || base == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		fileMetrics(f, names)
		return nil
	})
	if err != nil {
		t.Fatalf("scan the Go sources for metrics: %v", err)
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metrics in the code (%v): the scanner is broken", len(names), names)
	}
	return names
}

func fileMetrics(f *ast.File, names map[string]bool) {
	consts := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		if g, ok := n.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						if v, ok := stringLit(vs.Values[i], nil); ok {
							consts[id.Name] = v
						}
					}
				}
			}
		}
		return true
	})
	// opts reads a prometheus.*Opts literal: its name parts, and the identifier its Name is
	// when it is not a constant.
	opts := func(cl *ast.CompositeLit) (ns, sub, name, nameIdent string, ok bool) {
		sel, isSel := cl.Type.(*ast.SelectorExpr)
		if !isSel || !strings.HasSuffix(sel.Sel.Name, "Opts") {
			return "", "", "", "", false
		}
		if x, isID := sel.X.(*ast.Ident); !isID || x.Name != "prometheus" {
			return "", "", "", "", false
		}
		for _, e := range cl.Elts {
			kv, isKV := e.(*ast.KeyValueExpr)
			if !isKV {
				continue
			}
			k, _ := kv.Key.(*ast.Ident)
			if k == nil {
				continue
			}
			v, _ := stringLit(kv.Value, consts)
			switch k.Name {
			case "Namespace":
				ns = v
			case "Subsystem":
				sub = v
			case "Name":
				name = v
				if id, isID := kv.Value.(*ast.Ident); isID && v == "" {
					nameIdent = id.Name
				}
			}
		}
		return ns, sub, name, nameIdent, true
	}
	type helper struct {
		ns, sub string
		arg     int
	}
	helpers := map[string]helper{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.CompositeLit:
			if ns, sub, name, _, ok := opts(x); ok && name != "" {
				names[fqName(ns, sub, name)] = true
			}
		case *ast.AssignStmt:
			// helper := func(name string, ...) { ... prometheus.GaugeOpts{..., Name: name} ... }
			fl, isFL := x.Rhs[0].(*ast.FuncLit)
			id, isID := x.Lhs[0].(*ast.Ident)
			if len(x.Lhs) != 1 || len(x.Rhs) != 1 || !isFL || !isID {
				return true
			}
			var params []string
			for _, p := range fl.Type.Params.List {
				for _, pn := range p.Names {
					params = append(params, pn.Name)
				}
			}
			ast.Inspect(fl.Body, func(n ast.Node) bool {
				if cl, isCL := n.(*ast.CompositeLit); isCL {
					if ns, sub, _, ident, ok := opts(cl); ok && ident != "" {
						for i, p := range params {
							if p == ident {
								helpers[id.Name] = helper{ns, sub, i}
							}
						}
					}
				}
				return true
			})
		}
		return true
	})
	ast.Inspect(f, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			if id, isID := call.Fun.(*ast.Ident); isID {
				if h, isH := helpers[id.Name]; isH && h.arg < len(call.Args) {
					if v, ok := stringLit(call.Args[h.arg], consts); ok {
						names[fqName(h.ns, h.sub, v)] = true
					}
				}
			}
		}
		return true
	})
}

func stringLit(e ast.Expr, consts map[string]string) (string, bool) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			s, err := strconv.Unquote(x.Value)
			return s, err == nil
		}
	case *ast.Ident:
		v, ok := consts[x.Name]
		return v, ok
	}
	return "", false
}

func fqName(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "_")
}

// exprMetrics returns the metric names an expression selects.
func exprMetrics(e promql.Expr) []string {
	var out []string
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		if vs, ok := n.(*promql.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			out = append(out, name)
		}
		return nil
	})
	return out
}

// checkMetricNames fails for each metric an expression uses that no code defines (histograms
// count with their _bucket, _sum and _count series).
func checkMetricNames(t *testing.T, what string, e promql.Expr, code map[string]bool) {
	t.Helper()
	names := exprMetrics(e)
	if len(names) == 0 {
		t.Errorf("%s: selects no metric", what)
	}
	for _, n := range names {
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suf); ok && code[b] {
				base = b
			}
		}
		if n == "" || !code[base] && !builtinMetrics[base] {
			t.Errorf("%s: metric %q is not defined in the code", what, n)
		}
	}
}

func newPromQLParser() promql.Parser { return promql.NewParser(promql.Options{}) }

// TestAlertRules parses the alert rules with Prometheus's own rule parser (which also checks
// every expression and template), and checks what the on-call relies on.
func TestAlertRules(t *testing.T) {
	content, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := newPromQLParser()
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, e := range errs {
		t.Errorf("prometheus/alerts.yaml: %v", e)
	}
	if groups == nil {
		t.FailNow()
	}
	runbooks, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	code := codeMetrics(t)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			what := g.Name + "/" + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: a recording rule (%s); this file holds alerts", g.Name, r.Record)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("%s: alert name used twice", what)
			}
			seen[r.Alert] = true
			if time.Duration(r.For) < time.Minute {
				t.Errorf("%s: for %v: at least 1m, or one bad scrape pages", what, r.For)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q: use critical, warning or info", what, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", what, a)
				}
			}
			anchor := "#" + strings.ToLower(r.Alert)
			if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/operations.md"+anchor) {
				t.Errorf("%s: runbook_url %q: want docs/operations.md's %s section", what, r.Annotations["runbook_url"], anchor)
			}
			if !regexp.MustCompile(`(?m)^#+ ` + r.Alert + `$`).Match(runbooks) {
				t.Errorf("%s: docs/operations.md has no runbook heading %q", what, r.Alert)
			}
			e, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			checkMetricNames(t, what, e, code)
			// Every aggregation keeps the region: an alert says which region to look at.
			promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
				if a, ok := n.(*promql.AggregateExpr); ok && (a.Without || !slices.Contains(a.Grouping, "region")) {
					t.Errorf("%s: %s drops the region label", what, a.String())
				}
				return nil
			})
		}
	}
	for _, want := range []string{"DuetEdgeDown", "DuetHitRatioDrop", "DuetPurgeLagHigh", "DuetReplicationLagHigh", "DuetOriginErrors"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a row's
	GridPos *struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// grafanaVars are the dashboard's variables as Grafana would substitute them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "$region", "eu-west|us-east")

// TestDashboard decodes the Grafana dashboard and parses every panel's queries with the PromQL
// parser, checking their metrics against the code.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/duet.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&d); err != nil {
		t.Fatalf("grafana/duet.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("the dashboard needs a title and a uid (for links and provisioning)")
	}
	p := newPromQLParser()
	code := codeMetrics(t)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" {
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s: query: %v", v.Name, err)
			}
			inner, ok := strings.CutPrefix(q.Query, "label_values(")
			sel, _, _ := strings.Cut(inner, ", ")
			e, err := p.ParseExpr(sel)
			if !ok || err != nil {
				t.Errorf("variable %s: %q: want label_values(<selector>, <label>): %v", v.Name, q.Query, err)
				continue
			}
			checkMetricNames(t, "variable "+v.Name, e, code)
		}
	}
	for _, v := range []string{"datasource", "region"} {
		if !vars[v] {
			t.Errorf("no $%s variable", v)
		}
	}
	ids := map[int]bool{}
	titles := map[string]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, pn := range ps {
			what := "panel " + strconv.Quote(pn.Title)
			if ids[pn.ID] || pn.ID == 0 {
				t.Errorf("%s: id %d is missing or used twice", what, pn.ID)
			}
			ids[pn.ID] = true
			titles[pn.Title] = true
			if pn.GridPos == nil || pn.GridPos.W <= 0 || pn.GridPos.H <= 0 || pn.GridPos.X+pn.GridPos.W > 24 {
				t.Errorf("%s: gridPos %+v is not on Grafana's 24-column grid", what, pn.GridPos)
			}
			walk(pn.Panels)
			if pn.Type == "row" {
				continue
			}
			if pn.Datasource == nil || pn.Datasource.UID != "${datasource}" {
				t.Errorf("%s: datasource must be the ${datasource} variable", what)
			}
			if len(pn.Targets) == 0 {
				t.Errorf("%s: no query", what)
			}
			for _, tg := range pn.Targets {
				e, err := p.ParseExpr(grafanaVars.Replace(tg.Expr))
				if err != nil {
					t.Errorf("%s %s: %q: %v", what, tg.RefID, tg.Expr, err)
					continue
				}
				checkMetricNames(t, what+" "+tg.RefID, e, code)
				if !strings.Contains(tg.Expr, `region=~"$region"`) {
					t.Errorf("%s %s: does not follow the $region variable", what, tg.RefID)
				}
			}
		}
	}
	walk(d.Panels)
	for _, want := range []string{"Hit ratio", "Requests/s by cache status", "Egress by tier", "Origin fetches/s by result",
		"Origin errors/s by kind", "Latency p50 / p99 (time to headers)", "Purge lag p50 / p99", "Replication lag p50 / p99",
		"Replication backlog", "Edges up by region"} {
		if !titles[want] {
			t.Errorf("the dashboard has no %q panel", want)
		}
	}
}
