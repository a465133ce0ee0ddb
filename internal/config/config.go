// Package config loads a role's configuration struct from, in rising precedence: its defaults,
// a YAML file, DUET_<ROLE>_* environment variables, and command-line flags. Every leaf field of
// the struct (found through its yaml tags) gets an environment variable and a flag of the same
// path, so the three spellings can never drift apart:
//
//	yaml  memory: {max_bytes: 1GiB}
//	env   DUET_EDGE_MEMORY_MAX_BYTES=1GiB
//	flag  --memory.max_bytes=1GiB
package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// leaf is one settable field.
type leaf struct {
	path    string // "memory.max_bytes"
	v       reflect.Value
	owner   reflect.Type // the struct type that declares the field
	field   string       // the field's Go name
	parents []Field      // the struct fields it is inside ("memory"), outermost first
}

// Field names a struct field by the type that declares it and its Go name, with its YAML path.
type Field struct {
	Owner reflect.Type
	Name  string
	Path  string
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	textType     = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func leaves(v reflect.Value, prefix string, out []leaf) []leaf { return walk(v, prefix, nil, out) }

func walk(v reflect.Value, prefix string, parents []Field, out []leaf) []leaf {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fv := v.Field(i)
		if name == "" && opts == "inline" && fv.Kind() == reflect.Struct {
			out = walk(fv, prefix, parents, out) // an embedded struct's settings sit at this level
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if fv.Kind() == reflect.Struct && fv.Type() != durationType && !fv.Addr().Type().Implements(textType) {
			out = walk(fv, path, append(slices.Clip(parents), Field{Owner: t, Name: f.Name, Path: path}), out)
			continue
		}
		out = append(out, leaf{path: path, v: fv, owner: t, field: f.Name, parents: parents})
	}
	return out
}

// setString parses s into a leaf.
func setString(l leaf, s string) error {
	v := l.v
	if v.Kind() == reflect.Pointer {
		nv := reflect.New(v.Type().Elem())
		if err := setString(leaf{path: l.path, v: nv.Elem()}, s); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	}
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 10s or 5m: %w", err)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		v.SetInt(n)
	case v.Kind() == reflect.Slice && (v.Type().Elem().Kind() == reflect.String || reflect.PointerTo(v.Type().Elem()).Implements(textType)):
		// A comma-separated list; elements that read text (such as "name:secret") parse themselves.
		out := reflect.MakeSlice(v.Type(), 0, 4)
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := setString(leaf{path: l.path, v: ev}, p); err != nil {
				return err
			}
			out = reflect.Append(out, ev)
		}
		v.Set(out)
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// EnvName is the environment variable for a path: DUET_<ROLE>_<PATH>.
func EnvName(role, path string) string {
	return "DUET_" + strings.ToUpper(role) + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
}

// Loader binds a configuration struct to a flag set.
type Loader struct {
	role   string
	target any
	flags  map[string]*flagValue
}

// flagValue records a flag's text; it is applied after the file and the environment.
type flagValue struct {
	l    leaf
	set  bool
	text string
}

func (f *flagValue) String() string { return f.text }
func (f *flagValue) Set(s string) error {
	if err := setString(leaf{path: f.l.path, v: reflect.New(f.l.v.Type()).Elem()}, s); err != nil {
		return err // validate early so pflag names the flag
	}
	f.set, f.text = true, s
	return nil
}
func (f *flagValue) Type() string {
	switch {
	case f.l.v.Type() == durationType:
		return "duration"
	case f.l.v.Kind() == reflect.Slice:
		return "list"
	case f.l.v.Kind() == reflect.Bool || f.l.v.Kind() == reflect.Pointer && f.l.v.Type().Elem().Kind() == reflect.Bool:
		return "bool"
	}
	return "value"
}

// Setting describes one setting of a role: its three spellings, its default and where its
// documentation (the field's doc comment) is declared.
type Setting struct {
	Path    string       // YAML path: "memory.max_bytes"
	Env     string       // DUET_EDGE_MEMORY_MAX_BYTES
	Flag    string       // --memory.max_bytes
	Type    string       // duration, list, bool or value
	Default string       // the default in the text a flag or variable takes; "" when empty
	Owner   reflect.Type // the struct type that declares the field
	Field   string       // the field's Go name in Owner
	GoType  reflect.Type // the field's type
	Parents []Field      // the struct fields the setting is inside, outermost first
}

// Settings lists every setting of target (a pointer to a struct holding defaults), in
// declaration order, as the Loader binds them.
func Settings(role string, target any) []Setting {
	var out []Setting
	for _, l := range leaves(reflect.ValueOf(target).Elem(), "", nil) {
		fv := &flagValue{l: l}
		out = append(out, Setting{Path: l.path, Env: EnvName(role, l.path), Flag: "--" + l.path, Type: fv.Type(),
			Default: text(l.v), Owner: l.owner, Field: l.field, GoType: l.v.Type(), Parents: l.parents})
	}
	return out
}

// text is a value as a flag or variable spells it: lists comma-separated, values that write
// text (sizes) as they write it, an unset pointer as "".
func text(v reflect.Value) string {
	switch {
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return ""
		}
		return text(v.Elem())
	case v.Type() == durationType:
		return shortDuration(time.Duration(v.Int()))
	case v.CanInterface() && v.Type().Implements(reflect.TypeFor[encoding.TextMarshaler]()):
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return string(b)
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = text(v.Index(i))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.Interface())
}

// shortDuration writes 24h for 24h0m0s, and 1m30s as it is.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// usage is a flag's help line: the first sentence of its documentation (generated into
// help_gen.go from the field's doc comment), its default and its environment variable.
func usage(role string, s Setting) string {
	def := s.Default
	if def == "" {
		def = `""`
	}
	tail := "default " + def + "; env " + s.Env
	if doc := generatedHelp(role, s.Path); doc != "" {
		return doc + " (" + tail + ")"
	}
	return tail // a command that writes its own usage puts it in parentheses after it
}

// NewLoader registers one flag per setting of target (a pointer to a struct holding defaults),
// each with its description, default and environment variable in its usage.
func NewLoader(role string, target any, fs *pflag.FlagSet) *Loader {
	ld := &Loader{role: role, target: target, flags: map[string]*flagValue{}}
	settings := Settings(role, target)
	for i, l := range leaves(reflect.ValueOf(target).Elem(), "", nil) {
		fv := &flagValue{l: l, text: settings[i].Default}
		ld.flags[l.path] = fv
		f := fs.VarPF(fv, l.path, "", usage(role, settings[i]))
		f.DefValue = "" // the usage shows the default, also when it is empty or zero
		if fv.Type() == "bool" {
			f.NoOptDefVal = "true"
		}
	}
	return ld
}

// Load applies the YAML file (if path is not empty), then the environment, then the flags that
// were set, into the target. Unknown YAML keys are errors: a typo must not be ignored.
func (ld *Loader) Load(path string, environ []string) error {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config file: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(ld.target); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
			return fmt.Errorf("config file %s: %w", path, err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var errs []error
	for _, l := range leaves(reflect.ValueOf(ld.target).Elem(), "", nil) {
		name := EnvName(ld.role, l.path)
		if v, ok := env[name]; ok {
			if err := setString(l, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", name, v, err))
			}
		}
	}
	for _, l := range leaves(reflect.ValueOf(ld.target).Elem(), "", nil) {
		if fv := ld.flags[l.path]; fv != nil && fv.set {
			if err := setString(l, fv.text); err != nil {
				errs = append(errs, fmt.Errorf("flag --%s=%q: %w", l.path, fv.text, err))
			}
		}
	}
	return errors.Join(errs...)
}
