package edge

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnlySettleSettles keeps a flight's outcome in one place: no function but flight.settle
// assigns to a flight's result (out, meta, pass, status, err, errResp, or the whole result)
// or closes its ready channel. It type-checks the package's own source (imports are not
// resolved: the flight types are the package's own, which is all the check needs), so a field of
// another type with the same name (slice.meta, fillError.status) does not count.
func TestOnlySettleSettles(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}, Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{
		Importer: importerFunc(func(string) (*types.Package, error) { return nil, os.ErrNotExist }),
		Error:    func(error) {}, // unresolved imports: expected
	}
	pkg, _ := conf.Check("github.com/duetcdn/duet/edge", fset, files, info)

	// The fields that hold a flight's outcome.
	guarded := map[types.Object]string{}
	structOf := func(name string) *types.Struct {
		obj := pkg.Scope().Lookup(name)
		if obj == nil {
			t.Fatalf("type %s not found", name)
		}
		return obj.Type().Underlying().(*types.Struct)
	}
	res, fl := structOf("result"), structOf("flight")
	for i := range res.NumFields() {
		guarded[res.Field(i)] = "result." + res.Field(i).Name()
	}
	var ready types.Object
	for i := range fl.NumFields() {
		switch fld := fl.Field(i); fld.Name() {
		case "result":
			guarded[fld] = "flight.result"
		case "ready":
			ready = fld
		}
	}
	if len(guarded) < 7 || ready == nil {
		t.Fatalf("flight's outcome fields not found (%d, ready %v): the test needs updating", len(guarded), ready)
	}
	field := func(e ast.Expr) types.Object {
		for {
			switch x := e.(type) {
			case *ast.ParenExpr:
				e = x.X
				continue
			case *ast.IndexExpr: // f.meta.Header[i] = ...
				e = x.X
				continue
			case *ast.SelectorExpr:
				if sel, ok := info.Selections[x]; ok && sel.Kind() == types.FieldVal {
					if _, g := guarded[sel.Obj()]; g {
						return sel.Obj()
					}
				}
				e = x.X // f.meta.Size = ... writes the outcome too
				continue
			}
			return nil
		}
	}

	writers := map[string]bool{}
	for _, file := range files {
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			name := fn.Name.Name
			if fn.Recv != nil {
				name = types.ExprString(fn.Recv.List[0].Type) + "." + name
			}
			report := func(n ast.Node, what string) {
				writers[name] = true
				if name != "*flight.settle" {
					t.Errorf("%s: %s %s outside flight.settle", fset.Position(n.Pos()), name, what)
				}
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					for _, lhs := range n.Lhs {
						if obj := field(lhs); obj != nil {
							report(n, "assigns "+guarded[obj])
						}
					}
				case *ast.IncDecStmt:
					if obj := field(n.X); obj != nil {
						report(n, "changes "+guarded[obj])
					}
				case *ast.UnaryExpr:
					// A pointer to an outcome field could be written through; &f.meta, which
					// the viewers respond from, is the one allowed (respond only reads it).
					if obj := field(n.X); n.Op == token.AND && obj != nil && guarded[obj] != "result.meta" {
						report(n, "takes the address of "+guarded[obj])
					}
				case *ast.CallExpr:
					if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "close" && len(n.Args) == 1 {
						if sel, ok := n.Args[0].(*ast.SelectorExpr); ok {
							if s, ok := info.Selections[sel]; ok && s.Obj() == ready {
								report(n, "closes flight.ready")
							}
						}
					}
				}
				return true
			})
		}
	}
	if !writers["*flight.settle"] {
		t.Errorf("flight.settle was not found writing the result: the test no longer sees the writes (writers: %v)", writers)
	}
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }
