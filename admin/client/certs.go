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
