package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

// TestConfigPushPull drives `gatehouse config` and `gatehouse fleet` as an
// operator would: an invalid push refused at its line, a push, a pull, a
// push of a stale pull refused until --force, the history, and an instance
// run on the shared document listed by fleet status (issue 11).
func TestConfigPushPull(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	p := newPorts(t)
	storage := filepath.Join(dir, "cache")
	local := filepath.Join(dir, "local.yaml")
	writeConfig(t, local, p, storage, fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage:
  etcd: {endpoints: [%s], dial_timeout: 2s}
  cache: {{STORAGE}}
fleet: {name: edge-cli, shared_config: true}
`, c.Endpoint(0)))
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	site := "sites:\n  - hosts: [localhost]\n    routes: [{respond: {body: %s}}]\n"

	if code, _, errOut := runCmd(t, nil, "config", "pull", "-config", local); code != 1 || !strings.Contains(errOut, "no shared config yet") {
		t.Errorf("pull before any push: exit %d, %q", code, errOut)
	}
	bad := write("bad.yaml", "sites:\n  - hosts: [localhost]\n    routes: [{respond: {status: 999}}]\n")
	if code, _, errOut := runCmd(t, nil, "config", "push", bad, "-config", local); code != 1 || !strings.HasPrefix(errOut, bad+":3:") {
		t.Errorf("push of an invalid file: exit %d, %q; want 1 and its problem at %s:3", code, errOut, bad)
	}

	one := write("one.yaml", fmt.Sprintf(site, "one"))
	code, out, errOut := runCmd(t, nil, "config", "push", one, "-config", local)
	rev1 := revisionIn(t, out, `as revision (\d+) \(was 0\)`)
	if code != 0 {
		t.Fatalf("push: exit %d, %q, %q", code, out, errOut)
	}
	code, pulled, errOut := runCmd(t, nil, "config", "pull", "-config", local)
	if code != 0 || !strings.HasPrefix(pulled, fmt.Sprintf("# gatehouse fleet config revision %d ", rev1)) || !strings.HasSuffix(pulled, fmt.Sprintf(site, "one")) {
		t.Fatalf("pull: exit %d, %q, %q", code, pulled, errOut)
	}
	edited := write("edited.yaml", strings.Replace(pulled, "one", "mine", 1))

	two := write("two.yaml", fmt.Sprintf(site, "two"))
	_, out, _ = runCmd(t, nil, "config", "push", two, "-config", local)
	rev2 := revisionIn(t, out, `as revision (\d+)`)
	want := fmt.Sprintf("changed since revision %d (now revision %d)", rev1, rev2)
	if code, _, errOut := runCmd(t, nil, "config", "push", edited, "-config", local); code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--force") {
		t.Errorf("push of a stale pull: exit %d, %q; want 1 and %q", code, errOut, want)
	}
	code, out, errOut = runCmd(t, nil, "config", "push", "--force", edited, "-config", local)
	if code != 0 {
		t.Fatalf("push --force: exit %d, %q", code, errOut)
	}
	rev3 := revisionIn(t, out, `as revision (\d+)`)

	_, out, _ = runCmd(t, nil, "config", "history", "-config", local)
	var revs []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		revs = append(revs, strings.Fields(line)[1])
	}
	if got, want := strings.Join(revs, " "), fmt.Sprintf("%d %d %d", rev3, rev2, rev1); got != want {
		t.Errorf("history: got revisions %s, want %s\n%s", got, want, out)
	}

	in := startArgs(t, p, storage, local, []string{"run", "-config", local})
	if code, body := get(t, in.Client(t), "https://localhost/"); code != 200 || body != "mine" {
		t.Errorf("the instance serves %d %q, want revision %d's \"mine\"", code, body, rev3)
	}
	wantStatus := regexp.MustCompile(fmt.Sprintf(`(?m)^edge-cli +up +revision %d +1 certificates +127\.0\.0\.1:%d`, rev3, p.HTTPS))
	// The registry counts the Certificates held every 15 s
	// (fleet.countEvery): the leaf issued by the GET above may wait that.
	waitFor(t, 30*time.Second, func() bool {
		_, out, _ := runCmd(t, nil, "fleet", "status", "-config", local)
		return wantStatus.MatchString(out)
	})
}

// revisionIn returns the revision re's group finds in out.
func revisionIn(t *testing.T, out, re string) int64 {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no revision in %q", out)
	}
	var rev int64
	fmt.Sscan(m[1], &rev)
	return rev
}
