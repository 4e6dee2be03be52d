package tlsmgr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Lifetimes of the local CA's certificates. The root lives long because
// users install it by hand (`gatehouse trust`); the intermediate and leaves
// are short so a leaked key is worth little, and gatehouse re-issues them
// by itself.
const (
	rootLifetime         = 10 * 365 * 24 * time.Hour
	intermediateLifetime = 365 * 24 * time.Hour
	defaultLeafLifetime  = 24 * time.Hour
	// backdate covers clients whose clock runs a little behind ours.
	backdate = time.Minute
)

// Names of the local CA's files inside pkiDir, a key prefix of the
// certificate storage: <storage>/pki with file storage, <prefix>storage/pki/
// in etcd, where the keys are sealed like every other private key.
const (
	pkiDir               = "pki"
	rootCertFile         = "root.pem"
	rootKeyFile          = "root.key"
	intermediateCertFile = "intermediate.pem"
	intermediateKeyFile  = "intermediate.key"
)

// pkiKey returns the storage key of the local CA file name.
func pkiKey(name string) string { return pkiDir + "/" + name }

// localCALock is the name of the storage lock held while the local CA is
// loaded or created, and while its intermediate is rotated, so two
// processes sharing a storage (a first `gatehouse run` and `gatehouse
// trust`, or two instances) never each create a root, nor read one
// instance's new intermediate key beside the old certificate.
// certmagic's FileStorage keeps it in
// <storage>/locks/gatehouse_local_ca.lock; etcd storage makes it a lock on
// a lease, so the instances of a fleet starting at once create one CA.
const localCALock = "gatehouse_local_ca"

// rotateLockWait bounds the wait for localCALock when a running instance
// rotates the intermediate, and rotateRetry is how long it serves the
// current intermediate before trying again after a failed rotation. The
// intermediate is due with a third of its life (four months) left, so
// retrying is cheap. A lock left by a crashed process goes stale within
// seconds.
const (
	rotateLockWait = time.Minute
	rotateRetry    = 10 * time.Minute
)

// localCA issues certificates for names no public CA can certify
// (localhost, IP addresses, *.internal). It is a two-level PKI on
// crypto/x509: a long-lived root persisted in the certificate storage
// (files or etcd, so every instance of a fleet trusts and serves the same
// CA), an intermediate persisted beside it and re-issued when a third of
// its life remains, and short-lived leaves kept only in memory.
//
// A running instance rotates the intermediate in the background, under
// localCALock, while handshakes keep getting leaves from the current one.
type localCA struct {
	// store holds the root and intermediate under pkiDir, and the lock
	// localCALock.
	store certmagic.Storage
	// leafLifetime is the validity of a leaf; a field so tests can shorten
	// it.
	leafLifetime time.Duration
	// now is the clock; a field so tests can move it.
	now func() time.Time
	// logger reports rotations of the intermediate; it discards unless
	// the Manager sets it.
	logger *slog.Logger

	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey

	// ctx is the parent of rotations; close cancels it and waits on wg,
	// which counts the rotation goroutine.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards inter, interKey, leaves, rotating, retryAt and closed. It
	// is never held while a leaf is signed, nor while localCALock is
	// awaited.
	mu       sync.Mutex
	inter    *x509.Certificate
	interKey *ecdsa.PrivateKey
	leaves   map[string]*leafSlot
	// rotating reports whether a rotation goroutine runs; retryAt is
	// when the next may start after one failed.
	rotating bool
	retryAt  time.Time
	closed   bool
}

