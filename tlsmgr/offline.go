package tlsmgr

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Offline steers the Certificates on the storage of a config while no
// gatehouse serves it: what `gatehouse certs` works on when no admin
// endpoint answers. Certificates, Renew and Revoke are those of the admin
// endpoint's client, so a tool treats both alike.
type Offline struct {
	// Config is the loaded config whose storage, Sites and ACME account
	// are used (required).
	Config *config.Config
	// Log receives the warnings of renewals, revocations and retirements;
	// nil discards them.
	Log *slog.Logger
}

// Certificates returns the inventory as the storage and files hold it
// ([Inventory]).
func (o *Offline) Certificates(ctx context.Context) ([]CertificateInfo, error) {
	return Inventory(ctx, o.Config)
}

// Renew renews the ACME Certificate of name, only when due unless force,
// and returns it as the storage then holds it. The CA's challenges are
// answered on the config's Listener addresses, which are bound for the
// moment: they must be free, so this fails while a gatehouse serves on
// them. Only ACME hosts of the config renew offline. The events configured
// are delivered before it returns.
func (o *Offline) Renew(ctx context.Context, name string, force bool) (CertificateInfo, error) {
	if err := renewOffline(ctx, o.Config, name, force, o.Log); err != nil {
		return CertificateInfo{}, fmt.Errorf("%w (offline renewal answers the CA's challenges on the config's listen addresses itself)", err)
	}
	certs, err := Inventory(ctx, o.Config)
	if err != nil {
		return CertificateInfo{}, err
	}
	ci, _ := FindCertificate(certs, name)
	return ci, nil
}

// Revoke revokes the ACME Certificate of name at its CA with reason (see
// [RevocationReasons]), with the account in the storage, and deletes it
// from storage. Nothing replaces it now: a host still configured gets its
// replacement when gatehouse next starts, so the answer carries the name
// only. The events configured are delivered before it returns.
func (o *Offline) Revoke(ctx context.Context, name, reason string) (CertificateInfo, error) {
	if err := revokeOffline(ctx, o.Config, name, reason, o.Log); err != nil {
		return CertificateInfo{}, err
	}
	return CertificateInfo{Names: []string{name}}, nil
}

// Retire does what [Manager.Retire] does, on the storage and against the
// config's Sites; a gatehouse sharing the storage may run meanwhile, as it
// does the same after each reload. It returns the names newly retired.
func (o *Offline) Retire(ctx context.Context) ([]string, error) {
	return retireOffline(ctx, o.Config, o.Log)
}

// Migrate is [MigrateOffline] on the config's storage: the CA's challenges
// are answered on the config's Listener addresses, which must be free, and
// gatehouse serves the replacements when it next starts.
func (o *Offline) Migrate(ctx context.Context, opts MigrateOptions, progress func(MigrationEvent)) (MigrationResult, error) {
	return MigrateOffline(ctx, o.Config, opts, progress, o.Log)
}
