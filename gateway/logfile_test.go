package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAccessLogFile sends a request with secrets in its query string and
// headers and checks the line gatehouse writes to log.file: every field,
// no secret, nothing of it on stderr, mode 0640.
func TestAccessLogFile(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes", len(b))
	}))
	defer up.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "access.log")
	p := newPorts(t)
	in := start(t, p, fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
log: {format: json, file: %[1]s}
sites:
  - hosts: [localhost]
    routes:
      - {path: /api/, upstreams: [%[2]s]}
      - {path: /retry/, upstreams: ["http://127.0.0.1:%[3]d", %[2]s]}
`, file, up.URL, freePort(t)))
	c := in.Client(t)

	req, _ := http.NewRequest("POST", "https://localhost/api/users?token=s3cret-query", strings.NewReader("0123456789"))
	req.Header.Set("Authorization", "Bearer s3cret-auth")
	req.Header.Set("Cookie", "session=s3cret-cookie")
	req.Header.Set("X-Request-ID", "req-42")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "got 10 bytes" {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "got 10 bytes")
	}

	var lines []map[string]any
	waitFor(t, 5*time.Second, func() bool {
		data, _ := os.ReadFile(file)
		lines = accessLines(t, string(data))
		return len(lines) > 0
	})
	l := lines[0]
	want := map[string]any{
		"client_ip": "127.0.0.1", "method": "POST", "host": "localhost", "path": "/api/users",
		"proto": "HTTP/2.0", "status": float64(200), "bytes_in": float64(10),
		"bytes_out": float64(len("got 10 bytes")), "upstream": up.URL, "retries": float64(0),
		"tls_version": "1.3", "site": "localhost", "route": "/api/", "request_id": "req-42",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %v, want %v", k, l[k], v)
		}
	}
	for _, k := range []string{"time", "duration_ms"} {
		if _, ok := l[k]; !ok {
			t.Errorf("%s missing from %v", k, l)
		}
	}
	data, _ := os.ReadFile(file)
	if strings.Contains(string(data), "s3cret") {
		t.Errorf("access log holds a secret from the query string or headers:\n%s", data)
	}
	if strings.Contains(in.Stderr.String(), `"msg":"request"`) {
		t.Errorf("access lines also went to stderr:\n%s", in.Stderr)
	}
	if !strings.Contains(in.Stderr.String(), "gatehouse started") {
		t.Errorf("operational log is not on stderr:\n%s", in.Stderr)
	}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if m := info.Mode().Perm(); m != 0o640 {
		t.Errorf("log file mode = %o, want 640", m)
	}

	// Round robin over a dead and a live Upstream: one of two requests
	// starts at the dead one and is retried on the live one.
	for i := range 2 {
		if status, _ := get(t, c, fmt.Sprintf("https://localhost/retry/%d", i)); status != 200 {
			t.Fatalf("status = %d, want 200", status)
		}
	}
	waitFor(t, 5*time.Second, func() bool {
		data, _ := os.ReadFile(file)
		retried := false
		for _, l := range accessLines(t, string(data)) {
			if strings.HasPrefix(fmt.Sprint(l["path"]), "/retry/") && l["retries"] == float64(1) && l["upstream"] == up.URL {
				retried = true
			}
		}
		return retried
	})
}

// TestAccessLogRotation rotates the access log by size, then reopens it on
// SIGUSR1 after it was moved away as logrotate does, and checks that lines
// are never split and the newest always lands in the file at log.file.
func TestAccessLogRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "access.log")
	p := newPorts(t)
	in := start(t, p, fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
log: {format: json, file: %s, max_size: 1KiB}
sites:
  - hosts: [localhost]
    routes: [{path: /, respond: {body: ok}}]
`, file))
	c := in.Client(t)
	sent := 0
	fetch := func(n int) {
		t.Helper()
		for range n {
			if status, _ := get(t, c, fmt.Sprintf("https://localhost/r%d", sent)); status != 200 {
				t.Fatalf("status = %d, want 200", status)
			}
			sent++
		}
	}
	// countLines also checks that every line is whole JSON: a rotation
	// never splits one.
	countLines := func(paths ...string) int {
		n := 0
		for _, path := range paths {
			data, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			n += len(accessLines(t, string(data)))
		}
		return n
	}

	fetch(12) // each line is about 300 bytes: several rotations past 1KiB
	waitFor(t, 5*time.Second, func() bool { return countLines(file, file+".1") > 0 })
	info, err := os.Stat(file + ".1")
	if err != nil {
		t.Fatalf("no %s.1 after %d requests: %v", file, sent, err)
	}
	if info.Size() > 1024 {
		t.Errorf("%s.1 is %d bytes, past max_size 1KiB", file, info.Size())
	}
	if info, err := os.Stat(file); err != nil || info.Size() > 1024 {
		t.Errorf("%s: %v, %d bytes; want at most 1KiB", file, err, info.Size())
	}
	// The newest request is in the current file (it is never split and
	// never lost in the rotation).
	last := fmt.Sprintf("/r%d", sent-1)
	waitFor(t, 5*time.Second, func() bool {
		data, _ := os.ReadFile(file)
		return strings.Contains(string(data), `"path":"`+last+`"`)
	})

	// logrotate moves the file away, then sends SIGUSR1.
	moved := filepath.Join(dir, "access.log.moved")
	if err := os.Rename(file, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(file + ".1"); err != nil {
		t.Fatal(err)
	}
	fetch(1) // still written to the moved file, through the open descriptor
	waitFor(t, 5*time.Second, func() bool {
		data, _ := os.ReadFile(moved)
		return strings.Contains(string(data), fmt.Sprintf(`"path":"/r%d"`, sent-1))
	})
	in.Reopen <- syscall.SIGUSR1
	waitFor(t, 5*time.Second, func() bool {
		_, err := os.Stat(file)
		return err == nil
	})
	fetch(1)
	waitFor(t, 5*time.Second, func() bool {
		data, _ := os.ReadFile(file)
		return strings.Contains(string(data), fmt.Sprintf(`"path":"/r%d"`, sent-1))
	})
	if !strings.Contains(in.Stderr.String(), "access log reopened") {
		t.Errorf("no reopen in the log:\n%s", in.Stderr)
	}
}

// TestLogFileRotationFails: when FILE.1 cannot be replaced, lines go on to
// the current file and the failure is reported once, not once a line.
func TestLogFileRotationFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	if err := os.Mkdir(path+".1", 0o755); err != nil { // rename onto it fails
		t.Fatal(err)
	}
	var reports []string
	l, err := openLogFile(path, 64, func(msg string, err error) { reports = append(reports, fmt.Sprint(msg, ": ", err)) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	line := strings.Repeat("x", 39) + "\n"
	for range 5 {
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), strings.Repeat(line, 5); got != want {
		t.Errorf("file holds %d bytes, want all %d written", len(got), len(want))
	}
	if len(reports) != 1 {
		t.Errorf("got %d reports, want 1: %q", len(reports), reports)
	}
	// Once rotation works again, it happens on the next write.
	if err := os.Remove(path + ".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != line {
		t.Errorf("after rotation the file holds %q, want just the new line", data)
	}
	if data, _ := os.ReadFile(path + ".1"); len(data) != 5*len(line) {
		t.Errorf("%s.1 holds %d bytes, want the %d before rotation", path, len(data), 5*len(line))
	}
}
