package gateway

import (
	"log/slog"
	"reflect"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// keepRestartOnly copies into next the settings a running gatehouse cannot
// change (they hold sockets, files or the log), warning for each that
// differs.
func keepRestartOnly(log *slog.Logger, running, next *config.Config) {
	warn := func(key string, was, now any) {
		log.Warn("this setting changes only on restart; keeping the running value", "key", key, "running", was, "new", now)
	}
	if running.Listen != next.Listen {
		warn("listen", running.Listen, next.Listen)
		next.Listen = running.Listen
	}
	if running.Storage != next.Storage {
		warn("storage", running.Storage, next.Storage)
		next.Storage = running.Storage
	}
	if !reflect.DeepEqual(running.StorageEtcd, next.StorageEtcd) {
		warn("storage.etcd", "", "") // no values: they hold the etcd password
		next.StorageEtcd = running.StorageEtcd
	}
	if running.Admin != next.Admin {
		warn("admin", running.Admin, next.Admin)
		next.Admin = running.Admin
	}
	// The ACME issuers and their accounts are built once (tlsmgr refuses
	// to change them live); only their order may change.
	if !next.ACME.SameButIssuerOrder(running.ACME) {
		warn("acme", "", "")
		next.ACME = running.ACME
	}
	if running.Log.Format != next.Log.Format || running.Log.Level != next.Log.Level ||
		running.Log.File != next.Log.File || running.Log.MaxSize != next.Log.MaxSize {
		warn("log", running.Log, next.Log)
		next.Log.Format, next.Log.Level = running.Log.Format, running.Log.Level
		next.Log.File, next.Log.MaxSize = running.Log.File, running.Log.MaxSize
	}
	// The ACME server's database and policy are opened once.
	if !reflect.DeepEqual(running.ACMEServer, next.ACMEServer) {
		warn("acme_server", "", "") // no values: eab_keys are secrets
		next.ACMEServer = running.ACMEServer
	}
	// The fleet's instance is registered and watches its document under
	// the name and mode it started with.
	if !reflect.DeepEqual(running.Fleet, next.Fleet) {
		warn("fleet", running.Fleet, next.Fleet)
		next.Fleet = running.Fleet
	}
	if running.Limits != next.Limits {
		warn("limits", running.Limits, next.Limits)
		next.Limits = running.Limits
	}
	if running.Timeouts.ReadHeader != next.Timeouts.ReadHeader || running.Timeouts.Idle != next.Timeouts.Idle {
		warn("timeouts.read_header/idle", running.Timeouts, next.Timeouts)
		next.Timeouts.ReadHeader, next.Timeouts.Idle = running.Timeouts.ReadHeader, running.Timeouts.Idle
	}
}
