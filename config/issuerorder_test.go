package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMoveIssuerFirst(t *testing.T) {
	for _, tc := range []struct {
		name, in, path string
		index          int
		want, err      string
	}{{
		name: "second of two, comments kept",
		in: `acme:
  email: a@example.com
  issuers:
    # the old one
    - ca: letsencrypt
      profile: shortlived
    - ca: ${CA_B}   # the new one
      ca_root: /etc/b.pem
  key_type: p256
sites: []
`,
		path: "acme.issuers", index: 1,
		want: `acme:
  email: a@example.com
  issuers:
    # the old one
    - ca: ${CA_B}   # the new one
      ca_root: /etc/b.pem
    - ca: letsencrypt
      profile: shortlived
  key_type: p256
sites: []
`,
	}, {
		name: "last of three at the end of the file, dashes at the key's column",
		in: `sites:
  - hosts: [a.test]
    tls:
      issuers:
      - ca: a
      - ca: b
      - ca: c
        profile: x`,
		path: "sites[0].tls.issuers", index: 2,
		want: `sites:
  - hosts: [a.test]
    tls:
      issuers:
      - ca: c
        profile: x
      - ca: a
      - ca: b
`,
	}, {
		name: "flow style is refused",
		in:   "acme:\n  issuers: [{ca: a}, {ca: b}]\n",
		path: "acme.issuers", index: 1,
		err: "line 2: the list is in flow style",
	}, {
		name: "first already",
		in:   "acme:\n  issuers:\n    - ca: a\n    - ca: b\n",
		path: "acme.issuers", index: 0,
		want: "acme:\n  issuers:\n    - ca: a\n    - ca: b\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "gatehouse.yaml")
			if err := os.WriteFile(file, []byte(tc.in), 0o640); err != nil {
				t.Fatal(err)
			}
			err := MoveIssuerFirst(file, tc.path, tc.index)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(file)
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640", fi.Mode().Perm())
			}
		})
	}
}
