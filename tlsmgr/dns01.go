package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/providers/dns/cloudflare"
	"github.com/go-acme/lego/v5/providers/dns/digitalocean"
	"github.com/go-acme/lego/v5/providers/dns/dnsupdate"
	"github.com/go-acme/lego/v5/providers/dns/exec"
	"github.com/go-acme/lego/v5/providers/dns/httpreq"
	"github.com/go-acme/lego/v5/providers/dns/route53"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"
)

// dnsProvider is what a lego DNS provider does: put the TXT record of a
// DNS-01 challenge in place and take it away again.
type dnsProvider interface {
	Present(ctx context.Context, domain, token, keyAuth string) error
	CleanUp(ctx context.Context, domain, token, keyAuth string) error
}

// defaultPollInterval is how often the propagation check asks the
// resolvers when the provider does not say.
const defaultPollInterval = 2 * time.Second

// dnsSolver adapts a lego DNS provider into the acmez.Solver that
// certmagic's ACMEIssuer.DNS01Solver takes, with a propagation check of its
// own (the acmez.Waiter): certmagic's DNS01Solver wants a libdns provider,
// and lego's own solver is not used by certmagic.
//
// Several challenges for the same record name (example.com and
// *.example.com both answer at _acme-challenge.example.com) are solved one
// after the other: some providers, RFC 2136 among them, replace the whole
// record set when they present, which would remove the other challenge's
// value. gatehouse orders one name per certificate, so one order never
// waits for itself.
type dnsSolver struct {
	logger   *slog.Logger
	provider dnsProvider
	name     string // provider name, for logs and errors
	// timeout bounds the propagation wait; interval spaces the checks.
	timeout, interval time.Duration
	// resolvers are asked for the TXT record (host:port, recursion
	// desired); empty means the system's.
	resolvers []string
}

// recordLocks makes challenges on one record name take turns, across every
// solver of the process (two Sites may name the same zone).
type recordLocks struct {
	// mu guards busy and held.
	mu sync.Mutex
	// busy holds a channel per record name while a challenge uses it;
	// it is closed when that challenge is cleaned up.
	busy map[string]chan struct{}
	// held maps a challenge token to the record name it holds.
	held map[string]string
}

var records = &recordLocks{busy: map[string]chan struct{}{}, held: map[string]string{}}

var (
	_ acmez.Solver = (*dnsSolver)(nil)
	_ acmez.Waiter = (*dnsSolver)(nil)
)

// newDNSSolver builds the provider that d names from its credentials.
func newDNSSolver(d *config.DNS, logger *slog.Logger) (*dnsSolver, error) {
	p, interval, err := newDNSProvider(d)
	if err != nil {
		return nil, fmt.Errorf("creating DNS provider %s: %w", d.Provider, err)
	}
	timeout := d.PropagationTimeout
	if timeout <= 0 {
		timeout = config.DefaultPropagationTimeout
	}
	if interval <= 0 {
		interval = defaultPollInterval
	}
	if len(d.Resolvers) > 0 {
		// lego's providers find zones and follow CNAMEs of
		// _acme-challenge names through its process-wide client;
		// validation makes sure every resolvers list is the same.
		dns01.SetDefaultClient(dns01.NewClient(&dns01.Options{RecursiveNameservers: d.Resolvers}))
	}
	return &dnsSolver{
		logger: logger, provider: p, name: d.Provider,
		timeout: timeout, interval: interval, resolvers: slices.Clone(d.Resolvers),
	}, nil
}

