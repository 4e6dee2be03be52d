package gateway

import (
	"golang.org/x/crypto/bcrypt"

	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const shapingConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
timeouts: {shutdown: 5s}
sites:
  - hosts: [localhost]
    security_headers: true
    routes:
      - path: /
        upstreams: [%s]
        compress: true
      - path: /old/
        strip_prefix: true
        redirect: {to: "/new{path}?{query}"}
      - path: /admin/
        respond: {body: "staff only"}
        basic_auth: {realm: staff, users: {alice: "%s"}}
      - path: /limited
        respond: {body: "once"}
        rate_limit: {requests: 1, per: 1h}
`

// TestShapingThroughRun serves shaping and access control from a config
// file through gatehouse run, with a hash made by hash-password, and has a
// real browser (chromium) load a compressed page.
func TestShapingThroughRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chromium")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is needed: apt-get install -y chromium (.ci/run does)")
	}
	page := "<!doctype html><title>t</title><h1 id=marker>served compressed</h1>\n" +
		strings.Repeat("<p>gatehouse compresses what is worth compressing</p>\n", 400)
	var mu sync.Mutex
	var acceptEncoding []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/page" {
			mu.Lock()
			acceptEncoding = append(acceptEncoding, r.Header.Get("Accept-Encoding"))
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	}))
	defer upstream.Close()

	hashed, err := bcrypt.GenerateFromPassword([]byte("s3cret"), 4)
	if err != nil {
		t.Fatal(err)
	}
	hash := string(hashed)
	p := newPorts(t)
	in := start(t, p, fmt.Sprintf(shapingConfig, upstream.URL, strings.TrimSpace(hash)))
	c := in.Client(t)
	base := "https://localhost"

	do := func(method, url string, set func(*http.Request)) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		if set != nil {
			set(req)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}

	res := do("GET", base+"/admin/", nil)
	if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != `Basic realm="staff", charset="UTF-8"` {
		t.Errorf("admin without credentials: %d %q, want 401 with the staff realm", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if res := do("GET", base+"/admin/", func(r *http.Request) { r.SetBasicAuth("alice", "s3cret") }); res.StatusCode != 200 {
		t.Errorf("admin with the password hash-password hashed: %d, want 200", res.StatusCode)
	}
	if res := do("GET", base+"/old/a/b?x=1", nil); res.StatusCode != 308 || res.Header.Get("Location") != "/new/a/b?x=1" {
		t.Errorf("redirect: %d %q, want 308 /new/a/b?x=1", res.StatusCode, res.Header.Get("Location"))
	}
	if res := do("GET", base+"/limited", nil); res.StatusCode != 200 {
		t.Errorf("first limited request: %d", res.StatusCode)
	}
	if res := do("GET", base+"/limited", nil); res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Errorf("second limited request: %d, Retry-After %q; want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	res = do("GET", base+"/page", func(r *http.Request) { r.Header.Set("Accept-Encoding", "gzip") })
	for name, want := range map[string]string{
		"Content-Encoding":          "gzip",
		"Strict-Transport-Security": "max-age=31536000",
		"X-Frame-Options":           "DENY",
		"X-Content-Type-Options":    "nosniff",
	} {
		if got := res.Header.Get(name); got != want {
			t.Errorf("page: %s = %q, want %q", name, got, want)
		}
	}

	// A real browser negotiates, decodes and renders the compressed page.
	url := fmt.Sprintf("https://localhost:%d/page", p.HTTPS)
	dom := dumpDOM(t, chromium, url, "--ignore-certificate-errors")
	if !strings.Contains(dom, `<h1 id="marker">served compressed</h1>`) || strings.Count(dom, "<p>") != 400 {
		t.Errorf("chromium rendered %d bytes without the whole page:\n%.500s", len(dom), dom)
	}
	mu.Lock()
	offered := acceptEncoding[len(acceptEncoding)-1]
	mu.Unlock()
	enc := "gzip"
	if strings.Contains(offered, "zstd") {
		enc = "zstd"
	}
	t.Logf("chromium sent Accept-Encoding %q: %s", offered, enc)
	// The access line of chromium's request shows the compressed size.
	line := regexp.MustCompile(`(?m)^.*msg=request .*path=/page .*bytes_out=(\d+).*$`)
	var out int
	waitFor(t, 5*time.Second, func() bool {
		m := line.FindAllStringSubmatch(in.Stderr.String(), -1)
		if len(m) < 2 {
			return false
		}
		out, _ = strconv.Atoi(m[len(m)-1][1])
		return true
	})
	if out == 0 || out > len(page)/10 {
		t.Errorf("chromium (Accept-Encoding %q, so %s) got %d bytes for a %d-byte page; want it compressed", offered, enc, out, len(page))
	}
}
