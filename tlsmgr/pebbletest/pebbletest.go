package pebbletest

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// DefaultValidity is the lifetime of issued certificates when
// [Options.Validity] is zero, as for Let's Encrypt's classic profile.
const DefaultValidity = 90 * 24 * time.Hour

// Options configures a CA. The zero value starts a CA on a random port whose
// HTTP-01 and TLS-ALPN-01 validations cannot succeed (they dial port 0).
type Options struct {
	// HTTPPort is the port on 127.0.0.1 where Pebble's validation authority
	// fetches HTTP-01 responses: the HTTP listener of the program under test.
	HTTPPort int
	// TLSPort is the port on 127.0.0.1 where Pebble's validation authority
	// performs TLS-ALPN-01 handshakes: the TLS listener of the program under
	// test.
	TLSPort int
	// Validity is the lifetime of issued certificates, in whole seconds
	// (Pebble's default profile validityPeriod); NotAfter-NotBefore is one
	// second less. Zero or negative means DefaultValidity; a fraction of a
	// second is rounded up.
	Validity time.Duration
	// Addr is the host:port the ACME directory server listens on. Default
	// "127.0.0.1:0", a random port. A test can reserve an address with
	// [FreePort], configure the program under test with it and start the CA
	// later to simulate an unreachable CA. The host must be 127.0.0.1 or
	// ::1 (localhost resolves to one of them): [CA.DirectoryURL] holds the
	// listener's IP address, and the server's certificate names only those
	// two and example.com.
	Addr string
	// Resolver, when set, is the host:port of the DNS server Pebble's
	// validation authority asks instead of the built-in resolver: a real
	// authoritative server such as BIND, for DNS-01 tests that change
	// records through the server's own update protocol. Without the
	// built-in resolver Pebble resolves every name, HTTP-01 and
	// TLS-ALPN-01 ones included, through this server. [CA.DNSAddr] and
	// [CA.AddTXT] still work but Pebble no longer reads them.
	Resolver string
	// Profiles adds ACME profiles (RFC draft "ACME Profiles", Pebble's
	// profiles), by name, each issuing certificates valid this long (whole
	// seconds, as Validity). The "default" profile always exists. An
	// order naming no profile gets a random one, as in Pebble, so a test
	// that adds profiles should name one in every order or give them all
	// the same validity.
	Profiles map[string]time.Duration
	// ARIRetryAfter, when positive, replaces the Retry-After header of
	// the ACME Renewal Information endpoint (Pebble says six hours), so a
	// client that honours it asks again this soon and sees a window set
	// with [CA.SetRenewalWindow] within a test.
	ARIRetryAfter time.Duration
	// EAB, when set, makes the CA require an external account binding
	// (RFC 8555 §7.3.4) on every new account, as ZeroSSL does, and
	// accept these keys: key ID -> base64url (unpadded) HMAC key.
	EAB map[string]string
	// BadNonces, when positive, is the percentage of good nonces this CA
	// rejects with badNonce (Pebble's PEBBLE_WFE_NONCEREJECT, whose
	// default is 5), whatever the environment says, so a test can exercise
	// an ACME client's retry while others run without spurious errors.
	// [CA.BadNonces] counts the rejections.
	BadNonces int
}

