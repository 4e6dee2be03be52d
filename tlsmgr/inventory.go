package tlsmgr

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Status is where a Certificate stands in its life.
type Status string

// The statuses of a Certificate, from the most urgent.
const (
	// StatusExpired: past its NotAfter; clients refuse it.
	StatusExpired Status = "expired"
	// StatusFailing: the last attempt to obtain or renew it failed.
	StatusFailing Status = "failing"
	// StatusExpiring: past its renewal point and not renewed yet.
	StatusExpiring Status = "expiring"
	// StatusRenewing: an attempt to renew it is under way.
	StatusRenewing Status = "renewing"
	// StatusPending: no certificate exists yet: the first one of an ACME
	// host is being obtained (no attempt has failed), or no handshake has
	// asked the local CA for one. It has no dates.
	StatusPending Status = "pending"
	// StatusValid: in use and not due for renewal.
	StatusValid Status = "valid"
	// StatusRevoked: revoked before its expiry (a certificate of the
	// ACME server, acme_server, whose client revoked it); clients that
	// check revocation refuse it.
	StatusRevoked Status = "revoked"
	// StatusRetired: its host left the config; it is no longer renewed and
	// is deleted once retire_after has passed.
	StatusRetired Status = "retired"
)

// statuses is every Status, most urgent first.
var statuses = []Status{StatusExpired, StatusFailing, StatusExpiring, StatusRenewing, StatusPending, StatusValid, StatusRevoked, StatusRetired}

// Statuses returns every Status, most urgent first: the order of
// [SortCertificates], and the values the metrics and the dashboard count.
func Statuses() []Status {
	return slices.Clone(statuses)
}

// urgency orders statuses for display: lower is more urgent, and an
// unknown status comes last.
func (s Status) urgency() int {
	if i := slices.Index(statuses, s); i >= 0 {
		return i
	}
	return len(statuses)
}

// Sources of a Certificate, as CertificateInfo.Source names them.
const (
	SourceACME     = "acme"
	SourceInternal = "internal"
	SourceFile     = "file"
	SourceOnDemand = "on_demand"
	// SourceACMEServer: issued by gatehouse's ACME server (acme_server)
	// to another machine; gatehouse does not serve it.
	SourceACMEServer = "acme_server"
)

// Renewal reasons, as CertificateInfo.RenewalReason names them.
const (
	// ReasonARI: the CA's ACME Renewal Information (RFC 9773) window.
	ReasonARI = "ari"
	// ReasonLifetime: a third of the lifetime left, as certmagic does
	// without ARI (and the local CA always).
	ReasonLifetime = "lifetime"
)

// CertificateInfo is what gatehouse knows about one Certificate it manages
// or serves: the inventory entry shown by `gatehouse certs` and GET /certs.
// Times are zero when unknown (for example NotAfter before the first
// issuance).
type CertificateInfo struct {
	// Names are the hosts the Certificate is for.
	Names []string `json:"names"`
	// Source is "acme", "internal" (the local CA), "file", "on_demand" or
	// "acme_server" (issued to another machine by the ACME server).
	Source string `json:"source"`
	// RoutedBy names where the Routes of its names come from ("file",
	// "docker: web-1 (0123abcd5678)"), as the admin endpoint, which knows
	// the routing table, fills it in; empty elsewhere.
	RoutedBy string `json:"routed_by,omitempty"`
	// Client is, for a certificate of the ACME server, the address of
	// the client it was issued to and its ACME account ("192.168.1.20,
	// account Xy12").
	Client string `json:"client,omitempty"`
	// Issuer is the common name of the issuing CA certificate.
	Issuer string `json:"issuer,omitempty"`
	// CA is the ACME directory URL the Certificate comes from, if any.
	CA string `json:"ca,omitempty"`
	// KeyType is "ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa4096",
	// "ed25519", ...
	KeyType string `json:"key_type,omitempty"`
	// Serial is the serial number in lowercase hexadecimal.
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// NextRenewal is when renewal is due; RenewalReason says why: "ari"
	// (the CA's window) or "lifetime" (a third of the lifetime left).
	NextRenewal   time.Time `json:"next_renewal,omitzero"`
	RenewalReason string    `json:"renewal_reason,omitempty"`
	// LastAttempt is when obtaining or renewing last started; LastError is
	// its error, if it failed, and Failures counts failures in a row.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"failures"`
	// Status is one of [Statuses]: pending until the first certificate
	// exists.
	Status Status `json:"status"`
	// RetiredAt is when the host left the config (status retired).
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// ChainPEM is the certificate chain, leaf first.
	ChainPEM string `json:"chain_pem,omitempty"`
}

