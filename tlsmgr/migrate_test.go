package tlsmgr

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func TestParseMigrateRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
		err  bool
	}{
		{in: "10/min", want: 10},
		{in: "10", want: 10},
		{in: "1/s", want: 60},
		{in: "300/3h", want: 300.0 / 180},
		{in: "120/h", want: 2},
		{in: "0/min", err: true},
		{in: "ten/min", err: true},
		{in: "10/fortnight", err: true},
	} {
		got, err := ParseMigrateRate(tt.in)
		if tt.err {
			if !errors.Is(err, ErrMigrateOptions) {
				t.Errorf("ParseMigrateRate(%q): got %v, %v; want an ErrMigrateOptions", tt.in, got, err)
			}
			continue
		}
		if err != nil || got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("ParseMigrateRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestMatchHosts(t *testing.T) {
	for _, tt := range []struct {
		patterns, host string
		want           bool
	}{
		{"", "a.test", true},
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "example.com", false},
		{"a.test, *.example.com", "a.test", true},
		{"A.TEST.", "a.test", true},
		{"b.test", "a.test", false},
	} {
		if got := matchHosts(tt.patterns, tt.host); got != tt.want {
			t.Errorf("matchHosts(%q, %q) = %v, want %v", tt.patterns, tt.host, got, tt.want)
		}
	}
}

// TestIssuerOrder: the lists where the target is not first, with the
// lines to change.
func TestIssuerOrder(t *testing.T) {
	cfg, err := config.Parse("gatehouse.yaml", []byte(`storage: /tmp/x
acme:
  issuers:
    - ca: letsencrypt
    - ca: https://b.test/dir
sites:
  - hosts: [a.test]
    routes: [{respond: {body: a}}]
    tls:
      issuers:
        - ca: https://b.test/dir/
        - ca: zerossl
          eab: {key_id: k, mac_key: bWFj}
  - hosts: [b.test]
    routes: [{respond: {body: b}}]
    tls:
      issuers:
        - ca: google
          eab: {key_id: k, mac_key: bWFj}
        - ca: https://b.test/dir
`))
	if err != nil {
		t.Fatal(err)
	}
	got := IssuerOrder(cfg, "https://b.test/dir")
	if len(got) != 2 {
		t.Fatalf("got %d changes, want 2: %+v", len(got), got)
	}
	if got[0].Path != "acme.issuers" || got[0].Index != 1 || got[0].Where.Error() != "gatehouse.yaml:5:11: acme.issuers[1].ca: move this issuer (https://b.test/dir) first" {
		t.Errorf("first change: %+v (%s)", got[0], got[0].Where.Error())
	}
	if got[1].Path != "sites[1].tls.issuers" || got[1].Index != 1 || got[1].Where.Line != 20 || got[1].First.Line != 18 {
		t.Errorf("second change: %+v", got[1])
	}
	if got := IssuerOrder(cfg, "letsencrypt"); len(got) != 0 {
		t.Errorf("letsencrypt is first where it is listed: got %+v", got)
	}
}

// TestPutIssuerFirst: the file is rewritten so every list holds the
// target first, which a reload of the file then shows; a file that cannot
// be written keeps the changes made before it out of the answer.
func TestPutIssuerFirst(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(file, []byte(`storage: /tmp/x
acme:
  issuers:
    - ca: letsencrypt # first for now
    - ca: https://b.test/dir
sites:
  - hosts: [a.test]
    routes: [{respond: {body: a}}]
    tls:
      issuers:
        - ca: zerossl
          eab: {key_id: k, mac_key: bWFj}
        - ca: https://b.test/dir/
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	done, err := PutIssuerFirst(cfg, "https://b.test/dir")
	if err != nil || len(done) != 2 || done[0].Path != "acme.issuers" || done[1].Path != "sites[0].tls.issuers" {
		t.Fatalf("PutIssuerFirst: got %+v, %v; want both lists changed", done, err)
	}
	again, err := config.Load(file)
	if err != nil {
		t.Fatalf("the rewritten file does not load: %v", err)
	}
	if got := IssuerOrder(again, "https://b.test/dir"); len(got) != 0 {
		t.Errorf("after PutIssuerFirst the file still lists another issuer first: %+v", got)
	}
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "# first for now") {
		t.Errorf("the comment was lost:\n%s", b)
	}
	if done, err := PutIssuerFirst(again, "https://b.test/dir"); err != nil || len(done) != 0 {
		t.Errorf("PutIssuerFirst when already first: got %+v, %v; want nothing to do", done, err)
	}

	os.Remove(file)
	if done, err := PutIssuerFirst(cfg, "https://b.test/dir"); err == nil || len(done) != 0 || !strings.Contains(err.Error(), "acme.issuers[1].ca") {
		t.Errorf("PutIssuerFirst on a file gone: got %+v, %v; want an error naming the line to change by hand", done, err)
	}
}

// TestMigrationLock: a second run of the same migration on the storage
// (another command, another instance) is refused while the first holds
// it, and may run once it is done.
func TestMigrationLock(t *testing.T) {
	store := &certmagic.FileStorage{Path: t.TempDir()}
	first := &migration{store: store, id: migrationID("https://b.test/dir", "", ""), logger: slog.New(slog.DiscardHandler)}
	unlock, err := first.lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	second := &migration{store: store, id: first.id, logger: first.logger}
	if _, err := second.lock(t.Context()); !errors.Is(err, ErrMigrationRunning) {
		t.Fatalf("second run while the first holds the lock: got %v, want ErrMigrationRunning", err)
	}
	other := &migration{store: store, id: migrationID("https://c.test/dir", "", ""), logger: first.logger}
	unlockOther, err := other.lock(t.Context())
	if err != nil {
		t.Fatalf("another migration: %v", err)
	}
	unlockOther()
	unlock()
	unlock2, err := second.lock(t.Context())
	if err != nil {
		t.Fatalf("second run after the first: %v", err)
	}
	unlock2()
}