// newDNSProvider maps the credentials of d onto the Config of the lego
// provider d names, key by key (config.DNSProviders lists the keys), and
// returns the provider with its polling interval. lego's defaults, which
// also read its environment variables, fill what the credentials leave
// out.
func newDNSProvider(d *config.DNS) (dnsProvider, time.Duration, error) {
	c := d.Credentials
	atoi := func(key string, def int) (int, error) {
		if c[key] == "" {
			return def, nil
		}
		n, err := strconv.Atoi(c[key])
		if err != nil {
			return 0, fmt.Errorf("credentials.%s: %q is not a whole number", key, c[key])
		}
		return n, nil
	}
	set := func(dst *string, key string) {
		if v, ok := c[key]; ok && v != "" {
			*dst = v
		}
	}
	var err error
	switch d.Provider {
	case "rfc2136":
		cfg := dnsupdate.NewDefaultConfig()
		cfg.Nameserver = c["nameserver"]
		set(&cfg.TSIGKey, "tsig_key")
		set(&cfg.TSIGSecret, "tsig_secret")
		set(&cfg.TSIGFile, "tsig_file")
		// HMAC-SHA256 unless told otherwise: lego's default is SHA-1.
		cfg.TSIGAlgorithm = dns.HmacSHA256
		set(&cfg.TSIGAlgorithm, "tsig_algorithm")
		if z := c["zone"]; z != "" {
			cfg.Zones = []string{z}
		}
		if cfg.TTL, err = atoi("ttl", cfg.TTL); err != nil {
			return nil, 0, err
		}
		cfg.PropagationTimeout = d.PropagationTimeout
		p, err := dnsupdate.NewDNSProviderConfig(cfg)
		if err != nil {
			return nil, 0, err
		}
		return p, cfg.PollingInterval, nil
	case "cloudflare":
		cfg := cloudflare.NewDefaultConfig()
		set(&cfg.AuthToken, "api_token")
		set(&cfg.ZoneToken, "zone_token")
		set(&cfg.AuthEmail, "email")
		set(&cfg.AuthKey, "api_key")
		set(&cfg.BaseURL, "base_url")
		if cfg.TTL, err = atoi("ttl", cfg.TTL); err != nil {
			return nil, 0, err
		}
		cfg.PropagationTimeout = d.PropagationTimeout
		p, err := cloudflare.NewDNSProviderConfig(cfg)
		if err != nil {
			return nil, 0, err
		}
		return p, cfg.PollingInterval, nil
	case "route53":
		cfg := route53.NewDefaultConfig()
		set(&cfg.AccessKeyID, "access_key_id")
		set(&cfg.SecretAccessKey, "secret_access_key")
		set(&cfg.SessionToken, "session_token")
		set(&cfg.Region, "region")
		set(&cfg.HostedZoneID, "hosted_zone_id")
		set(&cfg.AssumeRoleArn, "assume_role_arn")
		set(&cfg.ExternalID, "external_id")
		if v := c["private_zone"]; v != "" {
			if cfg.PrivateZone, err = strconv.ParseBool(v); err != nil {
				return nil, 0, fmt.Errorf("credentials.private_zone: %q is not true or false", v)
			}
		}
		if cfg.MaxRetries, err = atoi("max_retries", cfg.MaxRetries); err != nil {
			return nil, 0, err
		}
		if cfg.TTL, err = atoi("ttl", cfg.TTL); err != nil {
			return nil, 0, err
		}
		cfg.PropagationTimeout = d.PropagationTimeout
		p, err := route53.NewDNSProviderConfig(cfg)
		if err != nil {
			return nil, 0, err
		}
		return p, cfg.PollingInterval, nil
	case "digitalocean":
		cfg := digitalocean.NewDefaultConfig()
		set(&cfg.AuthToken, "auth_token")
		set(&cfg.BaseURL, "base_url")
		if cfg.TTL, err = atoi("ttl", cfg.TTL); err != nil {
			return nil, 0, err
		}
		cfg.PropagationTimeout = d.PropagationTimeout
		p, err := digitalocean.NewDNSProviderConfig(cfg)
		if err != nil {
			return nil, 0, err
		}
		return p, cfg.PollingInterval, nil
	case "exec":
		cfg := exec.NewDefaultConfig()
		cfg.Program = c["program"]
		set(&cfg.Mode, "mode")
		cfg.PropagationTimeout = d.PropagationTimeout
		p, err := exec.NewDNSProviderConfig(cfg)
		if err != nil {
			return nil, 0, err
		}
		return p, cfg.PollingInterval, nil
	case "httpreq":
		cfg := httpreq.NewDefaultConfig()
		u, err := url.Parse(c["endpoint"])
		if err != nil || u.Host == "" {
			return nil, 0, fmt.Errorf("credentials.endpoint: %q is not an absolute URL", c["endpoint"])
		}
		cfg.Endpoint = u
		set(&cfg.Mode, "mode")
		set(&cfg.Username, "username")
		set(&cfg.Password, "password")
		cfg.PropagationTimeout = d.PropagationTimeout
		p, err := httpreq.NewDNSProviderConfig(cfg)
		if err != nil {
			return nil, 0, err
		}
		return p, cfg.PollingInterval, nil
	default:
		return newLegoEnvProvider(d, legoProviders)
	}
}

