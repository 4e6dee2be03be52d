// Package dockertest runs a real Docker-compatible engine for tests:
// podman's Docker Engine API service on a socket of the test's own, and
// containers of a test image built locally (no registry is needed) from
// the static backend command in this package.
//
// Where podman is not installed, [Start] skips the test, except in CI (CI
// set), where it fails it: .ci/run installs podman and runc, and writes the
// /etc/containers/containers.conf such hosts need (runc rather than crun,
// ulimits the job may set).
package dockertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Engine is a running podman API service.
type Engine struct {
	t      testing.TB
	socket string
	mu     sync.Mutex // guards cmd and done
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
}

// Start runs `podman system service` on a socket in a temporary
// directory, waits until it answers /_ping, and stops it when the test
// ends.
func Start(t testing.TB) *Engine {
	t.Helper()
	need(t)
	dir, err := os.MkdirTemp("", "dockertest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &Engine{t: t, socket: filepath.Join(dir, "engine.sock")}
	e.Restart()
	t.Cleanup(e.Stop)
	return e
}

// need skips or fails t when podman or runc is missing.
func need(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("dockertest: %s not found in CI: .ci/run should install podman and runc: %v", bin, err)
			}
			t.Skipf("dockertest: %s not installed: apt-get install -y podman runc (and containers.conf as .ci/run writes it)", bin)
		}
	}
}

// Endpoint is the engine's address as docker.endpoint takes it.
func (e *Engine) Endpoint() string { return "unix://" + e.socket }

// Socket is the path of the engine's API socket.
func (e *Engine) Socket() string { return e.socket }

// Stop stops the API service (the containers keep running, as they do
// when dockerd restarts with live-restore) and waits until it exited.
func (e *Engine) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.done
	e.cmd = nil
	os.Remove(e.socket)
}

// Restart starts the API service again on the same socket, after Stop,
// and waits until it answers.
func (e *Engine) Restart() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		return
	}
	os.Remove(e.socket)
	cmd := exec.Command("podman", "system", "service", "--time=0", "unix://"+e.socket)
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("dockertest: starting podman system service: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	e.cmd, e.done = cmd, done
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.socket)
	}}, Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get("http://engine/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-done:
			e.t.Fatalf("dockertest: podman system service exited at start")
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("dockertest: podman system service did not answer /_ping within 20s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var image struct {
	once sync.Once
	name string
	err  error
}

// Image returns the test image, built once per test binary: the backend
// command, linked statically, imported as an image that exposes 8080.
func Image(t testing.TB) string {
	t.Helper()
	need(t)
	image.once.Do(func() { image.name, image.err = buildImage() })
	if image.err != nil {
		t.Fatalf("dockertest: building the test image: %v", image.err)
	}
	return image.name
}

// BuildImage builds and imports the test image, as [Image] does, for
// programs outside tests (bench/), and returns its name.
func BuildImage() (string, error) { return buildImage() }

func buildImage() (string, error) {
	dir, err := os.MkdirTemp("", "dockertest-image")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(root, "app"), "github.com/gatehouse-proxy/gatehouse/gateway/dockertest/backend")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(root, "app"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(bin)
	name := "localhost/gatehouse-testbackend:" + hex.EncodeToString(sum[:6])
	if exec.Command("podman", "image", "exists", name).Run() == nil {
		return name, nil
	}
	imp := exec.Command("sh", "-c", `tar -C "$1" -c . | podman import --change 'ENTRYPOINT ["/app"]' --change 'EXPOSE 8080' - "$2"`, "sh", root, name)
	if out, err := imp.CombinedOutput(); err != nil {
		return "", fmt.Errorf("podman import: %v\n%s", err, out)
	}
	return name, nil
}

// Podman runs the podman command with args and returns its output,
// failing the test when it fails.
func Podman(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Run starts a container of the test image named name, with labels and
// further podman run arguments, and removes it when the test ends. It
// returns the container's ID.
func Run(t testing.TB, name string, labels map[string]string, args ...string) string {
	t.Helper()
	img := Image(t)
	cmd := []string{"run", "-d", "--name", name}
	for k, v := range labels {
		cmd = append(cmd, "--label", k+"="+v)
	}
	cmd = append(append(cmd, args...), img)
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", "-t", "0", name).Run() })
	return Podman(t, cmd...)
}

// Post sends a POST with body as JSON (nil for none) to the engine's API,
// as compose does, and returns the answer's body, or an error unless it
// is a 2xx. Creating and starting many containers this way is much quicker
// than as many podman commands, each a process of its own. It is safe to
// call from any goroutine.
func (e *Engine) Post(path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.socket)
	}}, Timeout: 2 * time.Minute}
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://engine"+path, "application/json", r)
	if err != nil {
		return nil, fmt.Errorf("dockertest: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("dockertest: POST %s: reading the answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("dockertest: POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(out))
	}
	return out, nil
}
