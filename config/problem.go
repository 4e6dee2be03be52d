package config

import (
	"fmt"
	"strings"
)

// Position is where a value stands in the config file, 1-based.
type Position struct {
	Line, Col int
}

// Problem is one thing wrong with a config: where, which key, and what.
type Problem struct {
	File string
	Position
	// Path is the key path, as "sites[0].routes[1].upstreams[0]".
	Path    string
	Message string
}

// Error formats the Problem as FILE:LINE:COL: key.path: message, leaving
// out whatever is unknown (a YAML syntax error has no column or path).
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteByte(':')
	}
	switch {
	case p.Line > 0 && p.Col > 0:
		fmt.Fprintf(&b, "%d:%d:", p.Line, p.Col)
	case p.Line > 0:
		fmt.Fprintf(&b, "%d:", p.Line)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in one config, in file order. It is the
// error Load and Validate return.
type Problems []Problem

// Error lists the Problems, one a line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each Problem as an error, for [errors.As].
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errs
}
