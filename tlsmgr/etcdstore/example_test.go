package etcdstore_test

import (
	"context"
	"log"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdstore"
)

// Example opens etcd storage as gatehouse does for storage.etcd, and
// takes the lock certmagic takes while it obtains a certificate.
func Example() {
	s, err := etcdstore.Open(&config.EtcdStorage{
		Endpoints:         []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"},
		Prefix:            "/gatehouse/",
		EncryptionKeyFile: "/etc/gatehouse/storage.key",
	}, "/var/lib/gatehouse", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	var storage certmagic.Storage = s // for certmagic.Config.Storage
	ctx := context.Background()
	if err := storage.Lock(ctx, "issue_cert_example.com"); err != nil {
		log.Fatal(err)
	}
	defer storage.Unlock(ctx, "issue_cert_example.com")
	select {
	case <-s.LockLost("issue_cert_example.com"):
		// The lease expired: another instance may hold the lock now.
	default:
	}
}
