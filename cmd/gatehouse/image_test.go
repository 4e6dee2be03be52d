package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
)

// TestDockerImage builds the repository's Dockerfile with podman (on base
// images made from Debian's mirror, since no registry is reachable), runs
// it with /data on a named volume and a config of its own, and checks
// what a user of the image relies on: it serves HTTPS on port 443 inside
// the container as the non-root user, keeps its certificates and keys in
// the volume, and reloads on SIGHUP.
func TestDockerImage(t *testing.T) {
	dockertest.BaseImages(t)
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	// One tag, kept between runs: its layers (the apt-get one above all)
	// are the next build's cache, and the build's cache mounts keep
	// modules and compiled packages, so a rebuild costs far less than the
	// first. The image it replaces is removed, its shared layers stay.
	const image = "localhost/gatehouse-imagetest:latest"
	name, volume := "gatehouse-imagetest-"+id, "gatehouse-imagetest-"+id
	old, _ := exec.Command("podman", "image", "inspect", "--format", "{{.Id}}", image).Output()
	start := time.Now()
	built := dockertest.Podman(t, "build", "--pull=never", "--network", "host", "-q", "-t", image, "../..")
	t.Logf("built in %s", time.Since(start).Round(time.Second))
	if o := strings.TrimSpace(string(old)); o != "" && !strings.HasPrefix(o, strings.TrimPrefix(built, "sha256:")) {
		_ = exec.Command("podman", "rmi", o).Run() // not while another run's container uses it
	}

	cfg := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(cfg, []byte(`listen: {http: "off", https: ":443"}
admin: "off"
sites:
  - hosts: [localhost]
    routes:
      - respond: {body: "from the image"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	dockertest.Podman(t, "volume", "create", volume)
	t.Cleanup(func() { _ = exec.Command("podman", "volume", "rm", "-f", volume).Run() })
	port := freePort(t)
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", "-t", "0", name).Run() })
	dockertest.Podman(t, "run", "-d", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:443", port),
		"-v", volume+":/data", "-v", cfg+":/etc/gatehouse/gatehouse.yaml:ro", image)
	logs := func() string { out, _ := exec.Command("podman", "logs", name).CombinedOutput(); return string(out) }

	// Its own root, read from the volume: the certificate it serves
	// chains to the CA it keeps in /data.
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	mount := dockertest.Podman(t, "volume", "inspect", "--format", "{{.Mountpoint}}", volume)
	var root []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}); err == nil {
			c.Close()
			var err error
			if root, err = os.ReadFile(filepath.Join(mount, "pki", "root.pem")); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container served no TLS on 443, or wrote no local CA to /data, within 30s\n%s", logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(root)
	if code, body := get(t, clientFor(addr, roots), "https://localhost/"); code != 200 || body != "from the image" {
		t.Errorf("GET https://localhost/ through the container: got %d %q", code, body)
	}

	// The process is the image's unprivileged user, and what it wrote in
	// the volume is its own.
	if status := dockertest.Podman(t, "exec", name, "cat", "/proc/1/status"); !strings.Contains(status, "\nUid:\t10001\t10001\t10001\t10001") {
		t.Errorf("gatehouse runs as:\n%s\nwant uid 10001 (gatehouse)", grepLines(status, "Uid"))
	}
	if fi, err := os.Stat(filepath.Join(mount, "pki", "root.pem")); err != nil {
		t.Error(err)
	} else if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 10001 {
		t.Errorf("the local CA's root in the volume is owned by uid %d; want 10001", uid)
	}
	if mounts := dockertest.Podman(t, "inspect", "--format", "{{range .Mounts}}{{.Name}} {{.Destination}};{{end}}", name); !strings.Contains(mounts, volume+" /data;") {
		t.Errorf("mounts %q lack the volume on /data", mounts)
	}

	dockertest.Podman(t, "kill", "--signal", "HUP", name)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs(), "config reloaded") })
}
