package dockertest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
)

// TestRunAndRestart runs a labelled container of the test image and
// restarts the engine's API, as the Docker Source's tests do.
func TestRunAndRestart(t *testing.T) {
	start := time.Now()
	e := dockertest.Start(t)
	t.Logf("engine up after %s", time.Since(start))
	dockertest.Image(t)
	t.Logf("image after %s", time.Since(start))
	id := dockertest.Run(t, "dockertest-selftest", map[string]string{"gatehouse.test": "yes"})
	t.Logf("container after %s", time.Since(start))
	if got := dockertest.Podman(t, "inspect", "--format", "{{.Config.Labels}}", id); !strings.Contains(got, "gatehouse.test:yes") {
		t.Errorf("labels: %s", got)
	}
	e.Stop()
	e.Restart()
	t.Logf("restarted after %s", time.Since(start))
}

// TestBaseImages makes (or finds) the base images the Dockerfile names.
// .ci/run runs it alone first, with a long timeout: on a machine that
// never made them, debootstrap takes minutes, which would otherwise count
// against the package timeout of TestDockerImage (cmd/gatehouse).
func TestBaseImages(t *testing.T) {
	dockertest.BaseImages(t)
	for _, image := range []string{dockertest.DebianImage, dockertest.GolangImage} {
		dockertest.Podman(t, "image", "exists", image)
	}
	if out := dockertest.Podman(t, "run", "--rm", dockertest.GolangImage, "go", "version"); !strings.Contains(out, "go1.26") {
		t.Errorf("go in %s: %s", dockertest.GolangImage, out)
	}
}
