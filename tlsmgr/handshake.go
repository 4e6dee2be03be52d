package tlsmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HandshakeCounter counts failed TLS handshakes by reason. admin's
// Metrics implement it; tlsmgr knows no metrics library.
type HandshakeCounter interface {
	// HandshakeFailed is called once per failed handshake, from the
	// handshake's goroutine; reason is one of the Reason constants.
	HandshakeFailed(reason string)
}

// Reasons a TLS handshake fails, as counted and logged. They are stable:
// dashboards and alerts select on them.
const (
	// ReasonUnknownName: the client asked for a name no Site lists.
	ReasonUnknownName = "unknown_name"
	// ReasonNoSNI: the client sent no server name, and no Site lists the
	// address it connected to.
	ReasonNoSNI = "no_sni"
	// ReasonBadSNI: the server name is not a valid host name.
	ReasonBadSNI = "bad_sni"
	// ReasonOnDemandDenied: on_demand's policy refused the name.
	ReasonOnDemandDenied = "on_demand_denied"
	// ReasonOnDemandBusy: on_demand.rate or the ask limit held the order
	// back for now.
	ReasonOnDemandBusy = "on_demand_busy"
	// ReasonCertificate: the name is served, but its certificate could
	// not be had (the local CA or the ACME engine failed).
	ReasonCertificate = "certificate"
	// ReasonProtocolVersion: no TLS version in common (gatehouse wants
	// 1.2 or later).
	ReasonProtocolVersion = "protocol_version"
	// ReasonNoSharedCipher: no cipher suite, curve or signature scheme in
	// common.
	ReasonNoSharedCipher = "no_shared_cipher"
	// ReasonNoALPN: the client offered only application protocols
	// gatehouse does not speak.
	ReasonNoALPN = "no_application_protocol"
	// ReasonPlainHTTP: the client spoke plain HTTP to the HTTPS port.
	ReasonPlainHTTP = "plain_http"
	// ReasonNotTLS: the client sent something that is not TLS.
	ReasonNotTLS = "not_tls"
	// ReasonCertificateRejected: the client refused gatehouse's
	// certificate (it does not trust the issuer, or the name is wrong).
	ReasonCertificateRejected = "certificate_rejected"
	// ReasonClientAlert: the client aborted with another alert.
	ReasonClientAlert = "client_alert"
	// ReasonEOF: the client closed the connection mid-handshake.
	ReasonEOF = "eof"
	// ReasonTimeout: the handshake did not finish within
	// timeouts.read_header.
	ReasonTimeout = "timeout"
	// ReasonReset: the connection was reset mid-handshake.
	ReasonReset = "reset"
	// ReasonOther: anything else.
	ReasonOther = "other"
)

// HandshakeReasons lists every reason, for counters that start each at
// zero.
var HandshakeReasons = []string{
	ReasonUnknownName, ReasonNoSNI, ReasonBadSNI, ReasonOnDemandDenied, ReasonOnDemandBusy,
	ReasonCertificate, ReasonProtocolVersion, ReasonNoSharedCipher, ReasonNoALPN, ReasonPlainHTTP,
	ReasonNotTLS, ReasonCertificateRejected, ReasonClientAlert, ReasonEOF, ReasonTimeout, ReasonReset,
	ReasonOther,
}

// handshakeSummaryEvery is how often at most one reason's failures are
// logged: every handshake failure of a stranger's scanner on its own line
// would flood the log.
const handshakeSummaryEvery = time.Minute

// handshakeLog counts failed handshakes and summarises them in the log, one
// line per reason at most every handshakeSummaryEvery. The first failure of
// a reason is logged at once; those that follow within the minute are
// counted and reported, as count, on the next line of that reason.
type handshakeLog struct {
	logger  *slog.Logger
	now     func() time.Time
	counter atomic.Pointer[HandshakeCounter]

	mu      sync.Mutex // guards reasons
	reasons map[string]*reasonSummary
}

// reasonSummary is what is known of one reason since its last line.
type reasonSummary struct {
	logged time.Time // when its last line was written; zero before the first
	n      int       // failures since, not yet logged
}

func newHandshakeLog(logger *slog.Logger, now func() time.Time) *handshakeLog {
	if now == nil {
		now = time.Now
	}
	return &handshakeLog{logger: logger, now: now, reasons: map[string]*reasonSummary{}}
}

// failed records one failed handshake of the client at remote.
func (h *handshakeLog) failed(reason, remote, detail string) {
	if h == nil {
		return
	}
	now := h.now()
	h.mu.Lock()
	s := h.reasons[reason]
	if s == nil {
		s = &reasonSummary{}
		h.reasons[reason] = s
	}
	s.n++
	var n int
	var since time.Duration
	if s.logged.IsZero() || now.Sub(s.logged) >= handshakeSummaryEvery {
		n = s.n
		if !s.logged.IsZero() {
			since = now.Sub(s.logged)
		}
		s.n, s.logged = 0, now
	}
	h.mu.Unlock()
	if n > 0 {
		attrs := []slog.Attr{slog.String("reason", reason), slog.Int("count", n)}
		if since > 0 {
			attrs = append(attrs, slog.Duration("over", since.Round(time.Second)))
		}
		attrs = append(attrs, slog.String("last_client", remote), slog.String("last_error", detail))
		h.logger.LogAttrs(context.Background(), slog.LevelInfo, "TLS handshakes failed", attrs...)
	}
	// After the log line, so a test that waits for the count sees the line.
	if c := h.counter.Load(); c != nil {
		(*c).HandshakeFailed(reason)
	}
}

