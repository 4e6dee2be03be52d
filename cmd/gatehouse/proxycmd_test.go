package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

func TestProxyCommand(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "a") }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "b") }))
	defer b.Close()

	p := ports{HTTPS: freePort(t)}
	storage := filepath.Join(t.TempDir(), "storage")
	in := startArgs(t, p, storage, "", []string{"proxy",
		"--from", fmt.Sprintf("localhost:%d", p.HTTPS), "--to", a.URL, "--to", b.URL, "--storage", storage})
	c := in.Client(t)
	seen := map[string]int{}
	for range 4 {
		status, body := get(t, c, "https://localhost/")
		if status != 200 {
			t.Fatalf("got status %d", status)
		}
		seen[body]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Errorf("round robin over two --to: got %v, want a:2 b:2", seen)
	}
	if err := in.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
