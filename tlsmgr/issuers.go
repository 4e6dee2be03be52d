package tlsmgr

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// issuancePolicy is how the Certificate of one ACME host is obtained: the
// CAs tried in order, the DNS-01 provider if any, and the key type. Hosts
// with equal policies share one certmagic Config.
type issuancePolicy struct {
	// Issuers are tried in order; each is complete (profile and email
	// already inherited from acme).
	Issuers []config.Issuer `json:"issuers"`
	// DNS, when set, solves DNS-01 and only DNS-01.
	DNS *config.DNS `json:"dns,omitempty"`
	// KeyType is acme.key_type ("" is P-256).
	KeyType string `json:"key_type,omitempty"`
}

// key identifies a policy: equal keys, equal policies.
func (p *issuancePolicy) key() string {
	b, err := json.Marshal(p)
	if err != nil {
		// Only plain strings, slices and maps: Marshal cannot fail.
		panic(fmt.Sprintf("encoding issuance policy: %v", err))
	}
	return string(b)
}

// globalIssuers returns acme.issuers with acme.profile and acme.email
// filled in where an entry leaves them out, or, without a list, the one
// issuer that acme.ca, ca_root, eab, profile and email describe.
func globalIssuers(a config.ACME) []config.Issuer {
	if len(a.Issuers) == 0 {
		ca := a.CA
		if ca == "" {
			ca = certmagic.LetsEncryptProductionCA
		}
		return inherit([]config.Issuer{{CA: ca, CARoot: a.CARoot, EAB: a.EAB, Limits: a.Limits}}, a)
	}
	return inherit(a.Issuers, a)
}

// inherit fills in profile and email from acme where an issuer leaves them
// out, and replaces CA names ("letsencrypt") with their directory URLs.
func inherit(list []config.Issuer, a config.ACME) []config.Issuer {
	out := make([]config.Issuer, len(list))
	for i, is := range list {
		is.CA = config.CADirectory(is.CA)
		if is.Profile == "" {
			is.Profile = a.Profile
		}
		if is.Email == "" {
			is.Email = a.Email
		}
		out[i] = is
	}
	return out
}

// acmePolicies returns the issuance policy of every ACME host of cfg.
// Sites with neither tls.issuers nor tls.dns share the global policy.
func acmePolicies(cfg *config.Config) map[string]*issuancePolicy {
	global := &issuancePolicy{Issuers: globalIssuers(cfg.ACME), DNS: cfg.ACME.DNS, KeyType: cfg.ACME.KeyType}
	out := map[string]*issuancePolicy{}
	for i := range cfg.Sites {
		site := &cfg.Sites[i]
		p := global
		if len(site.TLS.Issuers) > 0 || site.TLS.DNS != nil {
			p = &issuancePolicy{Issuers: global.Issuers, DNS: cfg.DNSFor(site), KeyType: cfg.ACME.KeyType}
			if len(site.TLS.Issuers) > 0 {
				p.Issuers = inherit(site.TLS.Issuers, cfg.ACME)
			}
		}
		for _, raw := range site.Hosts {
			host := normalizeHost(raw)
			if site.TLS.IssuerFor(host) == config.IssuerACME {
				out[host] = p
			}
		}
	}
	return out
}

// policySetter is implemented by engines that obtain each host by its own
// issuance policy (certmagic); Apply hands them the policies before it
// swaps the new table in.
type policySetter interface {
	setPolicies(map[string]*issuancePolicy) error
}

var _ policySetter = (*certmagicEngine)(nil)

// setPolicies builds a Config for every new policy, then makes policies
// the host→Config map. A host whose policy changed keeps its certificate;
// the new policy applies from its next renewal.
func (e *certmagicEngine) setPolicies(policies map[string]*issuancePolicy) error {
	return e.policies.set(policies)
}

// configFor returns the Config of the first of names that has an issuance
// policy (a certificate's names, or a host), else the global one.
func (e *certmagicEngine) configFor(names ...string) *certmagic.Config {
	if hosts := e.policies.hosts.Load(); hosts != nil {
		for _, n := range names {
			if c := (*hosts)[normalizeHost(n)]; c != nil {
				return c
			}
		}
	}
	return e.cfg
}

