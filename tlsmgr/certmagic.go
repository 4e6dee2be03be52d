package tlsmgr

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
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
	// notify, when set, also receives every event (the inventory).
	notify func(ctx context.Context, event string, data map[string]any)
}

func newCertmagicEngine(s acmeSettings, opts options, logger *slog.Logger) (*certmagicEngine, error) {
	e := &certmagicEngine{logger: logger}
	zl := newZapLogger(logger)
	e.cache = certmagic.NewCache(certmagic.CacheOptions{
		// One Config serves every certificate: the Cache asks for it at
		// each maintenance pass. e.cfg is set below, before any
		// certificate can be cached (only the obtain loops cache them,
		// and they start later).
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			return e.cfg, nil
		},
		RenewCheckInterval: opts.renewCheckInterval,
		Logger:             zl,
	})
	e.cfg = certmagic.New(e.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: s.storage},
		Logger:  zl,
		OnEvent: e.onEvent,
	})
	tmpl := certmagic.ACMEIssuer{
		CA:                      s.acme.CA,
		Email:                   s.acme.Email,
		Agreed:                  true,
		TrustedRoots:            s.roots,
		DisableHTTPChallenge:    !s.http01,
		DisableTLSALPNChallenge: !s.tlsALPN01,
		// certmagic tries to listen on these; gatehouse's Listeners hold
		// them already, so it dials them, finds them answering and relies
		// on HTTPHandler and GetCertificate (robustTryListen in
		// certmagic's solvers.go). No extra listener is opened.
		ListenHost:     s.listenHost,
		AltHTTPPort:    s.httpPort,
		AltTLSALPNPort: s.httpsPort,
		Logger:         zl,
	}
	if eab := s.acme.EAB; eab != nil {
		tmpl.ExternalAccount = &acme.EAB{KeyID: eab.KeyID, MACKey: eab.MACKey}
	}
	if tmpl.CA == "" {
		tmpl.CA = certmagic.LetsEncryptProductionCA
	}
	e.issuer = certmagic.NewACMEIssuer(e.cfg, tmpl)
	e.cfg.Issuers = []certmagic.Issuer{e.issuer}
	e.obt = newObtainer(logger, opts.backoffBase, opts.backoffMax, e.obtain, e.forget)
	return e, nil
}

// obtain loads the certificate of host from storage, or obtains it, and
// hands it to the Cache for renewal. ManageSync does not retry by itself;
// the obtainer does.
func (e *certmagicEngine) obtain(ctx context.Context, host string) error {
	// certmagic's error already names the host and the step.
	return e.cfg.ManageSync(ctx, []string{host})
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
	return e.issuer.HandleHTTPChallenge(w, r)
}

func (e *certmagicEngine) manage(hosts []string) { e.obt.set(hosts) }

// close stops the obtain loops, then the Cache's maintenance goroutine.
func (e *certmagicEngine) close() error {
	e.obt.stop()
	e.cache.Stop()
	return nil
}
