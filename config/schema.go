package config

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// checker walks a YAML node tree against the Config struct types before
// anything is decoded. It expands environment variables in scalar values,
// records where every key path stands, and collects every unknown key,
// duplicate key and value of the wrong kind as a Problem.
type checker struct {
	file      string
	lookupEnv func(string) (string, bool)
	positions map[string]Position
	problems  Problems
	// suppress holds the key paths at, above and below which validation
	// problems are left out, being likely consequences of the problems
	// already found.
	suppress []string
	// expanded holds the scalars already expanded, so a scalar reached
	// twice through an alias is expanded once.
	expanded map[*yaml.Node]bool
	// forms holds the long forms found (see longForms), to decode after
	// the rest of the tree.
	forms []formValue
}

// longForm is the mapping a key may hold instead of its plain string.
type longForm struct {
	typ    reflect.Type
	decode func(c *Config, n *yaml.Node) error
}

// longForms lists, by key path, the keys whose value is a string or a
// mapping of another type: "storage: DIR" or "storage: {etcd: ...}". The
// mapping is checked against its own type, then taken out of the tree so
// that the decoder leaves the string field empty, and decoded by decode
// into the Config afterwards. No custom unmarshaler is involved, so
// KnownFields stays in force below it.
var longForms = map[string]longForm{
	"storage": {typ: reflect.TypeFor[StorageMapping](), decode: func(c *Config, n *yaml.Node) error {
		var m StorageMapping
		if err := n.Decode(&m); err != nil {
			return err
		}
		c.Storage = m.Cache
		c.StorageEtcd = m.Etcd
		if c.StorageEtcd == nil {
			c.StorageEtcd = &EtcdStorage{} // validation says etcd is required
		}
		return nil
	}},
}

// formValue is a long form found in the tree.
type formValue struct {
	node *yaml.Node
	form longForm
}

func (f formValue) decode(c *Config) error { return f.form.decode(c, f.node) }

func newChecker(file string, lookupEnv func(string) (string, bool)) *checker {
	return &checker{
		file:      file,
		lookupEnv: lookupEnv,
		positions: make(map[string]Position),
		expanded:  make(map[*yaml.Node]bool),
	}
}

func (c *checker) addf(n *yaml.Node, path, format string, args ...any) {
	c.problems = append(c.problems, Problem{
		File:     c.file,
		Position: Position{Line: n.Line, Col: n.Column},
		Path:     path,
		Message:  fmt.Sprintf(format, args...),
	})
}

