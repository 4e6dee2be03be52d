package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStorageKeygen checks keygen writes a 32-byte key of mode 0600 and
// never replaces one.
func TestStorageKeygen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "storage.key")
	if code, _, errOut := runCmd(t, nil, "storage", "keygen", file); code != 0 {
		t.Fatalf("keygen: exit %d, %s", code, errOut)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Size() != 32 || fi.Mode().Perm() != 0o600 {
		t.Errorf("got %v, %v; want a 32-byte file of mode 0600", fi, err)
	}
	before, _ := os.ReadFile(file)
	if code, _, errOut := runCmd(t, nil, "storage", "keygen", file); code != 1 || !strings.Contains(errOut, file) {
		t.Errorf("keygen over an existing key: got exit %d, %q; want 1 naming the file", code, errOut)
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Errorf("keygen replaced an existing key")
	}
}

// TestStorageCopy copies a storage directory, with the destination taken
// from -config, reports what it copied, and copies nothing the second time.
func TestStorageCopy(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "dst")
	key := filepath.Join(src, "certificates", "acme", "a.test", "a.test.crt")
	os.MkdirAll(filepath.Dir(key), 0o700)
	os.WriteFile(key, []byte("cert"), 0o600)
	cfg := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(cfg, []byte("storage: "+dst+"\nsites:\n  - hosts: [a.test]\n    routes:\n      - respond: {status: 200}\n"), 0o600)

	code, out, errOut := runCmd(t, nil, "storage", "copy", "-config", cfg, "--from", src)
	if code != 0 || out != "copied certificates/acme/a.test/a.test.crt\n1 copied, 0 already there\n" {
		t.Errorf("first copy: got exit %d, %q, %q", code, out, errOut)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "certificates", "acme", "a.test", "a.test.crt")); err != nil || string(got) != "cert" {
		t.Errorf("copied file: got %q, %v", got, err)
	}
	if code, out, _ := runCmd(t, nil, "storage", "copy", "-config", cfg, "--from", src); code != 0 || out != "0 copied, 1 already there\n" {
		t.Errorf("second copy: got exit %d, %q; want nothing copied", code, out)
	}
	if code, _, _ := runCmd(t, nil, "storage", "copy"); code != 2 {
		t.Errorf("copy without --from or --to: got exit %d, want 2", code)
	}
}
