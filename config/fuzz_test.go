package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse as a config file: it never
// panics, and when it refuses the file, every problem says the file and a
// line in it, so the user can find what to fix.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "testdata/bad/*.yaml", "../examples/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("sites: []\n---\nsites: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.yaml", data)
		if err == nil {
			return
		}
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("error is not Problems: %v", err)
		}
		for _, p := range ps {
			if p.File != "fuzz.yaml" || p.Line < 1 {
				t.Errorf("problem without file:line: %q", p.Error())
			}
		}
	})
}
