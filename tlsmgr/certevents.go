package tlsmgr

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sort"
	"time"
)

// Event types, as Event.Type names them.
const (
	EventObtained      = "obtained"
	EventRenewed       = "renewed"
	EventRenewalFailed = "renewal_failed"
	EventExpiring      = "expiring"
	EventRevoked       = "revoked"
	EventRetired       = "retired"

	// EventObtainFailed: obtaining a host's first Certificate failed (it
	// is retried with backoff); the metrics count issuance failures by it.
	EventObtainFailed = "obtain_failed"
)

// failureReminder is how long the webhook and the command hear nothing
// more of a Certificate whose renewal or first issuance keeps failing
// after they got its renewal_failed or obtain_failed event: the first
// failure of a streak is sent at once, then one reminder a day at most,
// however often the attempt is retried.
const failureReminder = 24 * time.Hour

// Event is something that happened to a Certificate. It is what
// [Manager.Subscribe] delivers and what the events webhook and command
// receive as JSON.
type Event struct {
	// Type is obtained, obtain_failed, renewed, renewal_failed,
	// expiring, revoked or retired.
	Type string `json:"type"`
	// Names are the hosts of the Certificate.
	Names []string `json:"names"`
	// Issuer is the ACME directory URL of the CA, "internal" for the
	// local CA, or the issuer's common name for a file Certificate.
	Issuer string `json:"issuer,omitempty"`
	// Error is why the renewal or the first issuance failed.
	Error string `json:"error,omitempty"`
	// Failures counts the failed attempts in a row, this one included,
	// for obtain_failed and renewal_failed: more than 1 is the daily
	// reminder of a streak still going on.
	Failures int       `json:"failures,omitempty"`
	Time     time.Time `json:"time"`
	// NotAfter is the end of the Certificate's validity, when known.
	NotAfter time.Time `json:"not_after,omitzero"`
	// Duration is how long the ACME attempt took, from certmagic's
	// cert_obtaining to its outcome, for obtained, obtain_failed, renewed
	// and renewal_failed from an ACME CA; zero when unknown. It feeds the
	// order duration histogram of the metrics.
	Duration time.Duration `json:"-"`

	// quiet keeps the event from the webhook and the command, which hear
	// of a failure streak once a day at most; subscribers (the metrics)
	// and the log still get it.
	quiet bool
}

// Subscribe calls f for every Event from now on, until cancel is called.
// f runs on the goroutine that caused the event (possibly an issuance), so
// it must return quickly: queue anything slow.
func (m *Manager) Subscribe(f func(Event)) (cancel func()) {
	if m.lc == nil {
		return func() {}
	}
	return m.lc.Subscribe(f)
}

// Subscribe is [Manager.Subscribe].
func (lc *lifecycle) Subscribe(f func(Event)) func() {
	lc.subMu.Lock()
	defer lc.subMu.Unlock()
	id := lc.nextSub
	lc.nextSub++
	lc.subs[id] = f
	return func() {
		lc.subMu.Lock()
		defer lc.subMu.Unlock()
		delete(lc.subs, id)
	}
}

func (lc *lifecycle) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = lc.now().UTC()
	}
	lc.subMu.Lock()
	ids := make([]int, 0, len(lc.subs))
	for id := range lc.subs {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	fs := make([]func(Event), len(ids))
	for i, id := range ids {
		fs[i] = lc.subs[id]
	}
	lc.subMu.Unlock()
	if ev.quiet {
		lc.logger.Info("certificate event", "event", ev.Type, "names", ev.Names, "issuer", ev.Issuer, "failures", ev.Failures,
			"note", "not sent to the webhook or command: they had this failure streak within the last day")
	} else {
		lc.logger.Info("certificate event", "event", ev.Type, "names", ev.Names, "issuer", ev.Issuer)
	}
	for _, f := range fs {
		f(ev)
	}
}

// defaultRecord returns the record a name starts with.
func (lc *lifecycle) defaultRecord(name string) func() record {
	return func() record {
		_, hosts, onDemand := lc.settings()
		src := SourceACME
		if !slices.Contains(hosts, name) && onDemand(name) {
			src = SourceOnDemand
		}
		return record{Names: []string{name}, Source: src}
	}
}

// attemptDuration is how long the attempt that r records as under way has
// taken at now, or zero when none is.
func attemptDuration(r *record, now time.Time) time.Duration {
	if !r.Attempting || r.LastAttempt.IsZero() || now.Before(r.LastAttempt) {
		return 0
	}
	return now.Sub(r.LastAttempt)
}

// certmagicEvent keeps the inventory up to date from certmagic's events
// and emits gatehouse's. It never fails: an error would abort issuance.
func (lc *lifecycle) certmagicEvent(ctx context.Context, event string, data map[string]any) {
	ctx = context.WithoutCancel(ctx)
	name, _ := data["identifier"].(string)
	if name == "" {
		return
	}
	renewal, _ := data["renewal"].(bool)
	now := lc.now().UTC()
	var err error
	switch event {
	case "cert_obtaining":
		_, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) {
			r.LastAttempt, r.Attempting = now, true
		})
	case "cert_obtained":
		key, _ := data["issuer"].(string)
		ca := key
		if le, ok := lc.engine.(lifecycleEngine); ok {
			ca = cmp.Or(le.caFor(name, key), key)
		}
		var took time.Duration
		_, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) {
			took = attemptDuration(r, now)
			r.Attempting, r.Failures, r.LastError = false, 0, ""
			r.FailureNotified = time.Time{} // the streak is over
			r.IssuerKey, r.CA = key, ca
			if _, hosts, onDemand := lc.settings(); slices.Contains(hosts, name) || onDemand(name) {
				r.RetiredAt = time.Time{} // back in use
			}
			if r.LastAttempt.IsZero() {
				r.LastAttempt = now
			}
		})
		ev := Event{Type: EventObtained, Names: []string{name}, Issuer: ca, Time: now, Duration: took}
		if renewal {
			ev.Type = EventRenewed
		}
		if f := lc.inv.loadACME(ctx, key, name); f != nil {
			ev.NotAfter = f.chain[0].NotAfter
		}
		lc.emit(ev)
	case "cert_failed":
		cause, _ := data["error"].(error)
		msg := "unknown error"
		if cause != nil {
			msg = cause.Error()
		}
		if errors.Is(cause, context.Canceled) {
			// Stopped (shutdown, host removed), not failed.
			_, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) { r.Attempting = false })
			break
		}
		var r record
		var took time.Duration
		quiet := false
		r, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) {
			took = attemptDuration(r, now)
			r.Attempting = false
			r.Failures++
			r.LastError = msg
			// In the record, so instances sharing the storage and
			// restarts keep to one event a day between them.
			if !r.FailureNotified.IsZero() && now.Sub(r.FailureNotified) < failureReminder {
				quiet = true
				return
			}
			r.FailureNotified = now
		})
		issuer := r.CA
		if issuer == "" {
			if keys, ok := data["issuers"].([]string); ok && len(keys) > 0 {
				issuer = keys[0]
				if le, ok := lc.engine.(lifecycleEngine); ok {
					issuer = cmp.Or(le.caFor(name, keys[0]), keys[0])
				}
			}
		}
		typ := EventRenewalFailed
		if !renewal {
			typ = EventObtainFailed
		}
		lc.emit(Event{Type: typ, Names: []string{name}, Issuer: issuer, Error: msg, Failures: r.Failures, Time: now, Duration: took, quiet: quiet})
	}
	if err != nil {
		lc.logger.Warn("updating the certificate inventory", "host", name, "event", event, "error", err)
	}
}
