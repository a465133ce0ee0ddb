// Package configdoc generates the configuration reference (docs/configuration.md) and the flags'
// help text (internal/config/help_gen.go) from the roles' configuration structs: the settings
// and their defaults by reflection, as the Loader binds them, and each setting's description
// from its field's doc comment in the Go source, which stays the one place it is written.
package configdoc

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"go/ast"
	"go/doc"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/duetcdn/duet/internal/config"
)

// Command is how to regenerate the files; they and the test that checks them say so.
const Command = "go test ./cmd/duet -run TestConfigReference -update"

// Role is one command whose settings are loaded by config.Loader.
type Role struct {
	Name    string // the role as the Loader knows it: "edge" reads DUET_EDGE_*
	Command string // "duet edge"
	Config  any    // a pointer to the struct holding the role's defaults
	// MachineDefaults replaces, by path, defaults that depend on the machine generating the
	// reference (such as the host name) with what they are, e.g. {"name": "the host name"}.
	MachineDefaults map[string]string
	// OwnHelp: the command writes its flags' usage itself, so help_gen.go leaves it out.
	OwnHelp bool
}

// Sources finds the directory of a Go package from its import path (reflect.Type.PkgPath).
type Sources func(pkgPath string) (string, error)

// ModuleSources finds the packages of module (github.com/duetcdn/duet) below root, and package
// main in mainDir.
func ModuleSources(root, module, mainDir string) Sources {
	return func(pkgPath string) (string, error) {
		if pkgPath == "main" {
			return mainDir, nil
		}
		if pkgPath == module {
			return root, nil
		}
		if rel, ok := strings.CutPrefix(pkgPath, module+"/"); ok {
			return filepath.Join(root, filepath.FromSlash(rel)), nil
		}
		return "", fmt.Errorf("package %s is outside module %s", pkgPath, module)
	}
}

// Setting is one documented setting.
type Setting struct {
	config.Setting
	Doc string // the field's doc comment, as text
	// Sections are the struct fields the setting opens ("nats" before "nats.urls"), with their
	// doc comments: the first setting of a section carries it.
	Sections []Section
	// Elements are the fields of each element of a list of structs (steering's regions), which
	// only the YAML file can spell.
	Elements []Section
}

// Section is a documented YAML path that is not a setting of its own.
type Section struct {
	Path string
	Doc  string
}

// Document lists a role's settings with their descriptions; a setting without one is an error.
func Document(r Role, src Sources) ([]Setting, error) {
	docs := docIndex{src: src, pkgs: map[string]map[string]string{}}
	var out []Setting
	var errs []error
	var open []config.Field // the sections the previous setting was in
	for _, s := range config.Settings(r.Name, r.Config) {
		if d, ok := r.MachineDefaults[s.Path]; ok {
			s.Default = d
		}
		text, err := docs.field(s.Owner, s.Field)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", r.Command, s.Path, err))
			continue
		}
		ds := Setting{Setting: s, Doc: text}
		for i, p := range s.Parents {
			if i < len(open) && open[i] == p {
				continue
			}
			doc, err := docs.field(p.Owner, p.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", r.Command, p.Path, err))
			}
			ds.Sections = append(ds.Sections, Section{Path: p.Path, Doc: doc})
		}
		open = s.Parents
		if el := elementStruct(s.GoType); el != nil && el != s.Owner { // the same type: "the fields above"
			ds.Elements, err = docs.elements(el, s.Path+"[].")
			errs = append(errs, err)
		}
		out = append(out, ds)
	}
	return out, errors.Join(errs...)
}

// elementStruct is the element type of a list of structs, or nil.
func elementStruct(t reflect.Type) reflect.Type {
	if t.Kind() != reflect.Slice {
		return nil
	}
	e := t.Elem()
	if e.Kind() == reflect.Pointer {
		e = e.Elem()
	}
	if e.Kind() != reflect.Struct || e == reflect.TypeFor[time.Duration]() {
		return nil
	}
	return e
}

