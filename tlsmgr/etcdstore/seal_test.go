package etcdstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

const testPEMKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI...\n-----END EC PRIVATE KEY-----\n"

func writeKey(t *testing.T) (string, []byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "storage.key")
	if err := WriteKeyFile(file); err != nil {
		t.Fatal(err)
	}
	key, err := ReadKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return file, key
}

// TestSealedKeys checks private keys are unreadable in etcd with an
// encryption key, and that a wrong or missing key is a clear error that
// overwrites nothing (issue 11).
func TestSealedKeys(t *testing.T) {
	c := etcdtest.Shared(t)
	ctx := t.Context()
	file, key := writeKey(t)
	prefix := "/" + t.Name() + "/"
	s := newStorage(t, c, Options{Prefix: prefix, EncryptionKey: key, KeyFile: file})
	keyName := "certificates/acme-v02/a.test/a.test.key"
	acct := "acme/acme-v02/users/me@a.test/me.key"
	cert := "certificates/acme-v02/a.test/a.test.crt"
	for _, k := range []string{keyName, acct, cert} {
		if err := s.Store(ctx, k, []byte(testPEMKey)); err != nil {
			t.Fatal(err)
		}
	}

	raw := newClient(t, c)
	for k, sealed := range map[string]bool{keyName: true, acct: true, cert: false} {
		resp, err := raw.Get(ctx, prefix+"storage/"+k)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading %s raw: %v, %v", k, resp, err)
		}
		if got := bytes.Contains(resp.Kvs[0].Value, []byte("PRIVATE KEY")); got == sealed {
			t.Errorf("%s in etcd: clear text %v, want %v", k, got, !sealed)
		}
	}
	if got, err := s.Load(ctx, keyName); err != nil || string(got) != testPEMKey {
		t.Errorf("loading the sealed key: got %q, %v; want it opened", got, err)
	}

	rawValue := func() []byte {
		resp, err := raw.Get(ctx, prefix+"storage/"+keyName)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Kvs[0].Value
	}
	before := rawValue()
	otherFile, otherKey := writeKey(t)
	for name, opts := range map[string]Options{
		"wrong key": {Prefix: prefix, EncryptionKey: otherKey, KeyFile: otherFile},
		"no key":    {Prefix: prefix},
	} {
		t.Run(name, func(t *testing.T) {
			o := newStorage(t, c, opts)
			_, err := o.Load(ctx, keyName)
			if !errors.Is(err, ErrKey) {
				t.Fatalf("loading: got %v, want ErrKey", err)
			}
			want := "encryption_key_file"
			if opts.KeyFile != "" {
				want = opts.KeyFile
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got %q, want it to name %s", err, want)
			}
			if err := o.Store(ctx, keyName, []byte("replacement")); !errors.Is(err, ErrKey) {
				t.Errorf("storing over it: got %v, want ErrKey", err)
			}
			if !bytes.Equal(rawValue(), before) {
				t.Errorf("the sealed key was overwritten")
			}
		})
	}

	// A value already sealed with the key (a cache directory copied back)
	// is stored as is, not sealed twice.
	if err := s.Store(ctx, keyName, before); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, keyName); err != nil || string(got) != testPEMKey {
		t.Errorf("loading a key stored sealed: got %q, %v; want it opened", got, err)
	}

	// A sealed value moved to another name does not open: the name is
	// bound in.
	moved := "certificates/acme-v02/b.test/b.test.key"
	if _, err := raw.Put(ctx, prefix+"storage/"+moved, string(before)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, moved); err == nil {
		t.Errorf("loading a sealed key moved to another name: got no error")
	}

	// A key stored in clear before encryption was turned on still loads,
	// and is sealed when next stored.
	legacy := "certificates/acme-v02/c.test/c.test.key"
	if _, err := raw.Put(ctx, prefix+"storage/"+legacy, testPEMKey); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, legacy); err != nil || string(got) != testPEMKey {
		t.Errorf("loading a clear key with encryption on: got %q, %v", got, err)
	}
}

// TestKeyFile checks keygen's file: 32 bytes, mode 0600, never replaced;
// and that a file of the wrong size is refused, naming it.
func TestKeyFile(t *testing.T) {
	file, _ := writeKey(t)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Errorf("got %v, %v; want a 32-byte file of mode 0600", fi.Mode(), err)
	}
	if err := WriteKeyFile(file); err == nil {
		t.Errorf("writing over an existing key file: got no error")
	}
	short := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(short, []byte("0123456789"), 0o600)
	if _, err := ReadKeyFile(short); err == nil || !strings.Contains(err.Error(), short) {
		t.Errorf("reading a 10-byte key: got %v, want an error naming %s", err, short)
	}
}
