package config

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Load reads the config file at path; see [Parse].
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a config from data, which came from file ("" if from no file).
// It expands ${VAR} and ${VAR:-default} in values from the environment,
// rejects unknown keys, duplicate keys and values of the wrong kind, resolves
// relative file paths against file's directory, applies the defaults and
// validates the result. Anything wrong comes back as [Problems], every
// problem at once, in file order.
func Parse(file string, data []byte) (*Config, error) {
	root, c, err := check(file, data)
	if err != nil {
		return nil, err
	}
	cfg, err := decodeChecked(file, root, c)
	if err != nil {
		return nil, err
	}
	if file != "" {
		dir, err := filepath.Abs(filepath.Dir(file))
		if err != nil {
			return nil, fmt.Errorf("resolving config directory: %w", err)
		}
		cfg.resolvePaths(dir)
	}
	storageFromEnvironment(cfg)
	cfg.withDefaults()
	return finish(cfg, c)
}

// storageFromEnvironment puts $GATEHOUSE_STORAGE (as for gatehouse proxy)
// in a config without a storage key: the container image sets it to its
// /data volume, so a config mounted over the image's own need not repeat it.
func storageFromEnvironment(cfg *Config) {
	if s := os.Getenv("GATEHOUSE_STORAGE"); cfg.Storage == "" && s != "" {
		cfg.Storage = s
	}
}

// check parses data from file as YAML and checks its node tree against
// the Config type; the root is nil for an empty file, or one of comments
// only.
func check(file string, data []byte) (*yaml.Node, *checker, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, nil, Problems{syntaxProblem(file, data, err)}
	}
	// A second document would be ignored silently by a plain decode: the
	// user meant something by it.
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, nil, Problems{syntaxProblem(file, data, err)}
		}
		if len(next.Content) > 0 {
			return nil, nil, Problems{{File: file, Position: Position{Line: next.Content[0].Line, Col: next.Content[0].Column},
				Message: "a second YAML document (after ---): a config file holds exactly one"}}
		}
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	c := newChecker(file, os.LookupEnv)
	if root != nil {
		c.value(root, reflect.TypeFor[Config](), "")
	}
	return root, c, nil
}

// decodeChecked decodes root, which c has checked, into a Config from
// file. The checker blanked every value it rejected, so the decoder only
// meets what fits; it still runs when there are problems, so that
// validation can report what is wrong elsewhere in the same pass.
func decodeChecked(file string, root *yaml.Node, c *checker) (*Config, error) {
	cfg := &Config{}
	if root != nil {
		if err := root.Decode(cfg); err != nil && len(c.problems) == 0 {
			// The checker should have caught whatever the decoder rejects.
			return nil, Problems{{File: file, Message: err.Error()}}
		}
		for _, f := range c.forms {
			if err := f.decode(cfg); err != nil && len(c.problems) == 0 {
				return nil, Problems{{File: file, Message: err.Error()}}
			}
		}
	}
	cfg.File = file
	cfg.positions = c.positions
	cfg.top = Position{Line: 1, Col: 1}
	if root != nil && root.Line > 0 {
		cfg.top = Position{Line: root.Line, Col: root.Column}
	}
	return cfg, nil
}

// finish validates cfg, which has its defaults, and returns it, or the
// checker's problems and validation's (those not consequences of the
// checker's), in file order.
func finish(cfg *Config, c *checker) (*Config, error) {
	problems := c.problems
	for _, p := range cfg.validate(&validator{c: cfg}) {
		related := func(scope string) bool { return within(p.Path, scope) || within(scope, p.Path) }
		if !slices.ContainsFunc(c.suppress, related) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, problems
	}
	return cfg, nil
}

// within reports whether the key path is scope or below it.
func within(path, scope string) bool {
	if scope == "" || path == scope {
		return true
	}
	rest, ok := strings.CutPrefix(path, scope)
	return ok && (rest[0] == '.' || rest[0] == '[')
}

