package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// SameButIssuerOrder reports whether a and b are equal but perhaps for the
// order of their issuers: an order a running gatehouse takes on a reload
// (after `gatehouse migrate`), unlike the rest of acme.
func (a ACME) SameButIssuerOrder(b ACME) bool {
	sorted := func(a ACME) ACME {
		a.Issuers = slices.Clone(a.Issuers)
		slices.SortStableFunc(a.Issuers, func(x, y Issuer) int {
			return cmp.Or(cmp.Compare(x.CA, y.CA), cmp.Compare(x.Email, y.Email), cmp.Compare(x.Profile, y.Profile), cmp.Compare(x.CARoot, y.CARoot))
		})
		return a
	}
	return reflect.DeepEqual(sorted(a), sorted(b))
}

// MoveIssuerFirst rewrites the config file so that entry index of the
// issuer list at listPath ("acme.issuers", "sites[1].tls.issuers") comes
// first, the others following in their order. Only those lines move:
// comments, layout and ${VAR} references stay as written. A list in flow
// style ([{ca: a}, {ca: b}]) is refused, with the line to change by hand.
// The file is replaced atomically, keeping its mode.
func MoveIssuerFirst(file, listPath string, index int) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	out, err := moveFirst(data, listPath, index)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", file, listPath, err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return fmt.Errorf("writing config: %w", err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return fmt.Errorf("writing config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return nil
}

// moveFirst returns data with the entry index of the block sequence at
// listPath moved first.
func moveFirst(data []byte, listPath string, index int) ([]byte, error) {
	seq, err := findNode(data, listPath)
	if err != nil {
		return nil, err
	}
	if seq.Kind != yaml.SequenceNode {
		return nil, errors.New("not a list")
	}
	if index < 0 || index >= len(seq.Content) {
		return nil, fmt.Errorf("no entry %d", index)
	}
	if index == 0 {
		return data, nil
	}
	if seq.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("line %d: the list is in flow style; move entry %d first by hand", seq.Line, index)
	}
	lines := strings.SplitAfter(string(data), "\n")
	// Each entry starts on its dash line and runs to the next entry; the
	// last one to the first later line indented no deeper than its dash.
	starts := make([]int, len(seq.Content))
	dash := -1
	for i, item := range seq.Content {
		l := item.Line - 1
		text := lines[l]
		col := len(text) - len(strings.TrimLeft(text, " "))
		if !strings.HasPrefix(text[col:], "-") || (i > 0 && l <= starts[i-1]) || (dash >= 0 && col != dash) {
			return nil, fmt.Errorf("line %d: entry %d does not start its own line with a dash; move entry %d first by hand", item.Line, i, index)
		}
		starts[i], dash = l, col
	}
	end := starts[len(starts)-1] + 1
	for end < len(lines) {
		t := strings.TrimRight(lines[end], "\r\n")
		if strings.TrimSpace(t) != "" && len(t)-len(strings.TrimLeft(t, " ")) <= dash {
			break
		}
		end++
	}
	// Blank lines after the last entry stay where they are.
	for end > starts[len(starts)-1]+1 && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	block := func(i int) []string {
		if i+1 < len(starts) {
			return lines[starts[i]:starts[i+1]]
		}
		b := slices.Clone(lines[starts[i]:end])
		if n := len(b); n > 0 && !strings.HasSuffix(b[n-1], "\n") {
			b[n-1] += "\n" // the file's last line, now followed by others
		}
		return b
	}
	var out []string
	out = append(out, lines[:starts[0]]...)
	out = append(out, block(index)...)
	for i := range starts {
		if i != index {
			out = append(out, block(i)...)
		}
	}
	out = append(out, lines[end:]...)
	result := []byte(strings.Join(out, ""))

	// The moved entry must now be first, and the rest unchanged.
	check, err := findNode(result, listPath)
	if err != nil || check.Kind != yaml.SequenceNode || len(check.Content) != len(seq.Content) {
		return nil, fmt.Errorf("line %d: the list does not come out whole; move entry %d first by hand", seq.Line, index)
	}
	order := append([]*yaml.Node{seq.Content[index]}, append(slices.Clone(seq.Content[:index]), seq.Content[index+1:]...)...)
	for i, n := range check.Content {
		if !sameNode(n, order[i]) {
			return nil, fmt.Errorf("line %d: the list does not come out whole; move entry %d first by hand", seq.Line, index)
		}
	}
	return result, nil
}

// sameNode reports whether two nodes hold the same values.
func sameNode(a, b *yaml.Node) bool {
	var va, vb any
	if a.Decode(&va) != nil || b.Decode(&vb) != nil {
		return false
	}
	ba, _ := yaml.Marshal(va)
	bb, _ := yaml.Marshal(vb)
	return bytes.Equal(ba, bb)
}

// findNode returns the node at a key path ("sites[1].tls.issuers") of the
// YAML document data.
func findNode(data []byte, keyPath string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing config: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, errors.New("empty config")
	}
	n := doc.Content[0]
	for seg := range strings.SplitSeq(keyPath, ".") {
		key, idx, hasIdx := strings.Cut(seg, "[")
		if n.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: not a mapping", key)
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil, fmt.Errorf("no key %s", key)
		}
		n = next
		if hasIdx {
			i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return nil, fmt.Errorf("no entry %s", seg)
			}
			n = n.Content[i]
		}
	}
	return n, nil
}
