package tlsmgr

import (
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"slices"
	"time"
)

// check sends an expiring event, once per certificate, for every ACME
// Certificate past its renewal point and not renewed (failing renewals
// included, so they are reported well before expiry), and deletes
// retirements past retire_after.
func (lc *lifecycle) check(ctx context.Context, now time.Time) {
	recs, err := lc.inv.list(ctx)
	if err != nil {
		lc.logger.Warn("reading the certificate inventory", "error", err)
		return
	}
	for name, r := range recs {
		if !r.RetiredAt.IsZero() {
			continue
		}
		info := lc.inv.fromRecord(ctx, r, now)
		if info.Serial == "" || info.NextRenewal.IsZero() || !now.After(info.NextRenewal.Add(expiringGrace(info))) {
			continue
		}
		if r.ExpiringSerial == info.Serial {
			continue
		}
		_, err := lc.inv.update(ctx, name, nil, func(r *record) { r.ExpiringSerial = info.Serial })
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			// Storage that takes no writes is no reason to keep quiet:
			// the record in memory says the event went out.
			lc.logger.Warn("updating the certificate inventory", "host", name, "error", err)
		}
		lc.logger.Warn("certificate past its renewal point and not renewed", "host", name, "not_after", info.NotAfter, "status", info.Status, "last_error", info.LastError)
		lc.emit(Event{Type: EventExpiring, Names: info.Names, Issuer: info.CA, Error: info.LastError, Time: now.UTC(), NotAfter: info.NotAfter})
	}
	lc.checkFiles(now)
	// The records as read above: the updates since touched no field
	// retiring looks at, and each retirement reads its record again.
	if _, err := lc.retireListed(ctx, now, recs); err != nil {
		lc.logger.Warn("retiring certificates", "error", err)
	}
}

// checkFiles sends an expiring event, once per certificate, for every
// file Certificate with a third of its lifetime (plus the grace) left:
// nobody but its owner renews it, so this is the reminder.
func (lc *lifecycle) checkFiles(now time.Time) {
	lc.mu.Lock()
	t := lc.table
	lc.mu.Unlock()
	if t == nil {
		return
	}
	for cert, hosts := range t.configured().static {
		info := CertificateInfo{Names: slices.Sorted(slices.Values(hosts)), Source: SourceFile}
		if cert.Leaf == nil {
			continue
		}
		fill(&info, []*x509.Certificate{cert.Leaf}, nil)
		if !now.After(info.NextRenewal.Add(expiringGrace(info))) {
			continue
		}
		lc.mu.Lock()
		sent := lc.fileExpiring[info.Serial]
		if lc.fileExpiring == nil {
			lc.fileExpiring = map[string]bool{}
		}
		lc.fileExpiring[info.Serial] = true
		lc.mu.Unlock()
		if sent {
			continue
		}
		lc.logger.Warn("certificate from files is near its end; replace the files and reload", "hosts", info.Names, "not_after", info.NotAfter)
		lc.emit(Event{Type: EventExpiring, Names: info.Names, Issuer: info.Issuer, Time: now.UTC(), NotAfter: info.NotAfter})
	}
}