// syntaxProblem turns a YAML syntax error ("yaml: line 3: did not find
// expected key") into a Problem on that line. Some of the parser's errors
// name no line; the line is then found in data from what the error says.
func syntaxProblem(file string, data []byte, err error) Problem {
	p := Problem{File: file}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, after, ok := strings.Cut(rest, ": ")
		if line, err := strconv.Atoi(num); ok && err == nil {
			p.Line, msg = line, after
		}
	}
	if p.Line == 0 {
		p.Position = positionAt(data, syntaxOffset(data, msg))
	}
	p.Message = "invalid YAML: " + msg
	return p
}

// syntaxOffset finds where in data the parser's error msg, which names no
// line, arose: the first control byte or invalid UTF-8, the reference to an
// unknown anchor, or else the end (an unterminated quote or flow).
func syntaxOffset(data []byte, msg string) int {
	switch {
	case strings.HasPrefix(msg, "control characters"):
		for i, r := range string(data) {
			if r < ' ' && r != '\t' && r != '\n' && r != '\r' || r >= 0x7f && r <= 0x9f {
				return i
			}
		}
	case strings.Contains(msg, "UTF-8"):
		for i, r := range string(data) {
			if r == utf8.RuneError {
				return i
			}
		}
	case strings.HasPrefix(msg, "unknown anchor '"):
		name, _, _ := strings.Cut(strings.TrimPrefix(msg, "unknown anchor '"), "'")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			return i
		}
	}
	return len(data)
}

// positionAt is the 1-based line and column of byte off of data.
func positionAt(data []byte, off int) Position {
	before := data[:min(off, len(data))]
	line := bytes.Count(before, []byte("\n")) + 1
	return Position{Line: line, Col: len(before) - bytes.LastIndexByte(before, '\n')}
}

// resolvePaths makes every relative file path in c relative to dir.
func (c *Config) resolvePaths(dir string) {
	resolve := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	resolve(&c.Storage)
	if e := c.StorageEtcd; e != nil {
		resolve(&e.EncryptionKeyFile)
		if e.TLS != nil {
			resolve(&e.TLS.CA)
			resolve(&e.TLS.Cert)
			resolve(&e.TLS.Key)
		}
	}
	resolve(&c.Log.File)
	resolve(&c.ACME.CARoot)
	c.ACME.DNS.resolvePaths(resolve)
	for i := range c.ACME.Issuers {
		resolve(&c.ACME.Issuers[i].CARoot)
	}
	if c.OnDemand != nil {
		resolve(&c.OnDemand.AllowFile)
	}
	if c.Docker != nil && c.Docker.TLS != nil {
		resolve(&c.Docker.TLS.CA)
		resolve(&c.Docker.TLS.Cert)
		resolve(&c.Docker.TLS.Key)
	}
	if c.Docker != nil && c.Docker.UpstreamTLS != nil {
		resolve(&c.Docker.UpstreamTLS.CA)
	}
	for i := range c.Sites {
		s := &c.Sites[i]
		resolve(&s.TLS.Cert)
		resolve(&s.TLS.Key)
		s.TLS.DNS.resolvePaths(resolve)
		for j := range s.TLS.Issuers {
			resolve(&s.TLS.Issuers[j].CARoot)
		}
		for j := range s.Routes {
			resolve(&s.Routes[j].CA)
			resolve(&s.Routes[j].Root)
			if t := s.Routes[j].UpstreamTLS; t != nil {
				resolve(&t.ClientCert)
				resolve(&t.ClientKey)
			}
		}
	}
}

// position returns where path stands in c.File, or where its nearest
// parent does when path itself was not written.
func (c *Config) position(path string) Position {
	for {
		if p, ok := c.positions[path]; ok {
			return p
		}
		if path == "" {
			return c.top
		}
		path = parentPath(path)
	}
}

// has reports whether the key path was written in the config file.
func (c *Config) has(path string) bool {
	_, ok := c.positions[path]
	return ok
}

// sortProblems sorts ps by position; problems without one come last.
func sortProblems(ps Problems) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}
