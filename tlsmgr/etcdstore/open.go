package etcdstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// NewClient returns an etcd client for cfg: its endpoints, TLS files and
// credentials. It does not wait for etcd, which may be down.
func NewClient(cfg *config.EtcdStorage) (*clientv3.Client, error) {
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// The client's own logs (reconnects, retries) would bypass slog;
		// what matters reaches callers as errors.
		Logger: zap.NewNop(),
	}
	if cc.DialTimeout == 0 {
		cc.DialTimeout = config.DefaultEtcdDialTimeout
	}
	https := false
	for _, ep := range cfg.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if cfg.TLS != nil || https {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t := cfg.TLS; t != nil {
			if t.CA != "" {
				pemBytes, err := os.ReadFile(t.CA)
				if err != nil {
					return nil, fmt.Errorf("reading storage.etcd.tls.ca: %w", err)
				}
				tc.RootCAs = x509.NewCertPool()
				if !tc.RootCAs.AppendCertsFromPEM(pemBytes) {
					return nil, fmt.Errorf("reading storage.etcd.tls.ca %s: no PEM certificate found", t.CA)
				}
			}
			if t.Cert != "" {
				cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
				if err != nil {
					return nil, fmt.Errorf("reading storage.etcd.tls.cert and key: %w", err)
				}
				tc.Certificates = []tls.Certificate{cert}
			}
		}
		cc.TLS = tc
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return c, nil
}

// Open returns a Storage for cfg with its own client (closed by Close),
// the local copy in cacheDir ("" for none). The encryption key, if
// configured, must be readable and 32 bytes long.
func Open(cfg *config.EtcdStorage, cacheDir string, logger *slog.Logger) (*Storage, error) {
	opts := Options{
		Prefix:    cfg.Prefix,
		CacheDir:  cacheDir,
		OpTimeout: cfg.DialTimeout,
		Logger:    logger,
		KeyFile:   cfg.EncryptionKeyFile,
	}
	if cfg.EncryptionKeyFile != "" {
		key, err := ReadKeyFile(cfg.EncryptionKeyFile)
		if err != nil {
			return nil, err
		}
		opts.EncryptionKey = key
	}
	client, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	s, err := New(client, opts)
	if err != nil {
		client.Close()
		return nil, err
	}
	s.ownClient = true
	return s, nil
}
