package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

const shareConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
local_ca: {share: %v}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [nas.home.arpa]
    routes: [{respond: {body: nas}}]
`

// fetchShared GETs path from the HTTP Listener at addr as a phone on the
// network asking for nas.home.arpa would.
func fetchShared(t *testing.T, addr, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "nas.home.arpa"
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestShareLocalRoot runs gatehouse with local_ca.share: its HTTP Listener
// serves the local CA's root as PEM and DER, a client trusting what it
// downloaded gets nas.home.arpa's certificate verified, and the dashboard
// (in headless chromium) shows the fingerprint and a QR code that decodes
// to the root's URL. A reload with share off stops serving it.
func TestShareLocalRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chromium")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is needed to test the dashboard: apt-get install -y chromium (.ci/run does)")
	}
	p := newPorts(t)
	in := start(t, p, fmt.Sprintf(shareConfig, true))
	root, _, err := tlsmgr.ReadLocalRoot(in.Storage)
	if err != nil {
		t.Fatal(err)
	}

	resp, der := fetchShared(t, in.HTTP, "GET", "/.well-known/gatehouse/root.crt")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" || !bytes.Equal(der, root.Raw) {
		t.Fatalf("GET root.crt: got %d %q, %d bytes; want 200 application/x-x509-ca-cert with the root's DER", resp.StatusCode, resp.Header.Get("Content-Type"), len(der))
	}
	resp, pemBody := fetchShared(t, in.HTTP, "GET", "/.well-known/gatehouse/root.pem")
	block, _ := pem.Decode(pemBody)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-pem-file" || block == nil || !bytes.Equal(block.Bytes, root.Raw) {
		t.Fatalf("GET root.pem: got %d %q %q; want 200 application/x-pem-file with the root", resp.StatusCode, resp.Header.Get("Content-Type"), pemBody)
	}
	if resp, _ := fetchShared(t, in.HTTP, "POST", "/.well-known/gatehouse/root.crt"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST root.crt: got %d, want 405", resp.StatusCode)
	}
	// What a phone downloaded is enough to trust the Site.
	shared, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(shared)
	conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "nas.home.arpa", RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake for nas.home.arpa trusting the shared root: %v", err)
	}
	conn.Close()

	// The dashboard, in a real browser.
	want := fmt.Sprintf("http://nas.home.arpa:%d/.well-known/gatehouse/root.crt", p.HTTP)
	base := fmt.Sprintf("http://127.0.0.1:%d/", p.Admin)
	dom := dumpDOM(t, chromium, base)
	if !strings.Contains(dom, `<code id="root-fingerprint" class="fingerprint">`+tlsmgr.Fingerprint(root)+`</code>`) {
		t.Errorf("dashboard does not show the root's fingerprint %s\n%s", tlsmgr.Fingerprint(root), section(dom))
	}
	if !strings.Contains(dom, `<a id="root-url" href="`+want+`">`) {
		t.Errorf("dashboard does not link %s\n%s", want, section(dom))
	}
	if got := decodeQR(t, screenshot(t, chromium, base)); got != want {
		t.Errorf("the dashboard's QR code decodes to %q, want %q", got, want)
	}

	// Reloaded with share off: the root is no longer served, nor its QR.
	writeConfig(t, in.CfgPath, p, in.Storage, fmt.Sprintf(shareConfig, false))
	a := adminClient{T: t, Base: strings.TrimSuffix(base, "/")}
	if status, body := a.Do("POST", "/reload", "", ""); status != 200 {
		t.Fatalf("reload: %d %s", status, body)
	}
	if resp, body := fetchShared(t, in.HTTP, "GET", "/.well-known/gatehouse/root.crt"); resp.StatusCode == 200 || bytes.Contains(body, root.Raw) {
		t.Errorf("GET root.crt with share off: got %d with the root; want it not served", resp.StatusCode)
	}
	dom = dumpDOM(t, chromium, base)
	if strings.Contains(dom, `id="root-qr"`) || !strings.Contains(dom, tlsmgr.Fingerprint(root)) {
		t.Errorf("dashboard with share off: want the fingerprint and no QR code\n%s", section(dom))
	}
}

// section is the dashboard's local CA section, for failure messages.
func section(dom string) string {
	if m := regexp.MustCompile(`(?s)<section[^>]*id="local-ca".*?</section>`).FindString(dom); m != "" {
		return m
	}
	return dom
}

// screenshot renders url in headless chromium, tall enough for the
// whole dashboard, and returns the PNG file.
func screenshot(t *testing.T, chromium, url string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "dashboard.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, append(chromiumFlags(t), "--hide-scrollbars", "--window-size=1280,1600", "--screenshot="+file, url)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	return file
}

// decodeQR finds and decodes the QR code in the PNG file.
func decodeQR(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		t.Fatalf("no QR code found in the screenshot %s: %v", file, err)
	}
	return res.GetText()
}

// TestShareURL checks which host the QR code names: a phone must reach
// it, so never localhost, a loopback address or a wildcard.
func TestShareURL(t *testing.T) {
	hostname, _ := os.Hostname()
	site := func(hosts ...string) config.Site { return config.Site{Hosts: hosts} }
	for _, tc := range []struct {
		name, http string
		sites      []config.Site
		want       string
	}{
		{"first reachable local CA host", ":80", []config.Site{site("localhost", "*.home.arpa"), site("app.example.com", "nas.home.arpa", "ha.home.arpa")},
			"http://nas.home.arpa/.well-known/gatehouse/root.crt"},
		{"the HTTP Listener's port", "0.0.0.0:8080", []config.Site{site("nas.internal")}, "http://nas.internal:8080/.well-known/gatehouse/root.crt"},
		{"an IP host", ":80", []config.Site{site("127.0.0.1", "192.168.1.10")}, "http://192.168.1.10/.well-known/gatehouse/root.crt"},
		{"an IPv6 host", ":80", []config.Site{site("fd00::10")}, "http://[fd00::10]/.well-known/gatehouse/root.crt"},
		{"the Listener's address", "192.168.1.2:80", []config.Site{site("localhost")}, "http://192.168.1.2/.well-known/gatehouse/root.crt"},
		{"the host name", ":80", []config.Site{site("localhost", "app.example.com")}, "http://" + hostname + "/.well-known/gatehouse/root.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{Listen: config.Listen{HTTP: tc.http}, Sites: tc.sites}
			if got := shareURL(cfg); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