// policyConfigs keeps one certmagic Config per distinct issuance policy,
// all sharing one Cache and one storage, and the host→Config map.
type policyConfigs struct {
	settings acmeSettings
	logger   *slog.Logger
	zap      *zap.Logger
	onEvent  func(ctx context.Context, event string, data map[string]any) error
	cache    *certmagic.Cache

	// hosts maps each ACME host to its Config; swapped whole by set.
	hosts atomic.Pointer[map[string]*certmagic.Config]

	// mu guards the fields below.
	mu sync.Mutex
	// byKey holds the Configs by issuancePolicy.key(). Configs are never
	// dropped: a reload may bring a policy back, and each is small.
	byKey map[string]*certmagic.Config
	// issuers lists the ACME issuers of every Config, for HTTP-01.
	issuers []*certmagic.ACMEIssuer
	storage certmagic.Storage
	// budget is the rate-limit budget every Issuer draws from, on storage;
	// nil until the first Config is built.
	budget *budget
	// accounts lists the budget accounts of every Config, for listing.
	accounts []budgetAccount
}

// get returns the Config of policy p, building it the first time.
func (pc *policyConfigs) get(p *issuancePolicy) (*certmagic.Config, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.getLocked(p)
}

func (pc *policyConfigs) getLocked(p *issuancePolicy) (*certmagic.Config, error) {
	key := p.key()
	if c := pc.byKey[key]; c != nil {
		return c, nil
	}
	if pc.byKey == nil {
		pc.byKey = map[string]*certmagic.Config{}
		pc.storage = pc.settings.store
		if pc.storage == nil {
			pc.storage = newFileStorage(pc.settings.storage)
		}
		pc.budget = newBudget(pc.storage, pc.logger, nil)
	}
	var solver *dnsSolver
	if p.DNS != nil {
		var err error
		if solver, err = newDNSSolver(p.DNS, pc.logger); err != nil {
			return nil, err
		}
	}
	cfg := certmagic.New(pc.cache, certmagic.Config{
		Storage:   pc.storage,
		Logger:    pc.zap,
		OnEvent:   pc.onEvent,
		KeySource: keySource(p.KeyType),
	})
	var issuers []certmagic.Issuer
	var built []*certmagic.ACMEIssuer
	for _, is := range p.Issuers {
		roots := pc.settings.roots
		if is.CARoot != pc.settings.acme.CARoot {
			var err error
			if roots, err = trustedRoots(is.CARoot); err != nil {
				return nil, fmt.Errorf("building issuer %s: %w", is.CA, err)
			}
		}
		if is.EAB != nil && is.EAB.APIKey != "" {
			eab, err := zeroSSLEAB(pc.storage, pc.settings.zeroSSLAPI, is.EAB.APIKey)
			if err != nil {
				return nil, fmt.Errorf("building issuer %s: %w", is.CA, err)
			}
			is.EAB = &config.EAB{KeyID: eab.KeyID, MACKey: eab.MACKey}
		}
		iss := newIssuer(cfg, pc.settings, is, solver, roots)
		account := newBudgetAccount(is)
		b := pc.budget
		iss.NewAccountFunc = func(ctx context.Context, _ *certmagic.ACMEIssuer, acct acme.Account) (acme.Account, error) {
			if err := b.newAccount(ctx, account); err != nil {
				var be *BudgetError
				if errors.As(err, &be) {
					return acct, err
				}
				pc.logger.WarnContext(ctx, "rate-limit budget not checked; creating the account anyway", "issuer", account.ca, "error", err)
			}
			return acct, nil
		}
		issuers = append(issuers, &budgetIssuer{ACMEIssuer: iss, b: b, account: account, tries: challengeTries(pc.settings, solver)})
		built = append(built, iss)
		if !slices.ContainsFunc(pc.accounts, func(a budgetAccount) bool { return a.issuerKey == account.issuerKey && a.email == account.email }) {
			pc.accounts = append(pc.accounts, account)
		}
	}
	cfg.Issuers = issuers
	pc.byKey[key] = cfg
	pc.issuers = append(pc.issuers, built...)
	return cfg, nil
}

// challengeTries is how many orders one Issue may make: one per challenge
// type acmez can try.
func challengeTries(s acmeSettings, solver *dnsSolver) int {
	if solver != nil {
		return 1
	}
	n := 0
	if s.http01 {
		n++
	}
	if s.tlsALPN01 {
		n++
	}
	return max(n, 1)
}

// budgetState returns the budget and the accounts of every Config built.
func (pc *policyConfigs) budgetState() (*budget, []budgetAccount) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.budget, slices.Clone(pc.accounts)
}

// set builds the Configs of policies, then swaps in the host map. On error
// nothing changes.
func (pc *policyConfigs) set(policies map[string]*issuancePolicy) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	hosts := make(map[string]*certmagic.Config, len(policies))
	// Most hosts share one policy value (acme's); its key is computed once,
	// not once per host.
	byPolicy := map[*issuancePolicy]*certmagic.Config{}
	for host, p := range policies {
		c, ok := byPolicy[p]
		if !ok {
			var err error
			if c, err = pc.getLocked(p); err != nil {
				return fmt.Errorf("issuance policy of %s: %w", host, err)
			}
			byPolicy[p] = c
		}
		hosts[host] = c
	}
	pc.hosts.Store(&hosts)
	return nil
}

