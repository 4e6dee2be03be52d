package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdstore"
)

// openStorage returns the certmagic Storage of cfg: its storage
// directory, or etcd with that directory as the local cache. closeFn
// releases it (etcd's client and the locks still held).
func openStorage(cfg *config.Config, logger *slog.Logger) (store certmagic.Storage, closeFn func() error, err error) {
	if cfg.StorageEtcd == nil {
		return newFileStorage(cfg.Storage), func() error { return nil }, nil
	}
	if cfg.Storage != "" {
		if err := mkdirPrivate(cfg.Storage); err != nil {
			return nil, nil, fmt.Errorf("creating storage cache directory: %w", err)
		}
	}
	s, err := etcdstore.Open(cfg.StorageEtcd, cfg.Storage, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("opening etcd storage: %w", err)
	}
	return s, s.Close, nil
}

// StorageConfig returns a Config whose storage is spec: a directory, or
// etcd://HOST:PORT[,HOST:PORT...]/PREFIX/ for etcd over plain TCP without
// a cache. For TLS, credentials or an encryption key, use a config file's
// storage instead.
func StorageConfig(spec string) (*config.Config, error) {
	rest, ok := strings.CutPrefix(spec, "etcd://")
	if !ok {
		if spec == "" {
			return nil, errors.New("empty storage: want a directory or etcd://host:port/prefix/")
		}
		return &config.Config{Storage: spec}, nil
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	if hosts == "" {
		return nil, fmt.Errorf("storage %q: no etcd host:port", spec)
	}
	e := &config.EtcdStorage{Prefix: "/" + prefix, DialTimeout: config.DefaultEtcdDialTimeout}
	if prefix == "" {
		e.Prefix = config.DefaultEtcdPrefix
	} else if !strings.HasSuffix(e.Prefix, "/") {
		e.Prefix += "/"
	}
	for _, h := range strings.Split(hosts, ",") {
		u := url.URL{Scheme: "http", Host: h}
		e.Endpoints = append(e.Endpoints, u.String())
	}
	return &config.Config{StorageEtcd: e}, nil
}

// CopyReport says what [CopyStorage] did.
type CopyReport struct {
	// Copied lists the keys written to the destination.
	Copied []string
	// Unchanged lists the keys the destination already had, as they are.
	Unchanged []string
}

// CopyStorage copies every certificate, key, ACME account and record
// from the storage of from to the storage of to (a directory or etcd,
// see [StorageConfig]), keeping the key names, so gatehouse can move
// between file and etcd storage. Keys the destination already holds with
// the same value are left alone, so running it again copies nothing;
// other keys of the destination are kept. Private keys are opened with
// the source's encryption key and sealed with the destination's.
// Locks are not copied.
func CopyStorage(ctx context.Context, from, to *config.Config, logger *slog.Logger) (CopyReport, error) {
	var report CopyReport
	src, closeSrc, err := openStorage(from, logger)
	if err != nil {
		return report, fmt.Errorf("opening the source: %w", err)
	}
	defer closeSrc()
	dst, closeDst, err := openStorage(to, logger)
	if err != nil {
		return report, fmt.Errorf("opening the destination: %w", err)
	}
	defer closeDst()
	if dir, ok := storageDir(dst); ok {
		if err := mkdirPrivate(dir); err != nil {
			return report, fmt.Errorf("creating the destination: %w", err)
		}
		// Keys are copied one by one in any order, not as certmagic
		// saves a Certificate: write each file as it comes.
		dst = &certmagic.FileStorage{Path: dir}
	}
	keys, err := src.List(ctx, "", true)
	if err != nil {
		return report, fmt.Errorf("listing the source: %w", err)
	}
	for _, key := range keys {
		if key == "locks" || strings.HasPrefix(key, "locks/") {
			continue // FileStorage's lock files: meaningless elsewhere
		}
		info, err := src.Stat(ctx, key)
		if err != nil {
			return report, fmt.Errorf("copying %s: %w", key, err)
		}
		if !info.IsTerminal {
			continue
		}
		v, err := src.Load(ctx, key)
		if err != nil {
			return report, fmt.Errorf("copying %s: %w", key, err)
		}
		if old, err := dst.Load(ctx, key); err == nil && string(old) == string(v) {
			report.Unchanged = append(report.Unchanged, key)
			continue
		}
		if err := dst.Store(ctx, key, v); err != nil {
			return report, fmt.Errorf("copying %s: %w", key, err)
		}
		report.Copied = append(report.Copied, key)
	}
	return report, nil
}

// CopyStorageSpecs is [CopyStorage] between the storages from and to
// name as [StorageConfig] takes them, as `gatehouse storage copy` does:
// the one left empty is the storage of the config local returns (called
// only then), which alone can carry etcd's TLS, credentials and
// encryption key.
func CopyStorageSpecs(ctx context.Context, from, to string, local func() (*config.Config, error), logger *slog.Logger) (CopyReport, error) {
	side := func(spec string) (*config.Config, error) {
		if spec == "" {
			return local()
		}
		return StorageConfig(spec)
	}
	src, err := side(from)
	if err != nil {
		return CopyReport{}, err
	}
	dst, err := side(to)
	if err != nil {
		return CopyReport{}, err
	}
	return CopyStorage(ctx, src, dst, logger)
}

// GenerateStorageKey writes a new random 32-byte key for
// storage.etcd.encryption_key_file to file, mode 0600; it never replaces
// an existing file.
func GenerateStorageKey(file string) error { return etcdstore.WriteKeyFile(file) }