// CountHandshakeFailures makes every failed handshake of the Listeners
// using TLSConfig count in c, by reason; call it before they serve.
func (m *Manager) CountHandshakeFailures(c HandshakeCounter) {
	if m.handshakes == nil {
		return
	}
	if c == nil {
		m.handshakes.counter.Store(nil)
		return
	}
	m.handshakes.counter.Store(&c)
}

// servingCertificate begins the error of a certificate lookup that failed
// for another reason than the name, so HandshakeErrorLog knows the
// failure was counted already.
const servingCertificate = "serving certificate"

// errNoCertificatesText is crypto/tls's error for a GetCertificate that
// returned no certificate and no error; serveCertificate returns that for
// every name gatehouse does not serve, so those were counted already.
const errNoCertificatesText = "tls: no certificates configured"

// serveCertificate is TLSConfig's GetCertificate: getCertificate, with
// every failure counted and logged by reason. A name gatehouse does not
// serve gets no certificate and no error: crypto/tls answers exactly that
// with the unrecognized_name alert, which tells the client its name is
// wrong, and any error with internal_error, which says the server broke.
func (m *Manager) serveCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := m.getCertificate(hello)
	if err == nil && cert != nil {
		return cert, nil
	}
	if err == nil {
		// An engine with nothing to say; HandshakeErrorLog skips the
		// error crypto/tls makes of it, so it is counted here.
		err = errors.New("no certificate")
	}
	reason, refused := certFailure(hello, err)
	remote := ""
	if hello.Conn != nil {
		remote = hello.Conn.RemoteAddr().String()
	}
	m.handshakes.failed(reason, remote, err.Error())
	if refused {
		return nil, nil
	}
	return nil, fmt.Errorf("%s: %w", servingCertificate, err)
}

// certFailure names why getCertificate failed and reports whether the name
// is refused (the client asked for a name that is not served).
func certFailure(hello *tls.ClientHelloInfo, err error) (reason string, refused bool) {
	switch {
	case errors.Is(err, errBadSNI):
		return ReasonBadSNI, true
	case errors.Is(err, errNoSNI):
		return ReasonNoSNI, true
	case errors.Is(err, errUnknownHost):
		if hello.ServerName == "" {
			return ReasonNoSNI, true
		}
		return ReasonUnknownName, true
	case errors.Is(err, errOnDemandDenied):
		return ReasonOnDemandDenied, true
	case errors.Is(err, errOnDemandRate), errors.Is(err, errAskBusy):
		return ReasonOnDemandBusy, false
	default:
		return ReasonCertificate, false
	}
}

// handshakeErrorPrefix begins net/http's log line for a failed handshake.
const handshakeErrorPrefix = "http: TLS handshake error from "

// HandshakeErrorLog returns the http.Server.ErrorLog for a Listener using
// TLSConfig. net/http reports every failed handshake there, one line each
// ("http: TLS handshake error from ADDR: REASON"); those lines are counted
// by reason and summarised instead, and every other line goes to next
// (nil discards them).
func (m *Manager) HandshakeErrorLog(next *log.Logger) *log.Logger {
	return log.New(&handshakeErrorWriter{h: m.handshakes, next: next}, "", 0)
}

type handshakeErrorWriter struct {
	h    *handshakeLog
	next *log.Logger
}

func (w *handshakeErrorWriter) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	rest, ok := strings.CutPrefix(line, handshakeErrorPrefix)
	if !ok {
		if w.next == nil {
			return len(p), nil
		}
		return len(p), w.next.Output(2, line)
	}
	remote, detail, _ := strings.Cut(rest, ": ")
	if reason := handshakeReason(detail); reason != "" {
		w.h.failed(reason, remote, detail)
	}
	return len(p), nil
}

// handshakeReason names the failure crypto/tls or net/http describe in
// detail, or returns "" for one serveCertificate counted already. The
// texts are those of crypto/tls and net/http.
func handshakeReason(detail string) string {
	has := func(s ...string) bool {
		for _, v := range s {
			if strings.Contains(detail, v) {
				return true
			}
		}
		return false
	}
	switch {
	case detail == errNoCertificatesText || strings.HasPrefix(detail, servingCertificate+": "):
		return ""
	case strings.HasPrefix(detail, "client sent an HTTP request to an HTTPS server"):
		return ReasonPlainHTTP
	case strings.HasPrefix(detail, "remote error: tls: "):
		if has("bad certificate", "unknown certificate authority", "certificate unknown", "certificate expired", "certificate revoked", "unsupported certificate") {
			return ReasonCertificateRejected
		}
		return ReasonClientAlert
	case has("unsupported versions", "protocol version not supported", "unsupported SSLv2"):
		return ReasonProtocolVersion
	case has("no cipher suite supported", "no ECDHE curve", "no mutually supported", "no supported elliptic curves", "signature algorithm"):
		return ReasonNoSharedCipher
	case has("unsupported application protocols"):
		return ReasonNoALPN
	case has("does not look like a TLS handshake", "oversized record", "unexpected message"):
		return ReasonNotTLS
	case has("i/o timeout", "deadline exceeded"):
		return ReasonTimeout
	case has("connection reset", "broken pipe"):
		return ReasonReset
	case strings.HasSuffix(detail, "EOF"):
		return ReasonEOF
	default:
		return ReasonOther
	}
}
