package proxy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGolden compiles every testdata/*.yaml and compares Describe with the
// matching .golden file. Run with -update to refresh them after a
// deliberate change.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.yaml: %v", err)
	}
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatalf("resolving testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			cfg, err := config.Parse(file, data)
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			table, err := Compile(cfg, Options{HTTPSPort: "443"})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			// config resolves relative paths to absolute ones; keep the
			// golden files independent of the checkout's location.
			got := strings.ReplaceAll(table.Describe(), abs, "testdata")
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatalf("writing golden: %v", err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden (run with -update to create it): %v", err)
			}
			if got != string(want) {
				t.Errorf("Describe() mismatch (run with -update if intended)\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestCompileExamples compiles every shipped example, so a config the
// loader accepts never fails to compile.
func TestCompileExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil {
		t.Fatalf("globbing examples: %v", err)
	}
	if len(files) == 0 {
		t.Skip("no examples/*.yaml")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := config.Load(file)
			if err != nil {
				t.Fatalf("config.Load: %v", err)
			}
			table, err := Compile(cfg, Options{})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if table.Describe() == "" {
				t.Error("Describe() is empty")
			}
		})
	}
}