// leafSlot holds the current leaf of one name.
type leafSlot struct {
	// mu guards cert and renewAt, and is held while a leaf is issued, so
	// one issuance per name runs at a time while other names proceed.
	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

// LocalRoot returns the PEM of the local CA's root certificate and the path
// of its file under the storage directory storage, creating the CA if it
// does not exist yet. It serves `gatehouse trust`, which installs the root
// in trust stores. It waits, until ctx is done, for another process that
// is creating the CA.
func LocalRoot(ctx context.Context, storage string) (pemBytes []byte, path string, err error) {
	pemBytes, err = localRootOn(ctx, &certmagic.FileStorage{Path: storage})
	return pemBytes, filepath.Join(storage, pkiDir, rootCertFile), err
}

// LocalRootOf is [LocalRoot] for the certificate storage of cfg, etcd
// included. where is the root's file: in the storage directory, or in the
// local cache of etcd storage (which the read refreshes); with etcd and
// no cache it names the etcd key.
func LocalRootOf(ctx context.Context, cfg *config.Config) (pemBytes []byte, where string, err error) {
	if cfg.StorageEtcd == nil {
		return LocalRoot(ctx, cfg.Storage)
	}
	store, closeStore, err := openStorage(cfg, nil)
	if err != nil {
		return nil, "", err
	}
	defer closeStore()
	pemBytes, err = localRootOn(ctx, store)
	where = "etcd key " + cfg.StorageEtcd.Prefix + "storage/" + pkiKey(rootCertFile)
	if cfg.Storage != "" {
		where = filepath.Join(cfg.Storage, pkiDir, rootCertFile)
	}
	return pemBytes, where, err
}

// ReadLocalRoot returns the local CA's root certificate and the path of
// its file under storage, without creating the CA: an error matching
// fs.ErrNotExist says there is none. It serves `gatehouse untrust`.
func ReadLocalRoot(storage string) (*x509.Certificate, string, error) {
	path := filepath.Join(storage, pkiDir, rootCertFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, path, fmt.Errorf("reading the local CA root: %w", err)
	}
	cert, err := ParseRoot(data, path)
	return cert, path, err
}

// ParseRoot parses the local CA's root as [LocalRoot] and [LocalRootOf]
// return it (PEM); where names it in errors.
func ParseRoot(pemBytes []byte, where string) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("reading the local CA root: %s holds no PEM certificate", where)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the local CA root %s: %w", where, err)
	}
	return cert, nil
}

// localRootOn returns the PEM of the root of the local CA in store,
// creating the CA if need be.
func localRootOn(ctx context.Context, store certmagic.Storage) ([]byte, error) {
	ca, err := openLocalCAOn(ctx, store, time.Now)
	if err != nil {
		return nil, err
	}
	defer ca.close()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw}), nil
}

