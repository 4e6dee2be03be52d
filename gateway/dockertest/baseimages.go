package dockertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The base images the repository's Dockerfile names. No registry is
// reachable here, so [BaseImages] makes them from Debian's mirror under
// these names, once per machine: podman keeps them between runs.
const (
	DebianImage = "docker.io/library/debian:bookworm-slim"
	GolangImage = "docker.io/library/golang:1.26-bookworm"
)

// BaseImages makes [DebianImage] and [GolangImage] when podman lacks
// them: a debootstrap --variant=minbase rootfs of bookworm from the mirror
// apt uses, with the host's CA bundle (so apt and go inside a build trust
// what the host trusts), and for Go the host's GOROOT added. A file lock
// keeps two test processes from making them at once. Where debootstrap is
// missing it skips t, except in CI, where .ci/run installs it.
func BaseImages(t testing.TB) {
	t.Helper()
	need(t)
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "gatehouse-dockertest-base.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if exists(DebianImage) && exists(GolangImage) {
		return
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("dockertest: debootstrap not found in CI: .ci/run should install it: %v", err)
		}
		t.Skipf("dockertest: debootstrap not installed (apt-get install -y debootstrap): %v", err)
	}
	if err := makeBaseImages(t.TempDir()); err != nil {
		t.Fatalf("dockertest: making the base images: %v", err)
	}
}

func exists(image string) bool { return exec.Command("podman", "image", "exists", image).Run() == nil }

func makeBaseImages(dir string) error {
	mirror := "http://deb.debian.org/debian"
	if b, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if u, ok := strings.CutPrefix(l, "URIs:"); ok {
				mirror = strings.Fields(u)[0]
				break
			}
		}
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	root := filepath.Join(dir, "rootfs")
	steps := [][]string{
		{"debootstrap", "--variant=minbase", "bookworm", root, mirror},
		{"mkdir", "-p", root + "/etc/ssl/certs"},
		{"cp", "/etc/ssl/certs/ca-certificates.crt", root + "/etc/ssl/certs/"},
		{"sh", "-c", `tar -C "$1" -c . | podman import - "$2"`, "sh", root, DebianImage},
		{"cp", "-a", strings.TrimSpace(string(goroot)), root + "/usr/local/go"},
		{"sh", "-c", `tar -C "$1" -c . | podman import --change "ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --change "ENV GOPATH=/go" - "$2"`, "sh", root, GolangImage},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}
