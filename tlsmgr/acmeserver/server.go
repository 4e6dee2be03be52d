// Package acmeserver is gatehouse's ACME CA for the machines of a network
// (acme_server): RFC 8555 with HTTP-01, TLS-ALPN-01 and DNS-01 validation,
// revocation and optional External Account Binding, issuing from the
// local CA's intermediate. The protocol is smallstep's
// (github.com/smallstep/certificates' acme and acme/api packages, which
// Caddy's acme_server also serves); this package adds gatehouse's policy in
// front of it (allowed_clients, allowed_names), resolves names for
// validation as gatehouse does (.localhost to loopback, others through the
// configured resolvers), answers ACME Renewal Information (RFC 9773),
// which smallstep lacks, and lists what it issued. It knows no Routes: the
// gateway mounts [Server.Handler] on the HTTPS Listener.
package acmeserver

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/smallstep/certificates/acme"
	"github.com/smallstep/certificates/acme/api"
	acmenosql "github.com/smallstep/certificates/acme/db/nosql"
	steplog "github.com/smallstep/certificates/api/log"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// provisionerName is the one ACME provisioner's name. smallstep puts it in
// every URL after the path prefix; with an empty prefix and this name the
// directory is /acme/directory, as [config.ACMEServerPath] says.
const provisionerName = "acme"

// Options configure a [Server]. They are read once, by [New].
type Options struct {
	// Config is the acme_server block, defaulted and validated (required).
	Config config.ACMEServer
	// Resolvers are the DNS servers (host:port) that names are resolved
	// with for validation; nil means the system's.
	Resolvers []string
	// Root is the local CA's root (required).
	Root *x509.Certificate
	// Issuer returns the current intermediate chain (leaf's parent first)
	// and its key; it is called for every certificate signed, so a
	// rotated intermediate is used at once (required).
	Issuer func() ([]*x509.Certificate, crypto.Signer, error)
	// Dir is the directory of the server's database (accounts, orders,
	// issued and revoked certificates), created 0700 if missing
	// (required).
	Dir string
	// Logger receives what the server does; nil discards.
	Logger *slog.Logger

	// ports, when set, replace the ports validation dials (80 for
	// HTTP-01, 443 for TLS-ALPN-01): tests run their clients on free
	// ports.
	ports *ports
}

// ports are the validation ports a test uses.
type ports struct{ http, tls string }

// Server is a running ACME server. It is safe for concurrent use.
type Server struct {
	host     string
	logger   *slog.Logger
	policy   policy
	db       *issuedDB
	authDB   db.AuthDB
	auth     *authority.Authority
	client   acme.Client
	linker   acme.Linker
	router   http.Handler
	lifetime time.Duration
	// refusedClients and refusedNames count the requests refused by
	// allowed_clients and the orders refused by allowed_names.
	refusedClients, refusedNames atomic.Int64
}

