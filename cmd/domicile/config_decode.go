package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ConfigError is one problem with a configuration file, at a line, about a
// field: "domicile.yaml:12: regions[1].country: "XX" is not an ISO 3166-1
// country".
type ConfigError struct {
	File    string
	Line    int    // 0 if unknown
	Field   string // "" for the file as a whole
	Message string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ConfigErrors is every problem found in a configuration file, one per line.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *ConfigError.
func (es ConfigErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// maxConfigErrors bounds how many problems one error reports.
const maxConfigErrors = 50

// sorted returns the errors in file order, those without a line last, at
// most maxConfigErrors.
func (es ConfigErrors) sorted() ConfigErrors {
	key := func(e *ConfigError) int {
		if e.Line == 0 {
			return math.MaxInt
		}
		return e.Line
	}
	slices.SortStableFunc(es, func(a, b *ConfigError) int { return key(a) - key(b) })
	if len(es) > maxConfigErrors {
		es = es[:maxConfigErrors]
	}
	return es
}

// decodeYAML decodes data into out strictly: a key out's type does not
// declare, a value of the wrong kind or an unreadable duration or date is an
// error naming the field and its line. It records the line of every field it
// sets in lines, keyed by field path, for the validation that follows.
//
// yaml.v3's own strict mode (Decoder.KnownFields) reports unknown keys but
// names neither the field path nor, for bad values, the field; so the
// document is decoded into a yaml.Node and walked here instead.
func decodeYAML(file string, data []byte, out any, lines map[string]int) ConfigErrors {
	d := &decoder{file: file, lines: lines}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return ConfigErrors{{File: file, Message: "the file is empty: see docs/config.md, or run 'domicile init'"}}
		}
		return ConfigErrors{d.syntaxError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return ConfigErrors{{File: file, Line: extra.Line, Message: "more than one YAML document; a config is one"}}
	} else if !errors.Is(err, io.EOF) {
		return ConfigErrors{d.syntaxError(err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return ConfigErrors{{File: file, Message: "the file is empty"}}
		}
		root = root.Content[0]
	}
	d.decode("", root.Line, root, reflect.ValueOf(out).Elem())
	return d.errs.sorted()
}

// yamlLine matches the position yaml.v3 puts in its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) syntaxError(err error) *ConfigError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ConfigError{File: d.file, Line: line, Message: "YAML: " + m[2]}
	}
	return &ConfigError{File: d.file, Message: strings.Replace(msg, "yaml: ", "YAML: ", 1)}
}

// maxNodes bounds the work of decoding a document whose aliases expand to
// far more nodes than it has.
const maxNodes = 100_000

type decoder struct {
	file  string
	lines map[string]int
	errs  ConfigErrors
	nodes int
}

func (d *decoder) errorf(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &ConfigError{File: d.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	timeType      = reflect.TypeFor[time.Time]()
	storeRefType  = reflect.TypeFor[StoreRef]()
	oneOrMoreType = reflect.TypeFor[OneOrMore]()
)

// decode sets v from n. field is the path of v ("" for the root) and line
// the line its key is on.
func (d *decoder) decode(field string, line int, n *yaml.Node, v reflect.Value) {
	if d.nodes++; d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errorf(n.Line, field, "the document expands to more than %d values", maxNodes)
		}
		return
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.errorf(n.Line, field, "unresolved alias")
			return
		}
		n = n.Alias
	}
	if field != "" {
		d.lines[field] = line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // keep the default
	}
	name := field
	if name == "" {
		name = "the config"
	}
	switch t := v.Type(); {
	case t == durationType:
		s, ok := d.scalar(field, n, "a duration such as 2s or 500ms")
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.errorf(n.Line, field, "%q is not a duration: want a number with a unit, such as 2s or 500ms", s)
			return
		}
		v.SetInt(int64(dur))
	case t == timeType:
		s, ok := d.scalar(field, n, "a date such as 2026-06-01")
		if !ok {
			return
		}
		at, err := parseInstant(s)
		if err != nil {
			d.errorf(n.Line, field, "%q is not a date: want an RFC 3339 date (2026-06-01) or date-time (2026-06-01T08:00:00Z)", s)
			return
		}
		v.Set(reflect.ValueOf(at))
	case t == storeRefType:
		s, ok := d.scalar(field, n, "a SQLite path or a PostgreSQL URL")
		if !ok {
			return
		}
		v.Set(reflect.ValueOf(StoreRef{Spec: s}))
	case t == oneOrMoreType && n.Kind == yaml.ScalarNode:
		s, _ := d.scalar(field, n, "")
		v.Set(reflect.ValueOf(OneOrMore{s}))
	case t.Kind() == reflect.String:
		if s, ok := d.scalar(field, n, "a string"); ok {
			v.SetString(s)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if _, ok := d.scalar(field, n, "true or false"); !ok {
			return
		}
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n.Line, field, "%q is not a boolean: want true or false", n.Value)
			return
		}
		v.SetBool(b)
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		var i int64
		if _, ok := d.scalar(field, n, "an integer"); !ok {
			return
		}
		if n.Tag != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.errorf(n.Line, field, "%q is not an integer", n.Value)
			return
		}
		v.SetInt(i)
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.errorf(n.Line, field, "want a mapping of keys to values, got %s", describe(n))
			return
		}
		d.structure(field, n, v)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n.Line, field, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", field, i), e.Line, e, s.Index(i))
		}
		v.Set(s)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			d.errorf(n.Line, field, "want a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key, ok := d.key(field, k, seen)
			if !ok {
				continue
			}
			e := reflect.New(t.Elem()).Elem()
			d.decode(field+"."+key, k.Line, val, e)
			m.SetMapIndex(reflect.ValueOf(key), e)
		}
		v.Set(m)
	default:
		panic(fmt.Sprintf("config: no decoding for %s (%s)", t, name))
	}
}

// structure decodes a mapping into a struct by the fields' yaml tags.
func (d *decoder) structure(field string, n *yaml.Node, v reflect.Value) {
	t := v.Type()
	var known []string
	index := make(map[string]int)
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		known = append(known, tag)
		index[tag] = i
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key, ok := d.key(field, k, seen)
		if !ok {
			continue
		}
		sub := key
		if field != "" {
			sub = field + "." + key
		}
		fi, ok := index[key]
		if !ok {
			d.errorf(k.Line, sub, "unknown field (known here: %s)", strings.Join(known, ", "))
			continue
		}
		d.decode(sub, k.Line, val, v.Field(fi))
	}
}

// key reads a mapping key, refusing non-string and repeated keys.
func (d *decoder) key(field string, k *yaml.Node, seen map[string]int) (string, bool) {
	if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
		d.errorf(k.Line, field, "keys must be plain names, got %s", describe(k))
		return "", false
	}
	sub := k.Value
	if field != "" {
		sub = field + "." + k.Value
	}
	if first, dup := seen[k.Value]; dup {
		d.errorf(k.Line, sub, "given twice (first on line %d)", first)
		return "", false
	}
	seen[k.Value] = k.Line
	return k.Value, true
}

// scalar returns n's value if n is a scalar, else reports that want was
// wanted.
func (d *decoder) scalar(field string, n *yaml.Node, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, field, "want %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// parseInstant reads an RFC 3339 date (midnight UTC) or date-time, in UTC.
func parseInstant(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