// CA is a running Pebble ACME CA with its DNS resolver. Its methods are safe
// for concurrent use.
type CA struct {
	srv         *httptest.Server
	dns         *resolver
	db          *db.MemoryStore
	ca          *ca.CAImpl
	log         *testLogWriter
	rootFile    string
	orders      atomic.Int64
	badNonces   atomic.Int64
	ariRequests atomic.Int64
	// downAtFinalize arms DownAtFinalize; down is set while the CA acts
	// as gone, and refused counts the requests it dropped meanwhile.
	downAtFinalize atomic.Bool
	down           atomic.Bool
	refused        atomic.Int64
	closeOnce      sync.Once
	t              testing.TB // whose Cleanup closes the CA
	dirURL         string
	orderPath      string // path of Pebble's newOrder resource, read from its directory
	ariPath        string // path prefix of Pebble's renewalInfo resource
	noncePath      string // path of Pebble's newNonce resource
	issuerPool     *x509.CertPool
	// lockOrder keeps Pebble v2.10.3 from deadlocking: its authorization
	// handler holds the authorization's lock while it reads the account
	// (the store's read lock), and a new order holds the store's read
	// lock while it reads each authorization's; with a certificate being
	// stored in between (a writer waiting on the store), each waits on
	// the other for ever. Authorization requests take it exclusively,
	// new orders shared.
	lockOrder sync.RWMutex

	// mu guards the fields below.
	mu sync.Mutex
	// challenges holds the IDs of the challenges clients asked the CA to
	// validate, in the order first asked.
	challenges []string
	// limitOrders is how many more new-order requests to refuse as rate
	// limited, until limitUntil.
	limitOrders int
	limitUntil  time.Time
	// holds arms HoldFinalize and HoldRenewalInfo, by the kind of
	// request held.
	holds map[string]hold
}

// envDefaults are the Pebble settings Start applies when they are unset.
var envDefaults = []struct{ name, value string }{
	{"PEBBLE_VA_NOSLEEP", "1"},
	{"PEBBLE_WFE_NONCEREJECT", "0"},
	{"PEBBLE_AUTHZREUSE", "0"},
}

// envMu serialises setting envDefaults and constructing Pebble's VA and
// WFE, which read them: os.Setenv is safe for concurrent use, but the
// check-then-set and a CA's own override must not interleave.
var envMu sync.Mutex

// setEnvDefaults applies envDefaults; envMu must be held.
func setEnvDefaults() {
	for _, e := range envDefaults {
		if os.Getenv(e.name) == "" {
			// Not t.Setenv: it forbids parallel tests, and the value is
			// only read while constructing the CA.
			os.Setenv(e.name, e.value)
		}
	}
}