// openLocalCAOn loads the CA kept under pkiDir in store, creating the
// root (once) and the intermediate (when absent or near its end) as
// needed. A complete CA whose intermediate is not due is loaded without
// the lock, so an instance restarted while etcd is down starts from the
// local cache. Otherwise it works under the storage lock localCALock, and
// looks again only once it holds it: another process may have created the
// CA meanwhile. The caller calls close when done with a CA that issues
// leaves.
func openLocalCAOn(ctx context.Context, store certmagic.Storage, now func() time.Time) (_ *localCA, err error) {
	if dir, ok := storageDir(store); ok {
		if err := mkdirPrivate(filepath.Join(dir, pkiDir)); err != nil {
			return nil, fmt.Errorf("creating local CA directory: %w", err)
		}
	}
	ca := &localCA{
		store: store, leafLifetime: defaultLeafLifetime, now: now,
		logger: slog.New(slog.DiscardHandler), leaves: map[string]*leafSlot{},
	}
	ca.ctx, ca.cancel = context.WithCancel(context.Background())
	if ca.loadCurrent(ctx) {
		return ca, nil
	}
	unlock, err := lockLocalCAPatiently(ctx, store)
	if err != nil {
		ca.cancel()
		return nil, err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	root, rootKey, err := loadPair(ctx, store, rootCertFile, rootKeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		root, rootKey, err = ca.createRoot(ctx)
		if err != nil {
			ca.cancel()
			return nil, fmt.Errorf("creating local CA root: %w", err)
		}
	case err != nil:
		ca.cancel()
		return nil, fmt.Errorf("loading local CA root: %w", err)
	}
	ca.root, ca.rootKey = root, rootKey
	if _, err := ca.loadOrCreateIntermediate(ctx); err != nil {
		ca.cancel()
		return nil, err
	}
	return ca, nil
}

// loadCurrent loads the stored root and intermediate without the lock,
// and reports whether they make a CA that needs nothing created: any
// failure (including a read between the two writes of a rotation) sends
// the caller to the locked path, which looks again.
func (ca *localCA) loadCurrent(ctx context.Context) bool {
	root, rootKey, err := loadPair(ctx, ca.store, rootCertFile, rootKeyFile)
	if err != nil {
		return false
	}
	inter, interKey, err := loadPair(ctx, ca.store, intermediateCertFile, intermediateKeyFile)
	if err != nil || inter.CheckSignatureFrom(root) != nil || intermediateDue(inter, ca.now()) {
		return false
	}
	ca.root, ca.rootKey, ca.inter, ca.interKey = root, rootKey, inter, interKey
	return true
}

// openLockWait bounds how long openLocalCAOn keeps trying to take
// localCALock while the storage fails to answer (etcd electing a leader,
// or briefly overloaded), and openLockRetry is the pause between tries. A
// storage still failing after that is an error: with etcd down and no
// cached CA, an instance cannot serve the fleet's local CA.
const (
	openLockWait  = 30 * time.Second
	openLockRetry = 500 * time.Millisecond
)

// lockLocalCAPatiently is lockLocalCA that tries again, for openLockWait,
// when the storage fails rather than ctx.
func lockLocalCAPatiently(ctx context.Context, store certmagic.Storage) (unlock func() error, err error) {
	deadline := time.Now().Add(openLockWait)
	for {
		unlock, err = lockLocalCA(ctx, store)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return unlock, err
		}
		t := time.NewTimer(openLockRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// lockLocalCA takes localCALock of store, waiting until ctx is done, and
// returns the function that releases it.
func lockLocalCA(ctx context.Context, store certmagic.Storage) (unlock func() error, err error) {
	if err := store.Lock(ctx, localCALock); err != nil {
		return nil, fmt.Errorf("locking local CA: %w", err)
	}
	return func() error {
		// Unlock even when ctx is done: a lock left behind stalls every
		// other process until it goes stale.
		if err := store.Unlock(context.WithoutCancel(ctx), localCALock); err != nil {
			return fmt.Errorf("unlocking local CA: %w", err)
		}
		return nil
	}, nil
}

// loadOrCreateIntermediate makes the intermediate in storage the current
// one, first issuing and persisting a new one when there is none, it is
// not from the root, or less than a third of its life remains. It reports
// whether it issued one. localCALock must be held.
func (ca *localCA) loadOrCreateIntermediate(ctx context.Context) (created bool, err error) {
	now := ca.now()
	inter, interKey, err := loadPair(ctx, ca.store, intermediateCertFile, intermediateKeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("loading local CA intermediate: %w", err)
	case inter.CheckSignatureFrom(ca.root) != nil:
		// The root was replaced by hand; the old intermediate is useless.
		inter, interKey = nil, nil
	}
	if intermediateDue(inter, now) {
		inter, interKey, err = ca.createIntermediate(ctx, now)
		if err != nil {
			return false, err
		}
		created = true
	}
	ca.mu.Lock()
	ca.inter, ca.interKey = inter, interKey
	ca.mu.Unlock()
	return created, nil
}

// intermediateDue reports whether inter is missing or has less than a
// third of its life left at now.
func intermediateDue(inter *x509.Certificate, now time.Time) bool {
	if inter == nil {
		return true
	}
	life := inter.NotAfter.Sub(inter.NotBefore)
	return inter.NotAfter.Sub(now) <= life/3
}

// close stops a rotation of the intermediate in progress and waits for it.
func (ca *localCA) close() {
	ca.mu.Lock()
	ca.closed = true
	ca.mu.Unlock()
	ca.cancel()
	ca.wg.Wait()
}

// slot returns name's leafSlot, creating it on first use.
func (ca *localCA) slot(name string) *leafSlot {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	slot := ca.leaves[name]
	if slot == nil {
		slot = &leafSlot{}
		ca.leaves[name] = slot
	}
	return slot
}

// leaf returns the certificate chain (leaf, intermediate) for name, a
// normalised DNS name, wildcard or IP address. A leaf is re-issued once two
// thirds of its life have passed, at handshake time, so no timer is needed.
func (ca *localCA) leaf(name string) (*tls.Certificate, error) {
	slot := ca.slot(name)
	slot.mu.Lock()
	defer slot.mu.Unlock()
	now := ca.now()
	if slot.cert != nil && now.Before(slot.renewAt) {
		return slot.cert, nil
	}
	cert, err := ca.issueLeaf(name, now)
	if err != nil {
		return nil, fmt.Errorf("issuing local certificate for %q: %w", name, err)
	}
	slot.cert = cert
	slot.renewAt = now.Add(ca.leafLifetime * 2 / 3)
	return cert, nil
}

// retain forgets the leaves of names not in names, so hosts removed from
// the config do not keep keys in memory.
func (ca *localCA) retain(names []string) {
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	for n := range ca.leaves {
		if !keep[n] {
			delete(ca.leaves, n)
		}
	}
}

func (ca *localCA) issueLeaf(name string, now time.Time) (*tls.Certificate, error) {
	inter, interKey := ca.intermediate(now)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(ca.leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(inter.NotAfter) {
		tmpl.NotAfter = inter.NotAfter
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, &key.PublicKey, interKey)
	if err != nil {
		return nil, fmt.Errorf("signing leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing leaf: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, inter.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// intermediate returns the current intermediate. When it is due it starts
// a rotation in the background and still returns the current one, which
// has months left: the handshake that asks never waits for localCALock.
func (ca *localCA) intermediate(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if intermediateDue(ca.inter, now) && !ca.rotating && !ca.closed && !now.Before(ca.retryAt) {
		ca.rotating = true
		ca.wg.Go(ca.rotate)
	}
	return ca.inter, ca.interKey
}

// rotate replaces the due intermediate under localCALock, waiting for it
// at most rotateLockWait. Holding the lock, it looks at storage first:
// another instance sharing it may have rotated already, and its
// intermediate is loaded rather than a second one written. A failure is
// logged and retried after rotateRetry.
func (ca *localCA) rotate() {
	err := func() (err error) {
		ctx, cancel := context.WithTimeout(ca.ctx, rotateLockWait)
		defer cancel()
		unlock, err := lockLocalCA(ctx, ca.store)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, unlock()) }()
		created, err := ca.loadOrCreateIntermediate(ctx)
		if err != nil {
			return err
		}
		ca.mu.Lock()
		serial := ca.inter.SerialNumber.Text(16)
		ca.mu.Unlock()
		if created {
			ca.logger.Info("local CA intermediate rotated", "serial", serial)
		} else {
			ca.logger.Info("local CA intermediate loaded, rotated by another instance", "serial", serial)
		}
		return nil
	}()
	ca.mu.Lock()
	ca.rotating = false
	if err != nil {
		ca.retryAt = ca.now().Add(rotateRetry)
	}
	ca.mu.Unlock()
	if err != nil {
		ca.logger.Warn("rotating the local CA intermediate; serving the current one", "retry_in", rotateRetry.String(), "error", err)
	}
}

// createIntermediate issues a new intermediate and persists it.
// localCALock must be held.
func (ca *localCA) createIntermediate(ctx context.Context, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating intermediate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"gatehouse"}, CommonName: "gatehouse local CA intermediate"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(intermediateLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if tmpl.NotAfter.After(ca.root.NotAfter) {
		tmpl.NotAfter = ca.root.NotAfter
	}
	cert, err := createAndStore(ctx, ca.store, intermediateCertFile, intermediateKeyFile, tmpl, ca.root, key, ca.rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating local CA intermediate: %w", err)
	}
	return cert, key, nil
}

func (ca *localCA) createRoot(ctx context.Context) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"gatehouse"}, CommonName: "gatehouse local CA root " + now.UTC().Format("2006-01-02")},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	cert, err := createAndStore(ctx, ca.store, rootCertFile, rootKeyFile, tmpl, tmpl, key, key)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// createAndStore signs tmpl and stores the certificate and key under
// pkiDir, the key first so a crash never leaves a certificate without its
// key. FileStorage writes each file atomically with mode 0600.
func createAndStore(ctx context.Context, store certmagic.Storage, certFile, keyFile string, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	if err := store.Store(ctx, pkiKey(keyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})); err != nil {
		return nil, fmt.Errorf("storing %s: %w", keyFile, err)
	}
	if err := store.Store(ctx, pkiKey(certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return nil, fmt.Errorf("storing %s: %w", certFile, err)
	}
	return cert, nil
}

// loadPair reads a PEM certificate and its EC key from pkiDir of store.
// It returns an error matching fs.ErrNotExist only when both are absent.
func loadPair(ctx context.Context, store certmagic.Storage, certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, certErr := store.Load(ctx, pkiKey(certFile))
	keyPEM, keyErr := store.Load(ctx, pkiKey(keyFile))
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		return nil, nil, fs.ErrNotExist
	}
	if certErr != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", certFile, certErr)
	}
	if keyErr != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", keyFile, keyErr)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s and %s: %w", certFile, keyFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("parsing %s: key is %T, want ECDSA", keyFile, pair.PrivateKey)
	}
	return pair.Leaf, key, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial, nil
}

// mkdirPrivate creates dir with mode 0700, and tightens it to 0700 if it
// exists with wider permissions: it holds private keys.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}