// elements documents the YAML fields of a list element's struct type, nested structs
// flattened, inline structs at their parent's level.
func (d docIndex) elements(t reflect.Type, prefix string) ([]Section, error) {
	var out []Section
	var errs []error
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if name == "" && opts == "inline" && ft.Kind() == reflect.Struct {
			sub, err := d.elements(ft, prefix)
			out, errs = append(out, sub...), append(errs, err)
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		doc, err := d.field(t, f.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, Section{Path: prefix + name, Doc: doc})
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
			sub, err := d.elements(ft, prefix+name+".")
			out, errs = append(out, sub...), append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// Generate returns the configuration reference (Markdown) and the Go source of help_gen.go.
func Generate(roles []Role, src Sources) (markdown, helpGo []byte, err error) {
	documented := make([][]Setting, len(roles))
	var errs []error
	for i, r := range roles {
		documented[i], err = Document(r, src)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	helpGo, err = helpSource(roles, documented)
	if err != nil {
		return nil, nil, err
	}
	return reference(roles, documented), helpGo, nil
}

func reference(roles []Role, documented [][]Setting) []byte {
	var b bytes.Buffer
	b.WriteString("<!-- Code generated by `" + Command + "`; DO NOT EDIT. -->\n\n")
	b.WriteString(`# Configuration reference

Every long-running role of ` + "`duet`" + ` reads its settings, in rising precedence, from its defaults,
a YAML file (` + "`--config`" + `), ` + "`DUET_<ROLE>_*`" + ` environment variables and flags. Every
setting has all three spellings, derived from its YAML path: ` + "`memory.max_bytes`" + ` in the file
(` + "`memory: {max_bytes: 1GiB}`" + `), ` + "`DUET_EDGE_MEMORY_MAX_BYTES`" + ` and ` + "`--memory.max_bytes`" + `.
Unknown keys in the file are errors.

Values: durations are Go durations (` + "`10s`, `5m`, `24h`" + `); sizes read ` + "`512MiB`" + `, ` + "`10GB`" + `,
` + "`4m`" + ` or a plain number of bytes (KiB, MiB, GiB and the one-letter forms are binary, KB, MB, GB
decimal); lists are YAML lists in the file and comma-separated in variables and flags. A default
shown as "" is empty (the description says what empty means).

A row in bold introduces a section (the settings below it whose path starts with its name). A row
` + "`list[].field`" + ` documents a field of each element of a list of structs, which the YAML file
spells as a list of maps; a variable or flag takes such a list in the text form its description
gives, where it has one.

The descriptions are the doc comments of the configuration structs in the source; ` + "`duet <role> --help`" + `
shows their first sentence. This file is generated from them: after changing a setting, run
` + "`" + Command + "`" + `.

`)
	for _, r := range roles {
		fmt.Fprintf(&b, "- [%s](#%s)\n", r.Command, strings.ReplaceAll(r.Command, " ", "-"))
	}
	for i, r := range roles {
		fmt.Fprintf(&b, "\n## %s\n\n", r.Command)
		fmt.Fprintf(&b, "Environment variables `DUET_%s_*`.\n\n", strings.ToUpper(r.Name))
		b.WriteString("| Setting | Default | Description |\n|---|---|---|\n")
		for _, s := range documented[i] {
			for _, sec := range s.Sections {
				fmt.Fprintf(&b, "| **`%s`** | | %s |\n", sec.Path, cell(sec.Doc))
			}
			def := "`" + s.Default + "`"
			switch {
			case s.Default == "":
				def = `""`
			case r.MachineDefaults[s.Path] != "":
				def = cell(s.Default)
			}
			fmt.Fprintf(&b, "| `%s`<br>`%s`<br>`%s` | %s | %s |\n", s.Path, s.Env, s.Flag, def, cell(s.Doc))
			for _, el := range s.Elements {
				fmt.Fprintf(&b, "| `%s`<br>(YAML, each element) | | %s |\n", el.Path, cell(el.Doc))
			}
		}
	}
	return b.Bytes()
}

// cell puts text in a table cell: one line, with the characters Markdown or HTML would read
// escaped.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	esc := strings.NewReplacer(`\`, `\\`, "|", `\|`, "<", "&lt;", ">", "&gt;", "*", `\*`, "`", "\\`")
	// URLs in a setting's description are examples, not links: they go in code spans, so that
	// no Markdown renderer turns them into links to hosts that do not exist.
	var b strings.Builder
	for {
		loc := exampleURL.FindStringIndex(s)
		if loc == nil {
			b.WriteString(esc.Replace(s))
			return b.String()
		}
		b.WriteString(esc.Replace(s[:loc[0]]))
		b.WriteString("`" + strings.NewReplacer("|", `\|`, "`", "'").Replace(s[loc[0]:loc[1]]) + "`")
		s = s[loc[1]:]
	}
}

// exampleURL matches a URL in running text, without the punctuation that ends a sentence.
var exampleURL = regexp.MustCompile(`https?://[^\s"'(),;]*[^\s"'(),;.:]`)

func helpSource(roles []Role, documented [][]Setting) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by `" + Command + "`; DO NOT EDIT.\n\n")
	b.WriteString("package config\n\n")
	b.WriteString("// generatedHelp is the first sentence of a setting's doc comment, for its flag's usage.\n")
	b.WriteString("func generatedHelp(role, path string) string {\n\tswitch role {\n")
	for i, r := range roles {
		if r.OwnHelp {
			continue
		}
		fmt.Fprintf(&b, "\tcase %q:\n\t\tswitch path {\n", r.Name)
		for _, s := range documented[i] {
			fmt.Fprintf(&b, "\t\tcase %q:\n\t\t\treturn %s\n", s.Path, strconv.Quote(synopsis(s.Doc)))
		}
		b.WriteString("\t\t}\n")
	}
	b.WriteString("\t}\n\treturn \"\"\n}\n")
	out, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format help_gen.go: %w", err)
	}
	return out, nil
}

