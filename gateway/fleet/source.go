package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdstore"
)

// Reporter is what the registry reports of a running instance;
// *gateway.Gateway implements it.
type Reporter interface {
	// Running is the config in force (nil before it starts).
	Running() *config.Config
	// CertificatesHeld counts the Certificates served.
	CertificatesHeld() int
}

// Options tune a [Source].
type Options struct {
	// Version is the gatehouse version the registry reports.
	Version string
	// TTL is the lease of the instance's registration: this long after
	// the instance stops renewing it (killed, cut off from etcd), it is
	// gone. Default 10s.
	TTL time.Duration
}

// DefaultTTL is the registration lease's default TTL.
const DefaultTTL = 10 * time.Second

// Source is the primary config Source of an instance of a fleet: its own
// file and, with fleet.shared_config, the fleet's document, watched in
// etcd and merged with the file by [config.ParseShared]. Its Watch also
// keeps the instance's registration under <prefix>instances/<name>.
type Source struct {
	// Gateway is what the registry reports; set it before the gateway
	// runs. Nil reports no revision and no Certificates.
	Gateway Reporter

	local   *gateway.File
	client  *clientv3.Client
	prefix  string
	shared  bool
	timeout time.Duration
	// cacheFile keeps the last good document, for a start while etcd is
	// unreachable.
	cacheFile string
	// cached is the Revision of the document in cacheFile, once known,
	// so each Load does not read the file back to compare.
	cached  atomic.Int64
	name    string
	address string
	version string
	ttl     time.Duration

	mu sync.Mutex // guards doc, fetched and lastErr
	// doc is the latest document read from etcd (or the cache file).
	doc Document
	// fetched reports that doc came from etcd, so Load need not read it.
	fetched bool
	// lastErr is why the latest document was refused; "" when it applied.
	lastErr string
}

// NewSource returns the fleet Source of an instance whose own file is
// file, loaded as local (which has storage.etcd and fleet). It connects
// to etcd lazily: etcd may be down. Close it when the gateway has stopped.
func NewSource(local *config.Config, file *gateway.File, opts Options) (*Source, error) {
	e := local.StorageEtcd
	if e == nil || local.Fleet == nil {
		return nil, fmt.Errorf("a fleet needs fleet and storage.etcd in %s", local.File)
	}
	client, err := etcdstore.NewClient(e)
	if err != nil {
		return nil, err
	}
	return &Source{
		local: file, client: client, prefix: e.Prefix, shared: local.Fleet.SharedConfig,
		timeout:   cmp.Or(e.DialTimeout, config.DefaultEtcdDialTimeout),
		cacheFile: filepath.Join(local.Storage, "fleet-config.yaml"),
		name:      local.Fleet.Name, address: cmp.Or(local.Fleet.Address, local.Listen.HTTPS, local.Listen.HTTP),
		version: opts.Version, ttl: cmp.Or(opts.TTL, DefaultTTL),
	}, nil
}

// Close closes the etcd connection.
func (s *Source) Close() error { return s.client.Close() }

// Name implements [gateway.Source].
func (s *Source) Name() string { return "fleet" }

// RefusedError is a revision of the fleet's document that does not
// validate (written past `config push`, with etcdctl): the running config
// keeps serving. Its message is one line, so the refusal is one log line.
type RefusedError struct {
	Revision int64
	Err      error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing the fleet's config revision %d: %s", e.Revision, oneLine(e.Err))
}

// Unwrap deliberately returns nothing: the gateway logs each of a
// config's Problems on a line of its own, and a refused revision is one
// event.

func oneLine(err error) string {
	var ps config.Problems
	if errors.As(err, &ps) && len(ps) > 1 {
		return fmt.Sprintf("%s (and %d more problems)", ps[0].Error(), len(ps)-1)
	}
	return err.Error()
}

// Load implements [gateway.Source]: the own file, with the fleet's
// current document when shared_config. No document yet means the file's
// keys alone (no Sites).
func (s *Source) Load(ctx context.Context) (*config.Config, error) {
	local, err := s.local.Load(ctx)
	if err != nil || !s.shared {
		return local, err
	}
	doc, err := s.document(ctx)
	if err != nil {
		return nil, err
	}
	if doc.Revision == 0 {
		return local, nil
	}
	cfg, err := config.ParseShared(doc.name(s.prefix), doc.Data, local)
	if err != nil {
		refused := &RefusedError{Revision: doc.Revision, Err: err}
		s.setErr(refused.Error())
		return nil, refused
	}
	cfg.SharedRevision = doc.Revision
	s.setErr("")
	s.saveCache(doc)
	return cfg, nil
}