// handleHTTP answers an HTTP-01 challenge through whichever issuer started
// it.
func (pc *policyConfigs) handleHTTP(w http.ResponseWriter, r *http.Request) bool {
	pc.mu.Lock()
	issuers := pc.issuers
	pc.mu.Unlock()
	for _, iss := range issuers {
		if iss.HandleHTTPChallenge(w, r) {
			return true
		}
	}
	return false
}

// needsListenerChallenge reports whether some ACME host is validated over
// HTTP-01 or TLS-ALPN-01 rather than DNS-01.
func needsListenerChallenge(policies map[string]*issuancePolicy) bool {
	for _, p := range policies {
		if p.DNS == nil {
			return true
		}
	}
	return false
}

// newIssuer builds the certmagic ACME issuer of one configured CA for cfg,
// on the challenge settings of s. With a DNS solver the issuer answers
// DNS-01 only (certmagic's rule); the Listener-based challenges are then
// not offered.
func newIssuer(cfg *certmagic.Config, s acmeSettings, is config.Issuer, solver *dnsSolver, roots *x509.CertPool) *certmagic.ACMEIssuer {
	tmpl := certmagic.ACMEIssuer{
		CA:                      is.CA,
		Email:                   is.Email,
		Agreed:                  true,
		Profile:                 is.Profile,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    !s.http01,
		DisableTLSALPNChallenge: !s.tlsALPN01,
		// certmagic tries to listen on these; gatehouse's Listeners hold
		// them already, so it dials them, finds them answering and relies
		// on HTTPHandler and GetCertificate (robustTryListen in
		// certmagic's solvers.go). No extra listener is opened.
		ListenHost:     s.listenHost,
		AltHTTPPort:    s.httpPort,
		AltTLSALPNPort: s.httpsPort,
		Logger:         cfg.Logger,
	}
	if tmpl.Email == "" {
		// certmagic asks for an email address on stdin when it has none
		// (and, lacking one, reuses another issuer's, process-wide). A
		// server must never block on a terminal: a blank address is
		// trimmed to "" by certmagic after that check, so the account has
		// no contact, as configured.
		tmpl.Email = " "
	}
	if solver != nil {
		tmpl.DNS01Solver = solver
	}
	if eab := is.EAB; eab != nil {
		tmpl.ExternalAccount = &acme.EAB{KeyID: eab.KeyID, MACKey: eab.MACKey}
	}
	return certmagic.NewACMEIssuer(cfg, tmpl)
}

// keySource returns the key generator for acme.key_type.
func keySource(keyType string) certmagic.KeyGenerator {
	if keyType == "" {
		keyType = config.KeyP256
	}
	return certmagic.StandardKeyGenerator{KeyType: certmagic.KeyType(keyType)}
}

// Delays after a CA answered rateLimited (RFC 8555 §6.7) when it said
// nothing about when to come back, and the longest gatehouse waits even if
// it did: a rate limit is never retried in a tight loop, and a CA that
// names next month is asked again within the week.
const (
	rateLimitDelay    = time.Hour
	maxRateLimitDelay = 7 * 24 * time.Hour
)

// retryAfterRE finds the time in a rate-limit problem's detail, as Let's
// Encrypt words it: "... retry after 2025-01-23 19:29:39 UTC: see ...".
// acmez does not hand over the Retry-After header of a failed request, so
// the detail is all there is.
var retryAfterRE = regexp.MustCompile(`retry after (\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:Z| UTC)?)`)

// rateLimited reports whether err is a CA's rateLimited problem and, if so,
// how long to wait before asking that CA again: until the time the CA
// named, at least rateLimitDelay when it named none, at most
// maxRateLimitDelay.
func rateLimited(err error, now time.Time) (time.Duration, bool) {
	var p acme.Problem
	if !errors.As(err, &p) {
		var pp *acme.Problem
		if !errors.As(err, &pp) || pp == nil {
			return 0, false
		}
		p = *pp
	}
	if p.Type != acme.ProblemTypeRateLimited {
		return 0, false
	}
	d := rateLimitDelay
	if m := retryAfterRE.FindStringSubmatch(p.Detail); m != nil {
		for _, layout := range []string{"2006-01-02 15:04:05 UTC", "2006-01-02T15:04:05Z", "2006-01-02 15:04:05"} {
			if t, err := time.Parse(layout, m[1]); err == nil {
				d = max(t.Sub(now), time.Second)
				break
			}
		}
	}
	return min(d, maxRateLimitDelay), true
}
