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

// TestCompileExamples compiles every shipped example, with the HTTPS port
// gatehouse serve would use, and compares Describe with
// testdata/examples/<name>.golden, so an example the loader accepts never
// fails to compile and a change in what one compiles to shows in review.
// Run with -update to refresh them after a deliberate change.
func TestCompileExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ../examples/*.yaml: %v", err)
	}
	abs, err := filepath.Abs(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatalf("resolving examples: %v", err)
	}
	// A fleet's example is a directory: an instance's own gatehouse.yaml
	// and the shared.yaml pushed to etcd, compiled merged, as an instance
	// runs them; its golden file is named after the directory.
	fleets, err := filepath.Glob(filepath.Join("..", "examples", "*", "shared.yaml"))
	if err != nil || len(fleets) == 0 {
		t.Fatalf("no ../examples/*/shared.yaml: %v", err)
	}
	goldens := make(map[string]bool)
	for _, file := range append(files, fleets...) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		if filepath.Base(file) == "shared.yaml" {
			name = filepath.Base(filepath.Dir(file))
		}
		golden := filepath.Join("testdata", "examples", name+".golden")
		goldens[golden] = true
		t.Run(name, func(t *testing.T) {
			var cfg *config.Config
			var err error
			if name == filepath.Base(filepath.Dir(file)) {
				local, lerr := config.Load(filepath.Join(filepath.Dir(file), "gatehouse.yaml"))
				if lerr != nil {
					t.Fatalf("config.Load: %v", lerr)
				}
				cfg, err = config.LoadShared(file, local)
			} else {
				cfg, err = config.Load(file)
			}
			if err != nil {
				t.Fatalf("loading: %v", err)
			}
			table, err := Compile(cfg, Options{HTTPSPort: cfg.Listen.AdvertisedHTTPSPort()})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			// config resolves relative paths against the example's own
			// directory; keep the golden files independent of the checkout.
			got := strings.ReplaceAll(table.Describe(), abs, "examples")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatalf("creating testdata/examples: %v", err)
				}
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
	// A golden file whose example was removed or renamed would otherwise
	// linger unchecked.
	stale, err := filepath.Glob(filepath.Join("testdata", "examples", "*.golden"))
	if err != nil {
		t.Fatalf("globbing testdata/examples: %v", err)
	}
	for _, g := range stale {
		if !goldens[g] {
			t.Errorf("%s has no example in ../examples; remove it", g)
		}
	}
}
