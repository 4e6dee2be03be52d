package client

import (
	"context"
	"errors"
	"net/http"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// Certificates are the Certificates of one gatehouse as a tool steers
// them: through the admin endpoint of the running gatehouse ([*Client]),
// or on the storage of its config while none runs ([*tlsmgr.Offline]).
// Renew and Revoke return the Certificate then serving the name; errors
// name the call and the host.
type Certificates interface {
	// Certificates returns the inventory.
	Certificates(ctx context.Context) ([]tlsmgr.CertificateInfo, error)
	// Renew renews the Certificate of name, even when not due if force.
	Renew(ctx context.Context, name string, force bool) (tlsmgr.CertificateInfo, error)
	// Revoke revokes the Certificate of name at its CA with reason (see
	// [tlsmgr.RevocationReasons]).
	Revoke(ctx context.Context, name, reason string) (tlsmgr.CertificateInfo, error)
	// Budget returns what is left of the ACME Issuers' rate limits.
	Budget(ctx context.Context) ([]tlsmgr.BudgetLine, error)
	// Migrate re-issues the Certificates opts selects from another
	// issuer, reporting each step to progress (see
	// [tlsmgr.Manager.Migrate]).
	Migrate(ctx context.Context, opts tlsmgr.MigrateOptions, progress func(tlsmgr.MigrationEvent)) (tlsmgr.MigrationResult, error)
}

var (
	_ Certificates = (*Client)(nil)
	_ Certificates = (*tlsmgr.Offline)(nil)
)

// Reach returns the Certificates of the gatehouse whose admin endpoint
// answers at addr ([Dial] through httpClient) or, when none answers there,
// those offline returns, called with why none answered (an error wrapping
// [ErrNoInstance]): usually a [*tlsmgr.Offline] on the config's storage.
// Any other error of Dial's, and offline's, is returned as it is.
func Reach(ctx context.Context, addr string, httpClient *http.Client, offline func(why error) (Certificates, error)) (Certificates, error) {
	c, err := Dial(ctx, addr, httpClient)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, ErrNoInstance):
		return offline(err)
	}
	return nil, err
}

// Renewal is what [RenewAll] did with one Certificate.
type Renewal struct {
	// Name is the Certificate's first name, the one renewed.
	Name string
	// Listed is the Certificate as the inventory listed it.
	Listed tlsmgr.CertificateInfo
	// Pending says it was passed over: its first certificate is still
	// being obtained.
	Pending bool
	// Renewed is the Certificate then serving Name, unless Err says why
	// the renewal failed.
	Renewed tlsmgr.CertificateInfo
	Err     error
}

// RenewAll renews every Certificate of certs that may be renewed, even
// when not due if force: not those from files, not retired ones, and
// offline ACME ones only ([tlsmgr.CertificateInfo.Renewable]). It goes on
// after a failure and reports each Certificate renewed or pending to
// report, in the inventory's order. err is only the inventory's; failed
// counts the renewals that failed.
func RenewAll(ctx context.Context, certs Certificates, force bool, report func(Renewal)) (failed int, err error) {
	list, err := certs.Certificates(ctx)
	if err != nil {
		return 0, err
	}
	_, offline := certs.(*tlsmgr.Offline)
	for _, ci := range list {
		ok, pending := ci.Renewable(offline)
		if !ok && !pending {
			continue
		}
		r := Renewal{Name: ci.Names[0], Listed: ci, Pending: pending}
		if ok {
			if r.Renewed, r.Err = certs.Renew(ctx, r.Name, force); r.Err != nil {
				failed++
			}
		}
		report(r)
	}
	return failed, nil
}
