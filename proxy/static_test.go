package proxy

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// staticTree builds a root with an index, a directory without one, a
// dotfile, a file outside the root and a symlink pointing at it.
func staticTree(t *testing.T) (root string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "www")
	files := map[string]string{
		"www/index.html":         "<h1>home</h1>",
		"www/app.js":             "console.log(1)",
		"www/docs/index.html":    "docs",
		"www/empty/file.txt":     "file",
		"www/.env":               "SECRET=1",
		"www/.git/config":        "[core]",
		"www/assets/.hidden.css": "hidden",
		"outside.txt":            "outside",
	}
	for name, data := range files {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatalf("writing %s: %v", name, err)
		}
	}
	if err := os.Symlink(filepath.Join(base, "outside.txt"), filepath.Join(root, "escape.txt")); err != nil {
		t.Fatalf("symlink: %v", err)
	}
	return root
}

func TestStaticRoot(t *testing.T) {
	root := staticTree(t)
	f := newFrontend(t, proxyConfig(
		config.Route{Path: "/", Root: root},
		config.Route{Path: "/static/", Root: root, StripPrefix: true},
	))
	tests := []struct {
		name, target string
		code         int
		body         string
	}{
		{"index", "/", 200, "<h1>home</h1>"},
		{"file", "/app.js", 200, "console.log(1)"},
		{"index.html directly", "/index.html", 200, "<h1>home</h1>"},
		{"directory index", "/docs/", 200, "docs"},
		{"no listing", "/empty/", 404, "404 Not Found\n"},
		{"file in unlisted directory", "/empty/file.txt", 200, "file"},
		{"dotfile", "/.env", 404, "404 Not Found\n"},
		{"dot directory", "/.git/config", 404, "404 Not Found\n"},
		{"nested dotfile", "/assets/.hidden.css", 404, "404 Not Found\n"},
		{"traversal", "/../outside.txt", 404, "404 Not Found\n"},
		{"encoded traversal", "/docs/%2e%2e/%2e%2e/outside.txt", 404, "404 Not Found\n"},
		{"traversal to dotfile", "/docs/../.env", 404, "404 Not Found\n"},
		{"symlink out of root", "/escape.txt", 404, "404 Not Found\n"},
		{"missing", "/nope", 404, "404 Not Found\n"},
		{"file with trailing slash", "/app.js/", 404, "404 Not Found\n"},
		{"strip_prefix", "/static/app.js", 200, "console.log(1)"},
		{"strip_prefix index", "/static/", 200, "<h1>home</h1>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.get(t, host, tt.target)
			if code != tt.code || body != tt.body {
				t.Errorf("got %v %q, want %v %q", code, body, tt.code, tt.body)
			}
		})
	}

	t.Run("directory without slash redirects", func(t *testing.T) {
		res, _ := f.getRes(t, host, "/static/docs?x=1")
		if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/static/docs/?x=1" {
			t.Errorf("got %v %q, want 301 %q", res.StatusCode, res.Header.Get("Location"), "/static/docs/?x=1")
		}
	})
	t.Run("only GET and HEAD", func(t *testing.T) {
		code, _ := do(t, f.client(host), f.request(t, http.MethodPost, host, "/app.js", nil))
		if code != http.StatusMethodNotAllowed {
			t.Errorf("status = %v, want %v", code, http.StatusMethodNotAllowed)
		}
	})
}