// SortCertificates sorts certs by urgency: expired, failing, expiring,
// renewing, pending, valid, then retired; within a status, the soonest NotAfter
// first (unknown last), then by name.
func SortCertificates(certs []CertificateInfo) {
	slices.SortStableFunc(certs, func(a, b CertificateInfo) int {
		if c := cmp.Compare(a.Status.urgency(), b.Status.urgency()); c != 0 {
			return c
		}
		switch {
		case a.NotAfter.IsZero() && !b.NotAfter.IsZero():
			return 1
		case !a.NotAfter.IsZero() && b.NotAfter.IsZero():
			return -1
		}
		if c := a.NotAfter.Compare(b.NotAfter); c != 0 {
			return c
		}
		return cmp.Compare(strings.Join(a.Names, ","), strings.Join(b.Names, ","))
	})
}

// FindCertificate returns the Certificate among certs listing name (in
// any case, with or without a final dot), a current one before a retired
// one, which may list the name too; false when none does.
func FindCertificate(certs []CertificateInfo, name string) (CertificateInfo, bool) {
	name = strings.TrimSuffix(name, ".")
	var found *CertificateInfo
	for i := range certs {
		c := &certs[i]
		if !slices.ContainsFunc(c.Names, func(n string) bool { return strings.EqualFold(n, name) }) {
			continue
		}
		if found == nil || (found.Status == StatusRetired && c.Status != StatusRetired) {
			found = c
		}
	}
	if found == nil {
		return CertificateInfo{}, false
	}
	return *found, true
}

// Renewable reports whether a renewal of c may be asked for: of a running
// gatehouse, or, when offline, of the storage, where only ACME
// Certificates renew. Certificates from files, retired ones and those
// without names never renew. pending reports one that is not renewable
// yet because its first certificate is still being obtained; a local CA
// name is never pending, since its first leaf comes from a renewal.
func (c CertificateInfo) Renewable(offline bool) (ok, pending bool) {
	switch {
	case c.Source == SourceFile || c.Status == StatusRetired || len(c.Names) == 0:
		return false, false
	case c.NotAfter.IsZero() && c.Source != SourceInternal:
		return false, true
	case offline && c.Source != SourceACME:
		return false, false
	}
	return true, false
}

// ErrUnknownCertificate is returned by Renew and Revoke for a name that
// has no Certificate gatehouse manages; the admin endpoint answers 404.
var ErrUnknownCertificate = errors.New("no certificate for this name")