// Start starts a CA and its DNS resolver and registers t.Cleanup to stop
// them. It fails the test if anything cannot be started.
func Start(t testing.TB, opts Options) *CA {
	t.Helper()

	validity := opts.Validity
	if validity <= 0 {
		validity = DefaultValidity
	}
	seconds := wholeSeconds(validity)
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}

	c := &CA{t: t, log: newTestLogWriter(t)}
	t.Cleanup(c.Close)
	logger := log.New(c.log, "pebble ", log.Lmicroseconds)

	var err error
	c.dns, err = startResolver(logger)
	if err != nil {
		t.Fatalf("pebbletest: starting DNS resolver: %v", err)
	}

	c.db = db.NewMemoryStore()
	profiles := map[string]ca.Profile{
		"default": {Description: "pebbletest default profile", ValidityPeriod: seconds},
	}
	for name, d := range opts.Profiles {
		if name == "default" {
			t.Fatalf("pebbletest: profile %q is built in; set Options.Validity instead", name)
		}
		if d <= 0 {
			d = DefaultValidity
		}
		profiles[name] = ca.Profile{Description: "pebbletest profile " + name, ValidityPeriod: wholeSeconds(d)}
	}
	resolverAddr := c.dns.addr
	if opts.Resolver != "" {
		resolverAddr = opts.Resolver
	}
	// ECDSA keys for the root and intermediate: much faster to generate
	// than RSA. One root, one intermediate, no OCSP.
	c.ca = ca.New(logger, c.db, "", "ecdsa", 0, 1, profiles)
	for id, key := range opts.EAB {
		if err := c.db.AddExternalAccountKeyByID(id, key); err != nil {
			t.Fatalf("pebbletest: adding EAB key %q: %v", id, err)
		}
	}
	h := newPebble(logger, c.db, c.ca, opts, resolverAddr)

	c.orderPath, c.ariPath, c.noncePath, err = directoryPaths(h)
	if err != nil {
		t.Fatalf("pebbletest: reading Pebble's directory: %v", err)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("pebbletest: listening for the ACME directory server: %v", err)
	}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, finalizePath) {
			c.holdRequest(holdFinalize, r)
			if c.downAtFinalize.CompareAndSwap(true, false) {
				c.down.Store(true)
			}
		}
		if c.down.Load() {
			c.refused.Add(1)
			// Closes the connection without a response, as a CA
			// whose process died mid-request.
			panic(http.ErrAbortHandler)
		}
		isARI := r.Method == http.MethodGet && c.ariPath != "" && strings.HasPrefix(r.URL.Path, c.ariPath)
		if isARI {
			c.holdRequest(holdARI, r)
			c.ariRequests.Add(1)
		}
		if opts.ARIRetryAfter > 0 && isARI {
			secs := strconv.Itoa(int(max(1, wholeSeconds(opts.ARIRetryAfter))))
			h.ServeHTTP(&retryAfterWriter{ResponseWriter: rw, value: secs}, r)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == c.orderPath && c.refuseOrder(rw, h) {
			return
		}
		if r.Method == http.MethodPost {
			switch {
			case r.URL.Path == c.orderPath:
				c.lockOrder.RLock()
				defer c.lockOrder.RUnlock()
			case strings.HasPrefix(r.URL.Path, authzPath):
				c.lockOrder.Lock()
				defer c.lockOrder.Unlock()
			}
		}
		sw := &statusWriter{ResponseWriter: rw}
		h.ServeHTTP(sw, r)
		switch {
		case sw.badNonce:
			c.badNonces.Add(1)
		case r.Method != http.MethodPost || sw.status != http.StatusOK && sw.status != http.StatusCreated:
		case r.URL.Path == c.orderPath && sw.status == http.StatusCreated:
			c.orders.Add(1)
		case strings.HasPrefix(r.URL.Path, challengePath):
			c.noteChallenge(strings.TrimPrefix(r.URL.Path, challengePath))
		}
	}))
	c.srv.Listener.Close()
	c.srv.Listener = ln
	c.srv.Config.ErrorLog = log.New(c.log, "pebbletest directory server: ", 0)
	c.srv.StartTLS()
	c.dirURL = c.srv.URL + wfe.DirectoryPath

	c.issuerPool = x509.NewCertPool()
	for i := range c.ca.GetNumberOfRootCerts() {
		c.issuerPool.AddCert(c.ca.GetRootCert(i).Cert)
	}

	c.rootFile = filepath.Join(t.TempDir(), "pebble-client-root.pem")
	root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
	if err := os.WriteFile(c.rootFile, root, 0o600); err != nil {
		t.Fatalf("pebbletest: writing client root: %v", err)
	}
	return c
}

// newPebble builds Pebble's validation authority and web front end and
// returns the front end's handler. Both read their settings from the
// environment when constructed, hence envMu.
func newPebble(logger *log.Logger, store *db.MemoryStore, authority *ca.CAImpl, opts Options, resolverAddr string) http.Handler {
	envMu.Lock()
	defer envMu.Unlock()
	setEnvDefaults()
	if opts.BadNonces > 0 {
		prev := os.Getenv(nonceRejectEnv)
		os.Setenv(nonceRejectEnv, strconv.Itoa(opts.BadNonces))
		defer os.Setenv(nonceRejectEnv, prev)
	}
	v := va.New(logger, opts.HTTPPort, opts.TLSPort, false, resolverAddr, store)
	w := wfe.New(logger, store, v, authority, nil, false, len(opts.EAB) > 0, 0, 0)
	return w.Handler()
}

// nonceRejectEnv is the variable Pebble reads its badNonce percentage from.
const nonceRejectEnv = "PEBBLE_WFE_NONCEREJECT"

// finalizePath is the path prefix of Pebble's order finalize resources
// (unexported in package wfe): a POST there asks for the certificate.
const finalizePath = "/finalize-order/"

// authzPath is the path prefix of Pebble's authorization resources
// (unexported in package wfe).
const authzPath = "/authZ/"

// challengePath is the path prefix of Pebble's challenge resources
// (unexported in package wfe): a POST there asks the CA to validate one.
const challengePath = "/chalZ/"

// wholeSeconds rounds d up to whole seconds, at least one: Pebble's
// validity periods are in seconds.
func wholeSeconds(d time.Duration) uint64 {
	return max(1, uint64((d+time.Second-1)/time.Second))
}

