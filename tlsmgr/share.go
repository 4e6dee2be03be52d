package tlsmgr

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Where the HTTP Listener serves the local CA's root with local_ca.share.
const (
	SharedRootPEMPath = "/.well-known/gatehouse/root.pem"
	SharedRootDERPath = "/.well-known/gatehouse/root.crt"
)

// Fingerprint is the SHA-256 fingerprint of cert as browsers and phones
// show it: upper-case hex pairs joined by colons.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// LocalRootCertificate is the local CA's root certificate, the one
// `gatehouse trust` installs.
func (m *Manager) LocalRootCertificate() *x509.Certificate { return m.ca.root }

// ShareRootHandler serves the local CA's root at SharedRootPEMPath (PEM)
// and SharedRootDERPath (DER, as phones install a CA) while share reports
// true (local_ca.share, read per request so a reload turns it on or off),
// and passes every other request to next.
func (m *Manager) ShareRootHandler(next http.Handler, share func() bool) http.Handler {
	root := m.ca.root
	type file struct {
		body              []byte
		contentType, name string
	}
	files := map[string]file{
		SharedRootPEMPath: {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), "application/x-pem-file", "gatehouse-root.pem"},
		// application/x-x509-ca-cert is what Android and iOS offer to
		// install as a CA.
		SharedRootDERPath: {root.Raw, "application/x-x509-ca-cert", "gatehouse-root.crt"},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok || !share() {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Content-Disposition", `attachment; filename="`+f.name+`"`)
		h.Set("X-Content-Type-Options", "nosniff")
		// The root changes only when replaced by hand; revalidate anyway.
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Length", fmt.Sprint(len(f.body)))
		if r.Method == http.MethodGet {
			w.Write(f.body)
		}
	})
}

// LocalIssuer returns what a CA built on the local CA needs (the ACME
// server of acme_server): its root, and a func returning the current
// intermediate (alone, as the chain to send below a leaf) and its key.
// The func is safe for concurrent use and starts the intermediate's
// rotation when it is due, as a handshake does, so a long-running server
// never signs with a stale one.
func (m *Manager) LocalIssuer() (root *x509.Certificate, current func() ([]*x509.Certificate, crypto.Signer, error)) {
	return m.ca.root, func() ([]*x509.Certificate, crypto.Signer, error) {
		inter, key := m.ca.intermediate(m.ca.now())
		if inter == nil || key == nil {
			return nil, nil, errors.New("the local CA has no intermediate")
		}
		return []*x509.Certificate{inter}, key, nil
	}
}