// reject records a problem with the value n at path and blanks n, so the
// lenient decode that follows leaves the field at its zero value, as if it
// were not written at all. Problems validation would find at path, above it
// or below it are then left out as consequences.
func (c *checker) reject(n *yaml.Node, path, format string, args ...any) {
	c.addf(n, path, format, args...)
	c.suppress = append(c.suppress, path)
	delete(c.positions, path)
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// value checks n, found at path, against type t.
func (c *checker) value(n *yaml.Node, t reflect.Type, path string) {
	c.positions[path] = Position{Line: n.Line, Col: n.Column}
	n = deref(n)
	if n.Kind == yaml.ScalarNode {
		if !c.expand(n, path) {
			return
		}
		if n.ShortTag() == "!!null" {
			return // the zero value
		}
	}
	if f, ok := longForms[path]; ok && n.Kind == yaml.MappingNode {
		c.mapping(n, f.typ, path)
		saved := *n
		c.forms = append(c.forms, formValue{node: &saved, form: f})
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		return
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		c.scalar(n, path, `a duration like "30s"`, func(n *yaml.Node) bool {
			_, err := time.ParseDuration(n.Value)
			return n.ShortTag() == "!!str" && err == nil
		})
		return
	case t == reflect.TypeFor[Lifetime]():
		c.scalar(n, path, `a duration like "7d" or "36h"`, func(n *yaml.Node) bool {
			_, err := ParseLifetime(n.Value)
			return n.ShortTag() == "!!str" && err == nil
		})
		return
	case t == reflect.TypeFor[ByteSize]():
		c.scalar(n, path, `a size like "10MB"`, func(n *yaml.Node) bool {
			_, err := ParseByteSize(n.Value)
			return err == nil
		})
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.value(n, t.Elem(), path)
	case reflect.Struct:
		c.mapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.reject(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			c.value(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	case reflect.String:
		c.scalar(n, path, "a string", func(*yaml.Node) bool { return true })
	case reflect.Int, reflect.Int64:
		c.scalar(n, path, "a number", func(n *yaml.Node) bool {
			_, err := strconv.Atoi(n.Value)
			return n.ShortTag() == "!!int" && err == nil
		})
	case reflect.Float64:
		c.scalar(n, path, "a number", func(n *yaml.Node) bool {
			_, err := strconv.ParseFloat(n.Value, 64)
			return (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") && err == nil
		})
	case reflect.Bool:
		c.scalar(n, path, "true or false", isBool)
	case reflect.Map:
		c.stringMap(n, t, path)
	default:
		c.reject(n, path, "unsupported config field type %s", t)
	}
}

// stringMap checks a mapping with free-form string keys (header names,
// user names, provider credentials) and checks each value against the
// map's element type.
func (c *checker) stringMap(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.reject(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "<<" {
			c.reject(n, path, "expected a key name, got %s", describe(k))
			return
		}
		if seen[k.Value] {
			c.reject(n, path, "key %q appears twice", k.Value)
			return
		}
		seen[k.Value] = true
		c.positions[path+"."+k.Value] = Position{Line: k.Line, Col: k.Column}
		c.value(v, t.Elem(), path+"."+k.Value)
	}
}

// scalar checks that n is a scalar that ok accepts.
func (c *checker) scalar(n *yaml.Node, path, want string, ok func(*yaml.Node) bool) {
	if n.Kind != yaml.ScalarNode || !ok(n) {
		c.reject(n, path, "expected %s, got %s", want, describe(n))
	}
}

// isBool reports whether the YAML decoder reads n as a bool: true or false,
// or one of the YAML 1.1 words it still accepts.
func isBool(n *yaml.Node) bool {
	switch n.ShortTag() {
	case "!!bool":
		return true
	case "!!str":
		switch n.Value {
		case "y", "Y", "yes", "Yes", "YES", "on", "On", "ON",
			"n", "N", "no", "No", "NO", "off", "Off", "OFF":
			return true
		}
	}
	return false
}

// describe names what n is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "nothing"
}

// expand replaces environment variables in the scalar n and reports whether
// that worked. A plain scalar is re-resolved afterwards, so "${PORT}" can
// become a number and "${X:-}" nothing.
func (c *checker) expand(n *yaml.Node, path string) bool {
	if c.expanded[n] {
		return true
	}
	c.expanded[n] = true
	v, err := expandEnv(n.Value, c.lookupEnv)
	if err != nil {
		c.reject(n, path, "%v", err)
		return false
	}
	if v == n.Value {
		return true
	}
	n.Value = v
	const explicit = yaml.TaggedStyle | yaml.SingleQuotedStyle | yaml.DoubleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	if n.Style&explicit == 0 {
		n.Tag = ""
	}
	return true
}

// mapping checks that n is a mapping whose keys are fields of the struct
// type t, each at most once, and checks each value.
func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.reject(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := yamlFields(t)
	seen := make(map[string]*yaml.Node)
	c.pairs(n, t, path, fields, seen, false)
}

// pairs checks the key/value pairs of the mapping n. Keys merged in with
// "<<" come after the mapping's own keys and never override them, as in the
// YAML decoder. Pairs the decoder would choke on (duplicate keys, keys that
// are not names, merges of non-mappings) are dropped from n.
func (c *checker) pairs(n *yaml.Node, t reflect.Type, path string, fields map[string]reflect.StructField, seen map[string]*yaml.Node, merged bool) {
	var drop []int // indexes in n.Content of the pairs to drop
	var merges []int
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.addf(k, path, "expected a key name, got %s", describe(k))
			c.suppress = append(c.suppress, path)
			drop = append(drop, i)
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, i)
			continue
		}
		kpath := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			if !merged {
				c.addf(k, kpath, "duplicate key %q (first at line %d)", k.Value, first.Line)
				drop = append(drop, i)
			}
			continue
		}
		seen[k.Value] = k
		f, ok := fields[k.Value]
		if !ok && path == "" && strings.HasPrefix(k.Value, "x-") {
			continue // an extension key, a home for YAML anchors
		}
		if !ok {
			c.addf(k, kpath, "%s", unknownKey(k.Value, fields))
			// The key may be a misspelt sibling: what validation would say
			// about its mapping is likely a consequence.
			c.suppress = append(c.suppress, cmp.Or(path, kpath))
			continue
		}
		c.value(v, f.Type, kpath)
	}
	for _, i := range merges {
		sources := []*yaml.Node{deref(n.Content[i+1])}
		if sources[0].Kind == yaml.SequenceNode {
			sources = sources[0].Content
		}
		for _, s := range sources {
			s = deref(s)
			if s.Kind != yaml.MappingNode {
				c.addf(s, path, "expected a mapping to merge with <<, got %s", describe(s))
				c.suppress = append(c.suppress, path)
				drop = append(drop, i)
				break
			}
			c.pairs(s, t, path, fields, seen, true)
		}
	}
	slices.Sort(drop)
	for _, i := range slices.Backward(drop) {
		n.Content = slices.Delete(n.Content, i, i+2)
	}
}

// deref follows n if it is an alias.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// unknownKey says that key is not one of fields, suggesting the closest
// known key or, failing that, listing them all.
func unknownKey(key string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	best, bestDist := "", len(key)+1
	for _, name := range names {
		if d := editDistance(strings.ToLower(key), name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if bestDist <= max(1, (len(key)+1)/3) {
		return fmt.Sprintf("unknown key %q; did you mean %q?", key, best)
	}
	return fmt.Sprintf("unknown key %q; known keys are %s", key, strings.Join(names, ", "))
}

// editDistance is the optimal string alignment distance between a and b,
// in bytes: the Levenshtein distance with swapped neighbours counting once.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// yamlFields maps the YAML keys of struct type t to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField)
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields
}

// joinPath appends key to the key path parent.
func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// parentPath returns the key path one level above path: "sites[0]" for
// "sites[0].hosts" and "sites" for "sites[0]".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