// directoryPaths asks Pebble's directory for the paths of its newOrder,
// renewalInfo and newNonce resources, which the wfe package does not
// export.
func directoryPaths(h http.Handler) (order, ari, nonce string, err error) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+wfe.DirectoryPath, nil)
	req.Header.Set("User-Agent", "pebbletest") // Pebble rejects requests without one
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return "", "", "", fmt.Errorf("GET %s: status %d", wfe.DirectoryPath, rec.Code)
	}
	var dir struct {
		NewOrder    string `json:"newOrder"`
		RenewalInfo string `json:"renewalInfo"`
		NewNonce    string `json:"newNonce"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &dir); err != nil {
		return "", "", "", fmt.Errorf("decoding directory: %w", err)
	}
	u, err := url.Parse(dir.NewOrder)
	if err != nil || u.Path == "" {
		return "", "", "", fmt.Errorf("bad newOrder URL %q", dir.NewOrder)
	}
	n, err := url.Parse(dir.NewNonce)
	if err != nil || n.Path == "" {
		return "", "", "", fmt.Errorf("bad newNonce URL %q", dir.NewNonce)
	}
	if a, err := url.Parse(dir.RenewalInfo); err == nil && dir.RenewalInfo != "" {
		ari = strings.TrimSuffix(a.Path, "/") + "/"
	}
	return u.Path, ari, n.Path, nil
}

// retryAfterWriter replaces the Retry-After header of a response.
type retryAfterWriter struct {
	http.ResponseWriter
	value string
	done  bool
}

func (w *retryAfterWriter) WriteHeader(code int) {
	if !w.done {
		w.done = true
		if w.Header().Get("Retry-After") != "" {
			w.Header().Set("Retry-After", w.value)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *retryAfterWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// statusWriter records the status code a handler sends, and whether the
// response is a badNonce problem.
type statusWriter struct {
	http.ResponseWriter
	status   int
	badNonce bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	// Pebble writes a problem document in one Write.
	if w.status == http.StatusBadRequest && strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") &&
		strings.Contains(string(b), badNonceType) {
		w.badNonce = true
	}
	return w.ResponseWriter.Write(b)
}

const badNonceType = "urn:ietf:params:acme:error:badNonce"

// DirectoryURL returns the ACME directory URL, https://127.0.0.1:PORT/dir,
// with the IP address and port the directory server listens on.
func (c *CA) DirectoryURL() string { return c.dirURL }

// ClientRootFile returns the path of a PEM file (in t.TempDir()) holding the
// root that signs the directory server's TLS certificate: what an ACME
// client must trust to talk to the CA (gatehouse's acme.ca_root).
func (c *CA) ClientRootFile() string { return c.rootFile }

// ClientRoots returns a new pool holding the root that signs the directory
// server's TLS certificate; see [CA.ClientRootFile].
func (c *CA) ClientRoots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.srv.Certificate())
	return p
}

// HTTPClient returns an HTTP client that trusts the directory server, for
// ACME clients in tests (acme.Client.HTTPClient).
func (c *CA) HTTPClient() *http.Client { return c.srv.Client() }

// IssuerRoots returns a new pool holding the root(s) that issued
// certificates chain to, as served by Pebble's management API at /roots/0.
// Pebble generates them afresh for every CA. Issued chains include the
// intermediate, so verifying against this pool needs no extra certificates.
func (c *CA) IssuerRoots() *x509.CertPool { return c.issuerPool.Clone() }

// IssuerRootsPEM returns IssuerRoots as PEM, for programs that read roots
// from a file.
func (c *CA) IssuerRootsPEM() []byte {
	var b []byte
	for i := range c.ca.GetNumberOfRootCerts() {
		b = append(b, c.ca.GetRootCert(i).PEM()...)
	}
	return b
}

// Orders reports how many new-order requests the CA has accepted (answered
// with 201 Created). Requests it rejected, for example for a bad nonce, do
// not count.
func (c *CA) Orders() int { return int(c.orders.Load()) }

// Revoked reports whether the CA has revoked the certificate with this
// serial number (issued by it through ACME revokeCert).
func (c *CA) Revoked(serial *big.Int) bool {
	_, ok := c.RevocationReason(serial)
	return ok
}

// RevocationReason returns the RFC 5280 reason code the certificate with
// this serial number was revoked with (0 when the request named none),
// and false when the CA has not revoked it.
func (c *CA) RevocationReason(serial *big.Int) (int, bool) {
	rc := c.db.GetRevokedCertificateBySerial(serial)
	if rc == nil {
		return 0, false
	}
	if rc.Reason == nil {
		return 0, true
	}
	return int(*rc.Reason), true
}

// SetRenewalWindow makes the CA's ACME Renewal Information (RFC 9773)
// endpoint suggest renewing the certificate with this serial number between
// start and end, instead of Pebble's default (24 hours either side of two
// thirds of the certificate's lifetime, clamped to it; now if revoked). It
// fails if the CA never issued such a certificate.
func (c *CA) SetRenewalWindow(serial *big.Int, start, end time.Time) error {
	var info struct {
		SuggestedWindow struct {
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"suggestedWindow"`
	}
	info.SuggestedWindow.Start = start.UTC()
	info.SuggestedWindow.End = end.UTC()
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return c.db.SetARIResponse(serial, string(b))
}