func (s *Source) setErr(msg string) {
	s.mu.Lock()
	s.lastErr = msg
	s.mu.Unlock()
}

// document returns the latest document, reading it from etcd if the
// watch has not brought one yet, or from the cache file when etcd cannot
// be reached.
func (s *Source) document(ctx context.Context) (Document, error) {
	s.mu.Lock()
	doc, fetched := s.doc, s.fetched
	s.mu.Unlock()
	if fetched {
		return doc, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d, err := Pull(ctx, s.client, s.prefix)
	if err == nil {
		s.setDoc(d, true)
		return d, nil
	}
	data, cerr := os.ReadFile(s.cacheFile)
	if cerr != nil {
		return Document{}, fmt.Errorf("%w; no local copy either: %v", err, cerr)
	}
	rev, _ := baseOf(data)
	d = Document{Data: pulledHeader.ReplaceAll(data, nil), Revision: rev}
	s.setDoc(d, false)
	return d, nil
}

// setDoc records d if it is newer than the document known, and reports
// whether it was.
func (s *Source) setDoc(d Document, fetched bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched = s.fetched || fetched
	if d.Revision <= s.doc.Revision {
		return false
	}
	s.doc = d
	return true
}

// saveCache writes the last good document beside the certificate cache,
// for a restart while etcd is down. It may hold secrets: mode 0600.
func (s *Source) saveCache(d Document) {
	if s.cached.Load() == d.Revision {
		return
	}
	if old, err := os.ReadFile(s.cacheFile); err == nil {
		if rev, _ := baseOf(old); rev == d.Revision {
			s.cached.Store(rev)
			return
		}
	}
	if err := os.MkdirAll(filepath.Dir(s.cacheFile), 0o700); err != nil {
		return
	}
	tmp := s.cacheFile + ".tmp"
	if err := os.WriteFile(tmp, Pulled(d), 0o600); err != nil {
		return
	}
	if os.Rename(tmp, s.cacheFile) == nil {
		s.cached.Store(d.Revision)
	}
}

// Watch implements [gateway.Source]: the own file as [gateway.File]
// watches it, the fleet's document in etcd (a new revision is reported
// at once; the gateway's debounce applies it within its 1 s bound), and
// the instance's registration, until ctx is done.
func (s *Source) Watch(ctx context.Context, log *slog.Logger, changed func(string)) {
	var wg sync.WaitGroup
	wg.Go(func() { s.local.Watch(ctx, log, changed) })
	wg.Go(func() { s.register(ctx, log) })
	if s.shared {
		key := ConfigKey(s.prefix)
		_ = etcdstore.Watch(ctx, s.client, key, func(u etcdstore.Update) {
			found := false
			for _, it := range u.Items {
				if it.Key != key {
					continue // a longer key under the same prefix
				}
				found = true
				if it.Deleted {
					log.Warn("the fleet's config was deleted from etcd; keeping the running one", "revision", it.ModRevision)
					continue
				}
				if s.setDoc(Document{Data: it.Value, Revision: it.ModRevision}, true) {
					changed(fmt.Sprintf("fleet config revision %d", it.ModRevision))
				}
			}
			if u.Resync && !found {
				s.setDoc(Document{}, true)
			}
		})
	}
	wg.Wait()
}

// Status reads the fleet's registry (see [Status]).
func (s *Source) Status(ctx context.Context) (admin.FleetStatus, error) {
	return Status(ctx, s.client, s.prefix)
}

// StartConfig is the config to start with: [Source.Load]'s, or, when the
// fleet's current document is refused, the last good one this instance
// kept, so a restart does not lose the Sites a bad write took away.
func (s *Source) StartConfig(ctx context.Context) (*config.Config, error) {
	cfg, err := s.Load(ctx)
	var refused *RefusedError
	if !errors.As(err, &refused) {
		return cfg, err
	}
	data, cerr := os.ReadFile(s.cacheFile)
	if cerr != nil {
		return nil, err
	}
	rev, _ := baseOf(data)
	local, lerr := s.local.Load(ctx)
	if lerr != nil {
		return nil, lerr
	}
	d := Document{Data: pulledHeader.ReplaceAll(data, nil), Revision: rev}
	cfg, cerr = config.ParseShared(d.name(s.prefix), d.Data, local)
	if cerr != nil {
		return nil, refused
	}
	cfg.SharedRevision = rev
	return cfg, nil
}
