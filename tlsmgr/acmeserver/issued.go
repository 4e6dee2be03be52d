package acmeserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/acme"
	"github.com/smallstep/nosql"
	"github.com/smallstep/nosql/database"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Tables of the database that are gatehouse's, beside smallstep's.
var (
	// issuedTable holds an issuedRecord per certificate issued, by
	// decimal serial (the key smallstep's revocation table uses).
	issuedTable = []byte("gatehouse_issued")
	// eabTable maps an account ID to the eab_keys ID it registered with.
	eabTable = []byte("gatehouse_eab_accounts")
)

// issuedRecord is what the inventory shows of one certificate issued.
type issuedRecord struct {
	Serial    string    `json:"serial"`
	Names     []string  `json:"names"`
	Client    string    `json:"client,omitempty"`
	Account   string    `json:"account"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Issuer    string    `json:"issuer"`
	// IssuedAt orders a renewal after the certificate before it, which
	// may share its NotBefore second.
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// AKI is the leaf's authority key identifier, base64url, which
	// renewal-info identifiers carry.
	AKI string `json:"aki,omitempty"`
}

// issuedDB is smallstep's ACME database, with what gatehouse adds: each
// certificate issued is recorded for the inventory, and the External
// Account Binding keys come from the config rather than being made by
// the database.
type issuedDB struct {
	acme.DB
	raw    nosql.DB
	logger *slog.Logger
	// eab maps a key ID of acme_server.eab_keys to its HMAC key.
	eab map[string][]byte
	// issued counts the certificates issued since start.
	issued atomic.Int64
	// nextPrune is when CreateCertificate next deletes the records of
	// long expired certificates (Unix seconds).
	nextPrune atomic.Int64
}

// RecordsKeptFor is how long after its expiry the server keeps the record
// of a certificate it issued (and the inventory shows it).
const RecordsKeptFor = 7 * 24 * time.Hour

// pruneEvery is how often issuing deletes expired records: a lab's
// machines renewing short-lived certificates would otherwise grow the
// table, and every inventory read with it, without end.
const pruneEvery = time.Hour

func newIssuedDB(adb acme.DB, raw nosql.DB, keys map[string]string, logger *slog.Logger) (*issuedDB, error) {
	for _, t := range [][]byte{issuedTable, eabTable} {
		if err := raw.CreateTable(t); err != nil {
			return nil, fmt.Errorf("creating table %s: %w", t, err)
		}
	}
	d := &issuedDB{DB: adb, raw: raw, logger: logger, eab: map[string][]byte{}}
	for id, k := range keys {
		b, err := config.DecodeEABKey(k)
		if err != nil {
			return nil, fmt.Errorf("acme_server.eab_keys.%s: %w", id, err)
		}
		d.eab[id] = b
	}
	return d, nil
}

// CreateCertificate stores cert as smallstep does, then records it for
// the inventory with the client that finalized its order.
func (d *issuedDB) CreateCertificate(ctx context.Context, cert *acme.Certificate) error {
	if err := d.DB.CreateCertificate(ctx, cert); err != nil {
		return err
	}
	d.issued.Add(1)
	leaf := cert.Leaf
	rec := issuedRecord{
		Serial:    leaf.SerialNumber.Text(16),
		Names:     leafNames(leaf.DNSNames, leaf.IPAddresses),
		Account:   cert.AccountID,
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		Issuer:    leaf.Issuer.CommonName,
		IssuedAt:  time.Now(),
		AKI:       base64.RawURLEncoding.EncodeToString(leaf.AuthorityKeyId),
	}
	if a, ok := ctx.Value(clientKey{}).(netip.Addr); ok && a.IsValid() {
		rec.Client = a.String()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("recording certificate %s: %w", rec.Serial, err)
	}
	// A record that cannot be stored fails the finalize: the server hands
	// out no certificate its inventory would not show.
	if err := d.raw.Set(issuedTable, []byte(leaf.SerialNumber.String()), b); err != nil {
		return fmt.Errorf("recording certificate %s: %w", rec.Serial, err)
	}
	d.logger.InfoContext(ctx, "ACME server issued a certificate", "names", rec.Names, "client", rec.Client,
		"account", rec.Account, "serial", rec.Serial, "not_after", rec.NotAfter)
	if now := time.Now(); now.Unix() >= d.nextPrune.Load() {
		d.nextPrune.Store(now.Add(pruneEvery).Unix())
		if err := d.prune(now); err != nil {
			d.logger.WarnContext(ctx, "deleting the records of expired certificates", "error", err)
		}
	}
	return nil
}

// prune deletes the records of certificates expired more than
// RecordsKeptFor before now.
func (d *issuedDB) prune(now time.Time) error {
	entries, err := d.raw.List(issuedTable)
	if err != nil {
		if database.IsErrNotFound(err) {
			return nil
		}
		return fmt.Errorf("listing issued certificates: %w", err)
	}
	for _, e := range entries {
		var r issuedRecord
		if json.Unmarshal(e.Value, &r) == nil && now.Sub(r.NotAfter) <= RecordsKeptFor {
			continue
		}
		if err := d.raw.Del(issuedTable, e.Key); err != nil {
			return fmt.Errorf("deleting the record of %s: %w", e.Key, err)
		}
	}
	return nil
}

func leafNames(dns []string, ips []net.IP) []string {
	out := slices.Clone(dns)
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// records lists every certificate issued, with whether it was revoked
// (by smallstep's revocation table).
func (d *issuedDB) records(isRevoked func(serial string) (bool, error)) ([]issuedRecord, []bool, error) {
	entries, err := d.raw.List(issuedTable)
	if err != nil && !database.IsErrNotFound(err) {
		return nil, nil, fmt.Errorf("listing issued certificates: %w", err)
	}
	recs := make([]issuedRecord, 0, len(entries))
	revoked := make([]bool, 0, len(entries))
	for _, e := range entries {
		var r issuedRecord
		if err := json.Unmarshal(e.Value, &r); err != nil {
			continue
		}
		rv, err := isRevoked(string(e.Key))
		if err != nil {
			return nil, nil, fmt.Errorf("checking revocation of %s: %w", r.Serial, err)
		}
		recs = append(recs, r)
		revoked = append(revoked, rv)
	}
	return recs, revoked, nil
}

// record returns the record of the certificate with decimal serial, with
// whether it was revoked; ok is false when this server did not issue it.
func (d *issuedDB) record(serial string, isRevoked func(serial string) (bool, error)) (rec issuedRecord, revoked, ok bool, err error) {
	b, err := d.raw.Get(issuedTable, []byte(serial))
	if database.IsErrNotFound(err) {
		return issuedRecord{}, false, false, nil
	}
	if err != nil {
		return issuedRecord{}, false, false, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return issuedRecord{}, false, false, fmt.Errorf("decoding the record of %s: %w", serial, err)
	}
	revoked, err = isRevoked(serial)
	return rec, revoked, true, err
}

// GetExternalAccountKey returns the eab_keys key keyID, bound to nothing:
// a key of the config may register several accounts (the machines of a
// lab sharing one key, or one registering again).
func (d *issuedDB) GetExternalAccountKey(_ context.Context, provisionerID, keyID string) (*acme.ExternalAccountKey, error) {
	k, ok := d.eab[keyID]
	if !ok {
		return nil, acme.NewError(acme.ErrorUnauthorizedType, "%q is not a key of acme_server.eab_keys", keyID)
	}
	return &acme.ExternalAccountKey{ID: keyID, ProvisionerID: provisionerID, Reference: keyID, HmacKey: k}, nil
}

// UpdateExternalAccountKey records which key an account registered with;
// smallstep calls it to bind the key.
func (d *issuedDB) UpdateExternalAccountKey(_ context.Context, _ string, eak *acme.ExternalAccountKey) error {
	if _, ok := d.eab[eak.ID]; !ok || eak.AccountID == "" {
		return acme.NewError(acme.ErrorUnauthorizedType, "%q is not a key of acme_server.eab_keys", eak.ID)
	}
	if err := d.raw.Set(eabTable, []byte(eak.AccountID), []byte(eak.ID)); err != nil {
		return fmt.Errorf("binding account %s to key %s: %w", eak.AccountID, eak.ID, err)
	}
	return nil
}

// GetExternalAccountKeyByAccountID returns the key accountID registered
// with, while that key is still in eab_keys: removing a key from the
// config stops its accounts from ordering.
func (d *issuedDB) GetExternalAccountKeyByAccountID(ctx context.Context, provisionerID, accountID string) (*acme.ExternalAccountKey, error) {
	id, err := d.raw.Get(eabTable, []byte(accountID))
	if err != nil {
		// An *acme.Error, which smallstep passes on as it is (another
		// error becomes an internal error): an account registered before
		// eab_keys was set, or bound to a key since removed.
		return nil, acme.NewDetailedError(acme.ErrorUnauthorizedType,
			"account %s has no binding to a key of acme_server.eab_keys; register a new account with External Account Binding", accountID)
	}
	return d.GetExternalAccountKey(ctx, provisionerID, string(id))
}

// Issued is one certificate the server issued.
type Issued struct {
	// Names are the certificate's DNS names and IP addresses.
	Names []string
	// Client is the address of the client that finalized the order;
	// Account is its ACME account ID.
	Client, Account string
	// Serial is the serial number in lowercase hexadecimal.
	Serial string
	// Issuer is the common name of the intermediate that signed it.
	Issuer              string
	NotBefore, NotAfter time.Time
	// IssuedAt is when the server signed it (zero in records older
	// than the field).
	IssuedAt time.Time
	// Revoked reports whether it was revoked.
	Revoked bool
}

// Issued lists every certificate the server issued, expired and revoked
// ones included, in no particular order.
func (s *Server) Issued() ([]Issued, error) {
	recs, revoked, err := s.db.records(s.authDB.IsRevoked)
	if err != nil {
		return nil, err
	}
	out := make([]Issued, len(recs))
	for i, r := range recs {
		out[i] = Issued{
			Names: r.Names, Client: r.Client, Account: r.Account, Serial: r.Serial,
			Issuer: r.Issuer, NotBefore: r.NotBefore, NotAfter: r.NotAfter, IssuedAt: r.IssuedAt, Revoked: revoked[i],
		}
	}
	return out, nil
}

// IssuedCount is how many certificates the server issued since it
// started.
func (s *Server) IssuedCount() int64 { return s.db.issued.Load() }

// RefusedCounts are how many requests the server refused since it
// started: from clients outside allowed_clients, and orders for names
// outside allowed_names.
func (s *Server) RefusedCounts() (clients, names int64) {
	return s.refusedClients.Load(), s.refusedNames.Load()
}
