package tlsmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"github.com/caddyserver/certmagic"
)

// certmagicEngine obtains and renews certificates with certmagic, without
// its package globals: its own Cache, Config and ACMEIssuer. certmagic's
// Cache owns renewal (ARI where the CA offers it); the obtainer owns the
// first issuance of each host.
type certmagicEngine struct {
	logger *slog.Logger
	cache  *certmagic.Cache
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
	obt    *obtainer
	// policies holds one Config per distinct issuance policy (issuers.go);
	// cfg is the one of the global policy, issuer its first issuer.
	policies policyConfigs
	// notify, when set, also receives every event (the inventory).
	notify func(ctx context.Context, event string, data map[string]any)
	// reported holds the names (keys, values unused) whose renewal
	// failure certmagic reported with a cert_failed event, until the
	// renewal job's own failure comes in: the job must not report it
	// again.
	reported sync.Map
}

func newCertmagicEngine(s acmeSettings, opts options, logger *slog.Logger) (*certmagicEngine, error) {
	e := &certmagicEngine{logger: logger}
	zl := newWatchingZapLogger(logger, e.renewalJobFailed)
	e.cache = certmagic.NewCache(certmagic.CacheOptions{
		// The Cache asks for a certificate's Config at each maintenance
		// pass: the one of its host's issuance policy. e.cfg is set
		// below, before any certificate can be cached (only the obtain
		// loops cache them, and they start later).
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			return e.configFor(c.Names...), nil
		},
		RenewCheckInterval: opts.renewCheckInterval,
		Logger:             zl,
	})
	e.policies = policyConfigs{settings: s, logger: logger, zap: zl, onEvent: e.onEvent, cache: e.cache}
	global := &issuancePolicy{Issuers: globalIssuers(s.acme), DNS: s.acme.DNS, KeyType: s.acme.KeyType}
	var err error
	if e.cfg, err = e.policies.get(global); err != nil {
		return nil, err
	}
	e.issuer = unwrapIssuer(e.cfg.Issuers[0])
	e.obt = newObtainer(logger, opts.backoffBase, opts.backoffMax, e.obtain, e.forget)
	return e, nil
}

// obtain loads the certificate of host from storage, or obtains it, and
// hands it to the Cache for renewal. ManageSync does not retry by itself;
// the obtainer does.
func (e *certmagicEngine) obtain(ctx context.Context, host string) error {
	// certmagic's error already names the host and the step.
	return e.configFor(host).ManageSync(ctx, []string{host})
}

// renewalJobFailed reports a renewal by certmagic's maintenance that
// failed without a cert_failed event, as one: storage that is read-only
// or full fails it before an order (certmagic's storage check, its lock)
// or after (saving the new Certificate), and the inventory, the events
// and the log must show that as they show a CA's refusal. The old
// Certificate stays in the Cache, and certmagic retries on its schedule.
func (e *certmagicEngine) renewalJobFailed(names []string, cause string) {
	for _, name := range names {
		if _, done := e.reported.LoadAndDelete(name); done {
			continue
		}
		var issuers []string
		for _, iss := range e.configFor(name).Issuers {
			issuers = append(issuers, iss.IssuerKey())
		}
		_ = e.onEvent(context.Background(), "cert_failed", map[string]any{
			"renewal": true, "identifier": name, "issuers": issuers, "error": errors.New(cause),
		})
		e.reported.Delete(name)
	}
}

// forget removes hosts from the Cache, which stops their renewal. Their
// files stay in storage, ready if the host comes back.
func (e *certmagicEngine) forget(hosts []string) {
	subjects := make([]certmagic.SubjectIssuer, len(hosts))
	for i, h := range hosts {
		subjects[i] = certmagic.SubjectIssuer{Subject: h}
	}
	e.cache.RemoveManaged(subjects)
}

// onEvent logs certificate life-cycle events in gatehouse's own words.
func (e *certmagicEngine) onEvent(ctx context.Context, event string, data map[string]any) error {
	if e.notify != nil {
		e.notify(ctx, event, data)
	}
	host, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch {
	case event == "cert_obtaining" && renewal:
		e.reported.Delete(host)
	case event == "cert_failed" && renewal:
		e.reported.Store(host, true)
	}
	switch event {
	case "cert_obtained":
		issuer, _ := data["issuer"].(string)
		msg := "certificate obtained"
		if renewal, _ := data["renewal"].(bool); renewal {
			msg = "certificate renewed"
		}
		e.logger.LogAttrs(ctx, slog.LevelInfo, msg, slog.String("host", host), slog.String("issuer", issuer))
	case "cert_failed":
		// A failed first issuance is logged by the obtainer, which also
		// says when it retries; renewals are certmagic's, so log them here.
		if renewal, _ := data["renewal"].(bool); renewal {
			err, _ := data["error"].(error)
			e.logger.LogAttrs(ctx, slog.LevelError, "renewing certificate failed", slog.String("host", host),
				slog.Any("issuers", data["issuers"]), slog.Any("error", err))
		}
	}
	return nil
}

func (e *certmagicEngine) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return e.cfg.GetCertificateWithContext(ctx, hello)
}

func (e *certmagicEngine) handleHTTP(w http.ResponseWriter, r *http.Request) bool {
	return e.policies.handleHTTP(w, r)
}

func (e *certmagicEngine) manage(hosts []string) { e.obt.set(hosts) }

// close stops the obtain loops, then the Cache's maintenance goroutine.
func (e *certmagicEngine) close() error {
	e.obt.stop()
	e.cache.Stop()
	return nil
}
