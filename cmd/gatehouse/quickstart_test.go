package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// quickstart is what README.md's "Try it" tells a user to do and expect.
type quickstart struct {
	args   []string // gatehouse's arguments, after `go run ./cmd/gatehouse`
	config string   // the -config path, relative to the repository root
	url    string   // what curl fetches
	cacert string   // the root certificate file curl trusts
	answer string   // what curl prints
}

// readQuickstart extracts the quickstart from the README's "## Try it"
// section: the `go run ./cmd/gatehouse` line, the curl line after it and
// the "# answer" comment line that follows the curl line.
func readQuickstart(t *testing.T, readme string) quickstart {
	t.Helper()
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Try it\n")
	if !ok {
		t.Fatalf(`%s has no "## Try it" section`, readme)
	}
	section, _, _ = strings.Cut(section, "\n## ")

	var q quickstart
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case q.args == nil && strings.HasPrefix(line, "go run ./cmd/gatehouse "):
			q.args = strings.Fields(strings.TrimPrefix(line, "go run ./cmd/gatehouse "))
		case q.args != nil && q.url == "" && strings.HasPrefix(line, "curl "):
			fields := strings.Fields(line)[1:]
			for i := 0; i < len(fields); i++ {
				switch {
				case fields[i] == "--cacert" && i+1 < len(fields):
					i++
					q.cacert = fields[i]
				case strings.HasPrefix(fields[i], "-"):
					t.Fatalf("README's curl line %q has option %s, which this test does not know", line, fields[i])
				default:
					q.url = fields[i]
				}
			}
			if !sc.Scan() || !strings.HasPrefix(strings.TrimSpace(sc.Text()), "# ") {
				t.Fatalf(`README's curl line %q is not followed by a "# answer" line`, line)
			}
			q.answer = strings.TrimPrefix(strings.TrimSpace(sc.Text()), "# ")
		}
	}
	if q.args == nil {
		t.Fatal("README's Try it has no `go run ./cmd/gatehouse` line")
	}
	for i, a := range q.args {
		if (a == "-config" || a == "--config") && i+1 < len(q.args) {
			q.config = q.args[i+1]
		}
	}
	if q.config == "" || q.url == "" || q.cacert == "" || q.answer == "" {
		t.Fatalf("README's Try it: want a -config, a curl URL with --cacert and its answer, got %+v", q)
	}
	return q
}

// TestQuickstart runs the README's first command on the very example config
// it names, then makes the request of the README's curl line, trusting the
// root file that line names, and checks the answer is the README's. The
// example fixes its ports (8080, 8443, admin 2019) and its storage
// (/tmp/gatehouse-quickstart), so the test uses those and fails if they are
// taken.
func TestQuickstart(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	q := readQuickstart(t, filepath.Join(root, "README.md"))

	// As in a fresh shell: the example's storage is ${GATEHOUSE_STORAGE:-…}.
	t.Setenv("GATEHOUSE_STORAGE", "")
	cfgPath := filepath.Join(root, q.config)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the README's config %s: %v", q.config, err)
	}

	u, err := url.Parse(q.url)
	if err != nil {
		t.Fatalf("README's curl URL %q: %v", q.url, err)
	}
	_, httpsPort, err := net.SplitHostPort(cfg.Listen.HTTPS)
	if err != nil {
		t.Fatalf("%s: listen.https %q: %v", q.config, cfg.Listen.HTTPS, err)
	}
	if u.Scheme != "https" || u.Port() != httpsPort {
		t.Fatalf("README's curl URL %s is not the HTTPS Listener of %s (listen.https %q)", q.url, q.config, cfg.Listen.HTTPS)
	}
	addrs := []string{cfg.Listen.HTTP, cfg.Listen.HTTPS}
	if cfg.Admin != "" && cfg.Admin != "off" {
		addrs = append(addrs, cfg.Admin)
	}
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the quickstart needs %s, which %s fixes, and it is taken (stop whatever listens there): %v", addr, q.config, err)
		}
		ln.Close()
	}

	// A storage left by a user's own quickstart is theirs and stays; one
	// this test made goes.
	if _, err := os.Stat(cfg.Storage); errors.Is(err, fs.ErrNotExist) {
		t.Cleanup(func() { os.RemoveAll(cfg.Storage) })
	}

	port, err := strconv.Atoi(httpsPort)
	if err != nil {
		t.Fatalf("%s: listen.https %q: %v", q.config, cfg.Listen.HTTPS, err)
	}
	p := ports{HTTPS: port}
	args := append([]string(nil), q.args...)
	for i := range args {
		if args[i] == q.config {
			args[i] = cfgPath // the README runs from the repository root
		}
	}
	in := startArgs(t, p, cfg.Storage, cfgPath, args)

	pemBytes, err := os.ReadFile(q.cacert)
	if err != nil {
		t.Fatalf("README's --cacert %s after gatehouse started on %s (storage %s): %v\n%s", q.cacert, q.config, cfg.Storage, err, in.Stderr)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("README's --cacert %s holds no PEM certificate", q.cacert)
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
	}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Get(q.url)
	if err != nil {
		t.Fatalf("curl --cacert %s %s: %v\n%s", q.cacert, q.url, err, in.Stderr)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("curl %s: reading the answer: %v", q.url, err)
	}
	// curl prints the body as it is; a final newline would look the same.
	if got := strings.TrimSuffix(string(body), "\n"); resp.StatusCode != http.StatusOK || got != q.answer {
		t.Errorf("curl %s answered %s %q, README says %q", q.url, resp.Status, got, q.answer)
	}
	if err := in.Stop(); err != nil {
		t.Errorf("gatehouse run exited with %v", err)
	}
}