// synopsis is the first sentence of a doc comment.
func synopsis(text string) string {
	return new(doc.Package).Synopsis(text)
}

// docIndex reads the doc comments of struct fields from the packages' source, once a package.
type docIndex struct {
	src  Sources
	pkgs map[string]map[string]string // package path → "Type.Field" → doc comment
}

func (d docIndex) field(owner reflect.Type, field string) (string, error) {
	if owner.Name() == "" {
		return "", fmt.Errorf("field %s is in an unnamed struct type: name the type so that its fields' comments can be found", field)
	}
	fields, ok := d.pkgs[owner.PkgPath()]
	if !ok {
		dir, err := d.src(owner.PkgPath())
		if err != nil {
			return "", err
		}
		if fields, err = fieldDocs(dir); err != nil {
			return "", fmt.Errorf("read the doc comments of %s: %w", owner.PkgPath(), err)
		}
		d.pkgs[owner.PkgPath()] = fields
	}
	text := fields[owner.Name()+"."+field]
	if text == "" {
		return "", fmt.Errorf("field %s.%s (%s) has no doc comment: write one, it is the setting's documentation", owner.Name(), field, owner.PkgPath())
	}
	return text, nil
}

// fieldDocs reads every struct field's doc comment in the Go files of dir (tests left out). A
// field without a comment of its own, declared on the line right after a commented one, shares
// its comment: the source's way of documenting a group of fields together (CAFile, CertFile,
// KeyFile).
func fieldDocs(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	out := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(fset, name, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			prevDoc, prevEnd := "", -1
			for _, fl := range st.Fields.List {
				text := fl.Doc.Text()
				if text == "" && fl.Comment != nil {
					text = fl.Comment.Text()
				}
				line := fset.Position(fl.Pos()).Line
				if text == "" && line == prevEnd+1 {
					text = prevDoc
				}
				prevDoc, prevEnd = text, fset.Position(fl.End()).Line
				for _, id := range fl.Names {
					out[ts.Name.Name+"."+id.Name] = strings.TrimSpace(text)
				}
			}
			return true
		})
	}
	return out, nil
}