// challengeDomain is the name whose _acme-challenge record answers chal:
// the authorization's identifier, without the "*." a wildcard order's
// identifier never has but a caller might add.
func challengeDomain(chal acme.Challenge) string {
	return strings.TrimPrefix(chal.Identifier.Value, "*.")
}

// recordName is the TXT record name of a DNS-01 challenge for domain.
func recordName(domain string) string {
	return dns.CanonicalName("_acme-challenge." + domain)
}

// Present waits until no other challenge uses the same record name, then
// has the provider create the TXT record.
func (s *dnsSolver) Present(ctx context.Context, chal acme.Challenge) error {
	domain := challengeDomain(chal)
	if err := records.acquire(ctx, recordName(domain), chal.Token); err != nil {
		return err
	}
	if err := s.provider.Present(ctx, domain, chal.Token, chal.KeyAuthorization); err != nil {
		records.release(chal.Token)
		return fmt.Errorf("presenting DNS-01 record for %s through %s: %w", domain, s.name, err)
	}
	s.logger.Debug("DNS-01 record presented", "host", domain, "provider", s.name)
	return nil
}

// Wait polls the resolvers until the TXT record holds the challenge's
// value, or the propagation timeout passes.
func (s *dnsSolver) Wait(ctx context.Context, chal acme.Challenge) error {
	domain := challengeDomain(chal)
	info := dns01.GetChallengeInfo(ctx, domain, chal.KeyAuthorization)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var lastErr error
	for {
		found, err := s.lookupTXT(ctx, info.EffectiveFQDN, info.Value)
		if found {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("the resolvers do not return it yet")
			}
			return fmt.Errorf("waiting for TXT record %s to propagate (propagation_timeout %v): %w", info.EffectiveFQDN, s.timeout, lastErr)
		case <-tick.C:
		}
	}
}

// lookupTXT asks each resolver for the TXT records of name and reports
// whether every one of them returns value.
func (s *dnsSolver) lookupTXT(ctx context.Context, name, value string) (bool, error) {
	servers := s.resolvers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return false, fmt.Errorf("reading system resolvers: %w", err)
		}
		for _, h := range cc.Servers {
			servers = append(servers, joinHostPort(h, cc.Port))
		}
	}
	if len(servers) == 0 {
		return false, errors.New("no DNS resolver to ask")
	}
	client := &dns.Client{Timeout: 5 * time.Second}
	for _, srv := range servers {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
		m.RecursionDesired = true
		r, _, err := client.ExchangeContext(ctx, m, srv)
		if err == nil && r.Truncated {
			tcp := &dns.Client{Net: "tcp", Timeout: client.Timeout}
			r, _, err = tcp.ExchangeContext(ctx, m, srv)
		}
		if err != nil {
			return false, fmt.Errorf("asking %s: %w", srv, err)
		}
		if r.Rcode != dns.RcodeSuccess {
			return false, fmt.Errorf("%s answered %s", srv, dns.RcodeToString[r.Rcode])
		}
		if !hasTXT(r, value) {
			return false, fmt.Errorf("%s does not return the challenge value yet", srv)
		}
	}
	return true, nil
}

// hasTXT reports whether an answer holds a TXT record with value.
func hasTXT(r *dns.Msg, value string) bool {
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok && strings.Join(t.Txt, "") == value {
			return true
		}
	}
	return false
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// CleanUp has the provider remove the TXT record, then lets the next
// challenge for the same name go ahead.
func (s *dnsSolver) CleanUp(ctx context.Context, chal acme.Challenge) error {
	defer records.release(chal.Token)
	domain := challengeDomain(chal)
	if err := s.provider.CleanUp(ctx, domain, chal.Token, chal.KeyAuthorization); err != nil {
		return fmt.Errorf("removing DNS-01 record for %s through %s: %w", domain, s.name, err)
	}
	return nil
}

// acquire waits until record name is free, then marks it used by token.
func (s *recordLocks) acquire(ctx context.Context, name, token string) error {
	for {
		s.mu.Lock()
		ch, busy := s.busy[name]
		if !busy {
			s.busy[name] = make(chan struct{})
			s.held[token] = name
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for another challenge on %s: %w", name, ctx.Err())
		}
	}
}

// release frees the record name token holds, if any.
func (s *recordLocks) release(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.held[token]
	if !ok {
		return
	}
	delete(s.held, token)
	close(s.busy[name])
	delete(s.busy, name)
}