// New opens the database under opts.Dir (waiting at most 5 s for another
// process holding it) and builds the CA. Close releases the database.
func New(opts Options) (_ *Server, err error) {
	c := opts.Config
	if opts.Root == nil || opts.Issuer == nil {
		return nil, errors.New("starting the ACME server: the local CA's root and issuer are required")
	}
	if opts.Dir == "" {
		return nil, errors.New("starting the ACME server: no database directory")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pol, err := newPolicy(c)
	if err != nil {
		return nil, fmt.Errorf("starting the ACME server: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("starting the ACME server: creating %s: %w", opts.Dir, err)
	}
	authDB, err := db.New(&db.Config{Type: "bbolt", DataSource: filepath.Join(opts.Dir, "acme.db")})
	if err != nil {
		return nil, fmt.Errorf("starting the ACME server: opening its database in %s: %w", opts.Dir, err)
	}
	defer func() {
		if err != nil {
			authDB.Shutdown()
		}
	}()
	lifetime := time.Duration(c.Lifetime)
	prov := &provisioner.ACME{
		Type: provisioner.TypeACME.String(),
		Name: provisionerName,
		Challenges: []provisioner.ACMEChallenge{
			provisioner.HTTP_01, provisioner.TLS_ALPN_01, provisioner.DNS_01,
		},
		RequireEAB: len(c.EABKeys) > 0,
		Claims: &provisioner.Claims{
			MinTLSDur:     &provisioner.Duration{Duration: 5 * time.Minute},
			MaxTLSDur:     &provisioner.Duration{Duration: lifetime},
			DefaultTLSDur: &provisioner.Duration{Duration: lifetime},
		},
	}
	auth, err := authority.NewEmbedded(
		authority.WithConfig(&authority.Config{AuthorityConfig: &authority.AuthConfig{Provisioners: provisioner.List{prov}}}),
		authority.WithX509SignerFunc(opts.Issuer),
		authority.WithX509RootCerts(opts.Root),
		authority.WithDatabase(authDB),
		authority.WithQuietInit(),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the ACME server: %w", err)
	}
	nosqlDB, ok := authDB.(nosql.DB)
	if !ok {
		return nil, fmt.Errorf("starting the ACME server: database is a %T, not a nosql.DB", authDB)
	}
	acmeDB, err := acmenosql.New(nosqlDB)
	if err != nil {
		return nil, fmt.Errorf("starting the ACME server: opening its ACME tables: %w", err)
	}
	idb, err := newIssuedDB(acmeDB, nosqlDB, c.EABKeys, logger)
	if err != nil {
		return nil, fmt.Errorf("starting the ACME server: %w", err)
	}
	client, err := newValidationClient(opts.Resolvers, opts.ports)
	if err != nil {
		return nil, fmt.Errorf("starting the ACME server: %w", err)
	}
	r := chi.NewRouter()
	api.Route(r)
	s := &Server{
		host:     strings.ToLower(strings.TrimSuffix(c.Host, ".")),
		logger:   logger,
		policy:   pol,
		db:       idb,
		authDB:   authDB,
		auth:     auth,
		client:   client,
		linker:   acme.NewLinker(c.Host, ""),
		router:   r,
		lifetime: lifetime,
	}
	logger.Info("ACME server ready", "host", c.Host,
		"allowed_names", c.AllowedNames, "allowed_clients", c.AllowedClients, "lifetime", c.Lifetime.String(), "eab", len(c.EABKeys) > 0)
	return s, nil
}

// Close releases the database.
func (s *Server) Close() error {
	if err := s.authDB.Shutdown(); err != nil {
		return fmt.Errorf("closing the ACME server's database: %w", err)
	}
	return nil
}

// Handler serves the ACME endpoints (under [config.ACMEServerPath] of the
// server's host) and passes every other request to next. A client outside
// allowed_clients gets unauthorized, a new order for a name outside
// allowed_names rejectedIdentifier; neither reaches the CA.
func (s *Server) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, config.ACMEServerPath) || requestHost(r) != s.host {
			next.ServeHTTP(w, r)
			return
		}
		client, _ := clientAddr(r)
		if !s.policy.clientAllowed(client) {
			s.refusedClients.Add(1)
			s.logger.WarnContext(r.Context(), "ACME client refused: not in acme_server.allowed_clients", "client", client.String(), "path", r.URL.Path)
			s.problem(w, r, http.StatusForbidden, "unauthorized",
				fmt.Sprintf("client %s is not in acme_server.allowed_clients", client))
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == config.ACMEServerPath+"new-order" {
			refused, err := s.policy.checkOrder(r)
			if err != nil {
				s.problem(w, r, http.StatusBadRequest, "malformed", err.Error())
				return
			}
			if refused != "" {
				s.refusedNames.Add(1)
				s.logger.WarnContext(r.Context(), "ACME order refused: name outside acme_server.allowed_names", "client", client.String(), "detail", refused)
				s.problem(w, r, http.StatusBadRequest, "rejectedIdentifier", refused)
				return
			}
		}
		if id, ok := strings.CutPrefix(r.URL.Path, config.ACMEServerPath+ariPath+"/"); ok {
			s.serveRenewalInfo(w, r, id)
			return
		}
		ctx := acme.NewContext(r.Context(), s.db, s.client, s.linker, nil)
		ctx = authority.NewContext(ctx, s.auth)
		ctx = context.WithValue(ctx, clientKey{}, client)
		ctx = steplog.WithErrorLogger(ctx, func(_ http.ResponseWriter, r *http.Request, err error) {
			s.logger.InfoContext(r.Context(), "ACME request refused", "client", client.String(), "path", r.URL.Path, "error", err)
		})
		r = r.WithContext(ctx)
		if r.Method == http.MethodGet && r.URL.Path == config.ACMEServerPath+"directory" {
			s.serveDirectory(w, r)
			return
		}
		s.router.ServeHTTP(w, r)
	})
}

// problem writes an RFC 8555 problem document of type
// urn:ietf:params:acme:error:TYP, with a fresh nonce so the client can
// go on.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, status int, typ, detail string) {
	if n, err := s.db.CreateNonce(r.Context()); err == nil {
		w.Header().Set("Replay-Nonce", string(n))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	body, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
		Status int    `json:"status"`
	}{"urn:ietf:params:acme:error:" + typ, detail, status})
	w.WriteHeader(status)
	w.Write(body)
}

// requestHost is r's host, lower case, without port or trailing dot.
func requestHost(r *http.Request) string {
	h := r.Host
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

// clientAddr is the address of r's client.
func clientAddr(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// clientKey is the context key of the client address, which the database
// records beside each certificate issued.
type clientKey struct{}

var _ io.Closer = (*Server)(nil)