// DNSAddr returns the address (127.0.0.1:PORT, UDP and TCP) of the CA's DNS
// resolver, for ACME clients that check DNS-01 propagation themselves. It
// answers A 127.0.0.1 for every name, no AAAA, the TXT records set with
// [CA.AddTXT], and an SOA for every two-label name, so that example.test. is
// the zone of _acme-challenge.example.test.; other queries get an empty
// NOERROR answer.
func (c *CA) DNSAddr() string { return c.dns.addr }

// AddTXT adds value to the TXT records of name (with or without the final
// dot, any case), for DNS-01 challenges. A name can hold several values, as
// _acme-challenge.example.test does when example.test and *.example.test are
// validated together.
func (c *CA) AddTXT(name, value string) { c.dns.addTXT(name, value) }

// RemoveTXT removes value from the TXT records of name.
func (c *CA) RemoveTXT(name, value string) { c.dns.removeTXT(name, value) }

// ClearTXT removes every TXT record of name.
func (c *CA) ClearTXT(name string) { c.dns.clearTXT(name) }

// Close stops the directory server and the DNS resolver and silences
// Pebble's log. It is called by t.Cleanup; calling it earlier makes the CA
// unreachable, and later calls do nothing. Validations already under way may
// still run for up to Pebble's 15-second timeout, but can no longer resolve
// names. Pebble's validation authority has no Stop, so each CA leaves one
// idle goroutine behind until the test binary exits.
func (c *CA) Close() {
	c.closeOnce.Do(func() {
		if c.srv != nil {
			// Close, not CloseClientConnections alone: it also waits for
			// handlers in flight, but not for ever: a handler stuck in
			// Pebble fails the test instead of hanging it.
			closed := make(chan struct{})
			go func() {
				c.srv.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-time.After(closeWait):
				c.t.Errorf("pebbletest: Pebble's handlers still run %s after Close (a deadlock in Pebble?):\n%s", closeWait, allStacks())
			}
		}
		if c.dns != nil {
			c.dns.close()
		}
		c.log.close()
	})
}

// closeWait bounds how long Close waits for Pebble's handlers.
const closeWait = 30 * time.Second

// allStacks is every goroutine's stack.
func allStacks() []byte {
	b := make([]byte, 1<<20)
	return b[:runtime.Stack(b, true)]
}

// testLogWriter sends Pebble's log lines to t.Log under -v and discards them
// otherwise. It drops lines written after close, because Pebble's
// validation goroutines outlive the test and t.Log panics once it is done.
type testLogWriter struct {
	mu     sync.Mutex // guards t and closed, and serialises calls to t.Log
	t      testing.TB
	closed bool
}

func newTestLogWriter(t testing.TB) *testLogWriter {
	return &testLogWriter{t: t}
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	if !testing.Verbose() {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

var _ io.Writer = (*testLogWriter)(nil)