// record is the lifecycle state of one Certificate that gatehouse keeps in
// storage (inventory/NAME.json), beside the certificate certmagic keeps.
// The certificate itself is always read from certmagic's storage, so a
// renewal by another instance sharing the storage shows at once. Writes
// for one name happen inside certmagic's issuance lock for that name (the
// events come from there) or under Retire, so instances do not overwrite
// each other's updates.
type record struct {
	Names  []string `json:"names"`
	Source string   `json:"source"`
	// CA is the ACME directory of the issuer that last obtained it, and
	// IssuerKey that issuer's directory under certificates/.
	CA        string `json:"ca,omitempty"`
	IssuerKey string `json:"issuer_key,omitempty"`

	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"failures,omitempty"`
	// Attempting is set while an attempt runs (status renewing).
	Attempting bool `json:"attempting,omitempty"`
	// RetiredAt is when the host left the config.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// ExpiringSerial is the serial an expiring event was sent for, so it
	// is sent once per certificate, by whichever instance sees it first.
	ExpiringSerial string `json:"expiring_serial,omitempty"`
	// FailureNotified is when the webhook and the command last got a
	// renewal_failed or obtain_failed event of the current failure
	// streak; zero once the Certificate is obtained or renewed.
	FailureNotified time.Time `json:"failure_notified,omitzero"`
}

// staleAttempt is how long Attempting is believed: an attempt that never
// ended (the process died) stops showing as renewing after this.
const staleAttempt = 15 * time.Minute

// inventoryPrefix is the storage directory of the records.
const inventoryPrefix = "inventory"

// inventory reads and writes records in a certmagic Storage, so it works
// on any storage certmagic does (files today, etcd or S3 later).
type inventory struct {
	storage certmagic.Storage
	// mu serialises read-modify-write of records within this process.
	mu sync.Mutex
	// unsavedMu guards unsaved.
	unsavedMu sync.Mutex
	// unsaved holds, by name, the records whose last update could not be
	// stored (the storage is read-only or full), so the inventory of this
	// process still shows the failure it could not write down; the next
	// update that is stored, or a removal, drops it.
	unsaved map[string]record
}

func newInventory(storageDir string) *inventory {
	return &inventory{storage: &certmagic.FileStorage{Path: storageDir}}
}

func recordKey(name string) string {
	return path.Join(inventoryPrefix, certmagic.StorageKeys.Safe(name)+".json")
}

// load returns the record of name, or nil if there is none.
func (inv *inventory) load(ctx context.Context, name string) (*record, error) {
	if r, ok := inv.unsavedRecord(name); ok {
		return &r, nil
	}
	b, err := inv.storage.Load(ctx, recordKey(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading inventory record of %s: %w", name, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decoding inventory record of %s: %w", name, err)
	}
	return &r, nil
}

// update applies f to the record of name (a new one, from def, if there is
// none; with a nil def, none is an error) and stores it, atomically with
// mode 0600. It returns the record as stored.
func (inv *inventory) update(ctx context.Context, name string, def func() record, f func(r *record)) (record, error) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	r, err := inv.load(ctx, name)
	if err != nil {
		return record{}, err
	}
	if r == nil {
		if def == nil {
			return record{}, fmt.Errorf("updating inventory record of %s: %w", name, fs.ErrNotExist)
		}
		d := def()
		r = &d
	}
	f(r)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return record{}, fmt.Errorf("encoding inventory record of %s: %w", name, err)
	}
	if err := inv.storage.Store(ctx, recordKey(name), b); err != nil {
		inv.setUnsaved(name, r)
		return *r, fmt.Errorf("storing inventory record of %s (kept in memory until storage takes it): %w", name, err)
	}
	inv.setUnsaved(name, nil)
	return *r, nil
}

// unsavedRecord returns the record of name that could not be stored.
func (inv *inventory) unsavedRecord(name string) (record, bool) {
	inv.unsavedMu.Lock()
	defer inv.unsavedMu.Unlock()
	r, ok := inv.unsaved[name]
	r.Names = slices.Clone(r.Names)
	return r, ok
}

// setUnsaved keeps r as the record of name that could not be stored, or
// with nil forgets it.
func (inv *inventory) setUnsaved(name string, r *record) {
	inv.unsavedMu.Lock()
	defer inv.unsavedMu.Unlock()
	if r == nil {
		delete(inv.unsaved, name)
		return
	}
	if inv.unsaved == nil {
		inv.unsaved = map[string]record{}
	}
	c := *r
	c.Names = slices.Clone(r.Names)
	inv.unsaved[name] = c
}

// remove deletes the record of name.
func (inv *inventory) remove(ctx context.Context, name string) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.setUnsaved(name, nil)
	if err := inv.storage.Delete(ctx, recordKey(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting inventory record of %s: %w", name, err)
	}
	return nil
}

// list returns every record, keyed by the primary name.
func (inv *inventory) list(ctx context.Context) (map[string]record, error) {
	keys, err := inv.storage.List(ctx, inventoryPrefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		keys, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing inventory: %w", err)
	}
	out := make(map[string]record, len(keys))
	for _, k := range keys {
		if !strings.HasSuffix(k, ".json") || strings.HasPrefix(path.Base(k), ".") {
			continue
		}
		b, err := inv.storage.Load(ctx, k)
		if err != nil {
			continue // deleted in between
		}
		var r record
		if json.Unmarshal(b, &r) != nil || len(r.Names) == 0 {
			continue
		}
		out[r.Names[0]] = r
	}
	inv.unsavedMu.Lock()
	for _, r := range inv.unsaved {
		if len(r.Names) > 0 {
			out[r.Names[0]] = r
		}
	}
	inv.unsavedMu.Unlock()
	return out, nil
}

// acmeFacts is what certmagic's storage holds about one ACME Certificate.
type acmeFacts struct {
	issuerKey string
	chain     []*x509.Certificate
	chainPEM  []byte
	ari       *acme.RenewalInfo
}

// loadACME reads the certificate of name from certmagic's storage, under
// issuerKey or, when that is empty or holds nothing, under any issuer.
// It returns nil when no issuer has one.
func (inv *inventory) loadACME(ctx context.Context, issuerKey, name string) *acmeFacts {
	if issuerKey != "" {
		if f := inv.loadACMEUnder(ctx, issuerKey, name); f != nil {
			return f
		}
	}
	for _, key := range inv.issuerKeys(ctx) {
		if key == issuerKey {
			continue
		}
		if f := inv.loadACMEUnder(ctx, key, name); f != nil {
			return f
		}
	}
	return nil
}

// loadACMEUnder reads the certificate of name stored by the issuer with
// this key, or returns nil.
func (inv *inventory) loadACMEUnder(ctx context.Context, key, name string) *acmeFacts {
	certPEM, err := inv.storage.Load(ctx, certmagic.StorageKeys.SiteCert(key, name))
	if err != nil {
		return nil
	}
	chain, err := parseChain(certPEM)
	if err != nil || len(chain) == 0 {
		return nil
	}
	f := &acmeFacts{issuerKey: key, chain: chain, chainPEM: certPEM}
	if meta, err := inv.storage.Load(ctx, certmagic.StorageKeys.SiteMeta(key, name)); err == nil {
		var res certmagic.CertificateResource
		var data acme.Certificate
		if json.Unmarshal(meta, &res) == nil && len(res.IssuerData) > 0 && json.Unmarshal(res.IssuerData, &data) == nil {
			f.ari = data.RenewalInfo
		}
	}
	return f
}

// issuerKeys lists the issuer directories under certificates/.
func (inv *inventory) issuerKeys(ctx context.Context) []string {
	// CertsPrefix("") is "certificates", the parent of the issuer
	// directories.
	dirs, err := inv.storage.List(ctx, certmagic.StorageKeys.CertsPrefix(""), false)
	if err != nil {
		return nil
	}
	keys := make([]string, 0, len(dirs))
	for _, d := range dirs {
		keys = append(keys, path.Base(d))
	}
	slices.Sort(keys)
	return keys
}

// storedACMENames lists the names with a certificate in certmagic's
// storage under the issuer keys, by issuer key.
func (inv *inventory) storedACMENames(ctx context.Context, keys []string) map[string]string {
	out := map[string]string{}
	for _, key := range keys {
		sites, err := inv.storage.List(ctx, certmagic.StorageKeys.CertsPrefix(key), false)
		if err != nil {
			continue
		}
		for _, s := range sites {
			name := path.Base(s)
			if inv.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(key, name)) {
				if _, ok := out[name]; !ok {
					out[name] = key
				}
			}
		}
	}
	return out
}

func parseChain(pemBytes []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	return chain, nil
}

func encodeChain(ders [][]byte) string {
	var b strings.Builder
	for _, d := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	return b.String()
}

func keyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "ed25519"
	default:
		return strings.ToLower(c.PublicKeyAlgorithm.String())
	}
}

// renewalRatio is the part of a Certificate's lifetime left when it is
// renewed without ARI: certmagic's default, and what the local CA does.
const renewalRatio = 1.0 / 3.0

// fill sets the fields of info that come from the certificate chain, and
// the next renewal: the time ari selected in the CA's window, if any, or
// the point where a third of the lifetime is left, whichever is earlier.
func fill(info *CertificateInfo, chain []*x509.Certificate, ari *acme.RenewalInfo) {
	if len(chain) == 0 {
		return
	}
	leaf := chain[0]
	if len(info.Names) == 0 {
		info.Names = leafNames(leaf)
	}
	info.Issuer = leaf.Issuer.CommonName
	info.KeyType = keyType(leaf)
	info.Serial = leaf.SerialNumber.Text(16)
	info.NotBefore, info.NotAfter = leaf.NotBefore, leaf.NotAfter
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	info.ChainPEM = encodeChain(ders)
	// certmagic renews at the CA's ARI time or when a third of the
	// lifetime is left, whichever comes first.
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	info.NextRenewal = leaf.NotAfter.Add(-time.Duration(float64(life) * renewalRatio))
	info.RenewalReason = ReasonLifetime
	var at time.Time
	switch {
	case ari != nil && !ari.SelectedTime.IsZero():
		at = ari.SelectedTime
	case ari != nil && ari.HasWindow():
		at = ari.SuggestedWindow.Start
	}
	if !at.IsZero() && at.Before(info.NextRenewal) {
		info.NextRenewal, info.RenewalReason = at, ReasonARI
	}
}

func leafNames(leaf *x509.Certificate) []string {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = []string{leaf.Subject.CommonName}
	}
	return names
}

// expiringGrace is how long past its renewal point a Certificate may stay
// unrenewed before it counts as expiring: renewal runs on a timer, so a
// Certificate is routinely a little past the point. A tenth of its
// lifetime, at most an hour.
func expiringGrace(info CertificateInfo) time.Duration {
	return min(time.Hour, info.NotAfter.Sub(info.NotBefore)/10)
}

// status works out the Status of info at now from the record's state.
func status(info CertificateInfo, attempting bool, now time.Time) Status {
	switch {
	case !info.RetiredAt.IsZero():
		return StatusRetired
	case !info.NotAfter.IsZero() && now.After(info.NotAfter):
		return StatusExpired
	case info.Failures > 0:
		return StatusFailing
	case info.NotAfter.IsZero():
		// Not obtained yet and no failure reported: the first attempt is
		// queued or under way.
		return StatusPending
	case attempting && now.Sub(info.LastAttempt) < staleAttempt:
		return StatusRenewing
	case !info.NextRenewal.IsZero() && now.After(info.NextRenewal.Add(expiringGrace(info))):
		return StatusExpiring
	default:
		return StatusValid
	}
}

// fromRecord builds the inventory entry of an ACME (or on-demand)
// Certificate from its record and what certmagic's storage holds.
func (inv *inventory) fromRecord(ctx context.Context, r record, now time.Time) CertificateInfo {
	info := CertificateInfo{
		Names: slices.Clone(r.Names), Source: r.Source, CA: r.CA,
		LastAttempt: r.LastAttempt, LastError: r.LastError, Failures: r.Failures, RetiredAt: r.RetiredAt,
	}
	if f := inv.loadACME(ctx, r.IssuerKey, r.Names[0]); f != nil {
		fill(&info, f.chain, f.ari)
	} else if chain := inv.loadAutocert(ctx, r.Names[0]); chain != nil {
		fill(&info, chain, nil)
	}
	info.Status = status(info, r.Attempting, now)
	return info
}

// loadAutocert reads the certificate of name from the cache of the
// autocert engine (autocert/NAME: its key and chain in PEM), or returns
// nil. autocert reports no events, so only the certificate is known.
func (inv *inventory) loadAutocert(ctx context.Context, name string) []*x509.Certificate {
	b, err := inv.storage.Load(ctx, path.Join("autocert", name))
	if err != nil {
		return nil
	}
	chain, err := parseChain(b)
	if err != nil || len(chain) == 0 {
		return nil
	}
	return chain
}

// certSet is the configured Certificates, by source: what buildTable
// derived from a config.
type certSet struct {
	acme     []string
	internal []string
	// static maps each loaded file certificate to its hosts.
	static map[*tls.Certificate][]string
}

// configured lists the Certificates t serves.
func (t *table) configured() certSet {
	s := certSet{acme: t.acmeHosts, internal: t.internalNames, static: map[*tls.Certificate][]string{}}
	add := func(src *source) {
		if src != nil && src.kind == sourceStatic && src.cert != nil {
			s.static[src.cert] = append(s.static[src.cert], src.name)
		}
	}
	for _, src := range t.exact {
		add(src)
	}
	for _, src := range t.wild {
		add(src)
	}
	add(t.any)
	return s
}

// collect builds the whole inventory: records of ACME, on-demand and
// retired Certificates, plus the file and local CA Certificates of set.
// leaf returns the current local CA leaf of a name, or nil; interCN is
// the local CA intermediate's common name.
func (inv *inventory) collect(ctx context.Context, set certSet, leaf func(string) *tls.Certificate, interCN string, now time.Time) ([]CertificateInfo, error) {
	recs, err := inv.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []CertificateInfo
	for _, host := range set.acme {
		r, ok := recs[host]
		if !ok {
			r = record{Names: []string{host}, Source: SourceACME}
		}
		delete(recs, host)
		out = append(out, inv.fromRecord(ctx, r, now))
	}
	for _, r := range recs {
		out = append(out, inv.fromRecord(ctx, r, now))
	}
	for cert, hosts := range set.static {
		slices.Sort(hosts)
		info := CertificateInfo{Names: hosts, Source: SourceFile}
		chain := cert.Leaf
		if chain == nil && len(cert.Certificate) > 0 {
			chain, _ = x509.ParseCertificate(cert.Certificate[0])
		}
		if chain != nil {
			certs := []*x509.Certificate{chain}
			for _, der := range cert.Certificate[1:] {
				if c, err := x509.ParseCertificate(der); err == nil {
					certs = append(certs, c)
				}
			}
			fill(&info, certs, nil)
			// Nobody renews a file but its owner: the renewal point is a
			// reminder to replace it.
		}
		info.Status = status(info, false, now)
		out = append(out, info)
	}
	for _, name := range set.internal {
		info := CertificateInfo{Names: []string{name}, Source: SourceInternal, Issuer: interCN}
		if c := leaf(name); c != nil && c.Leaf != nil {
			certs := []*x509.Certificate{c.Leaf}
			for _, der := range c.Certificate[1:] {
				if ic, err := x509.ParseCertificate(der); err == nil {
					certs = append(certs, ic)
				}
			}
			fill(&info, certs, nil)
		}
		// Local CA leaves are issued at a handshake and kept in memory
		// only; the first handshake past the renewal point (or with none
		// yet) gets a new one, so an old leaf is not a problem, and a
		// missing one (no handshake yet, or offline) is pending.
		info.Status = StatusValid
		if info.NotAfter.IsZero() {
			info.Status = StatusPending
		}
		out = append(out, info)
	}
	SortCertificates(out)
	return out, nil
}

// peekLeaf returns the local CA's current leaf for name without issuing
// one.
func (ca *localCA) peekLeaf(name string) *tls.Certificate {
	ca.mu.Lock()
	slot := ca.leaves[name]
	ca.mu.Unlock()
	if slot == nil {
		return nil
	}
	slot.mu.Lock()
	defer slot.mu.Unlock()
	return slot.cert
}

// Certificates returns the inventory of every Certificate the Manager
// serves or keeps (retired ones included), sorted by urgency (see
// [SortCertificates]). ACME state is read from storage, so it is the same
// on every instance sharing it.
func (m *Manager) Certificates() []CertificateInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	certs, err := m.CertificatesContext(ctx)
	if err != nil {
		m.logger.Warn("reading the certificate inventory", "error", err)
	}
	return certs
}

// CertificatesContext is [Manager.Certificates] with a context, and the
// error of reading storage.
func (m *Manager) CertificatesContext(ctx context.Context) ([]CertificateInfo, error) {
	inv := m.inventory()
	var extra []CertificateInfo
	if f := m.listAlso.Load(); f != nil {
		var err error
		if extra, err = (*f)(); err != nil {
			return nil, err
		}
	}
	interCN := ""
	m.ca.mu.Lock()
	if m.ca.inter != nil {
		interCN = m.ca.inter.Subject.CommonName
	}
	m.ca.mu.Unlock()
	certs, err := inv.collect(ctx, m.table.Load().configured(), m.ca.peekLeaf, interCN, time.Now())
	if len(extra) > 0 {
		certs = append(certs, extra...)
		SortCertificates(certs)
	}
	return certs, err
}

// ListAlso adds the Certificates f returns to the inventory, as gatehouse's
// ACME server lists those it issued to other machines: the admin
// endpoint, the dashboard and the metrics show them beside the Manager's
// own. f is called at every read of the inventory and must be safe for
// concurrent use; a later call replaces an earlier f.
func (m *Manager) ListAlso(f func() ([]CertificateInfo, error)) {
	m.listAlso.Store(&f)
}

// inventory returns the Manager's inventory, or one on its storage for a
// Manager built without lifecycle (tests).
func (m *Manager) inventory() *inventory {
	if m.lc != nil {
		return m.lc.inv
	}
	if m.store == nil {
		return newInventory(m.frozen.storage)
	}
	return &inventory{storage: m.store}
}

// Inventory reads the inventory offline, from the storage and files cfg
// names, without a running gatehouse: ACME, on-demand and retired
// Certificates from storage, file Certificates from their files, and the
// local CA's names (whose leaves live only in a running gatehouse's
// memory). cfg must be loaded (validated and defaulted).
func Inventory(ctx context.Context, cfg *config.Config) ([]CertificateInfo, error) {
	t, err := buildTable(cfg)
	if err != nil {
		return nil, fmt.Errorf("reading the configured certificates: %w", err)
	}
	interCN := ""
	if b, err := os.ReadFile(filepath.Join(cfg.Storage, "pki", intermediateCertFile)); err == nil {
		if chain, err := parseChain(b); err == nil && len(chain) > 0 {
			interCN = chain[0].Subject.CommonName
		}
	}
	none := func(string) *tls.Certificate { return nil }
	store, closeStore, err := openStorage(cfg, nil)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	return (&inventory{storage: store}).collect(ctx, t.configured(), none, interCN, time.Now())
}
