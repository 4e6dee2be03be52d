package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Fleet names an instance of a fleet: several gatehouses sharing one
// storage.etcd, and with SharedConfig one config.
type Fleet struct {
	// Name names the instance in the fleet's registry
	// (<prefix>instances/<name>) and in `gatehouse fleet status`. Default:
	// the hostname. Letters, digits, ".", "-" and "_".
	Name string `yaml:"name,omitempty"`
	// SharedConfig takes every key but the local ones ([LocalKeys]) from
	// the fleet's shared document in etcd (<prefix>config, written by
	// `gatehouse config push`) instead of this file, and applies each new
	// revision of it. Needs storage.etcd.
	SharedConfig bool `yaml:"shared_config,omitempty"`
	// Address is where this instance is reached, as `gatehouse fleet
	// status` shows it. Default: listen.https.
	Address string `yaml:"address,omitempty"`
}

// LocalKeys are the top-level keys that belong to one machine: with
// fleet.shared_config they stay in each instance's own file, and the
// shared document may not hold them. Every other key (sites, acme,
// on_demand, events, ...) is the fleet's. acme_server is local because its
// database (accounts, orders, what it issued) lives on the machine that
// serves it.
var LocalKeys = []string{"listen", "storage", "admin", "log", "fleet", "docker", "acme_server"}

// sharesConfig reports whether c is an instance's own file whose shared
// keys come from the fleet's document.
func (c *Config) sharesConfig() bool {
	return c.Fleet != nil && c.Fleet.SharedConfig && !c.shared
}

// fleet checks the fleet key and, in an instance's own file with
// fleet.shared_config, that no shared key is written there.
func (v *validator) fleet() {
	f := v.c.Fleet
	if f == nil {
		return
	}
	switch {
	case f.Name == "":
		v.addf("fleet.name", "the hostname could not be read; name this instance")
	case strings.Trim(f.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "":
		v.addf("fleet.name", "%q: use letters, digits, \".\", \"-\" and \"_\" only (it is part of an etcd key)", f.Name)
	}
	if f.Address != "" {
		if msg := checkAddr(f.Address, "10.0.0.1:443"); msg != "" {
			v.addf("fleet.address", "%s", msg)
		}
	}
	if !f.SharedConfig {
		return
	}
	if v.c.StorageEtcd == nil {
		v.addf("fleet.shared_config", "needs storage.etcd: the shared document lives in etcd")
	}
	if !v.c.sharesConfig() {
		return
	}
	for path := range v.c.positions {
		if strings.ContainsAny(path, ".[") || path == "" || strings.HasPrefix(path, "x-") || slices.Contains(LocalKeys, path) {
			continue
		}
		v.addf(path, "with fleet.shared_config, %s comes from the fleet's shared document (gatehouse config push); remove it from this file", path)
	}
}

// LoadShared reads the fleet's shared document from the file at path and
// merges it with local; see [ParseShared].
func LoadShared(path string, local *Config) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the fleet's shared config: %w", err)
	}
	return ParseShared(path, data, local)
}

// ParseShared reads the fleet's shared document from data, named file in
// problems (its etcd key and revision, or the file being pushed), and
// returns the config an instance with fleet.shared_config runs: the local
// keys ([LocalKeys]) of local, an instance's own file as [Load] returns
// it, and every other key from the document. The document is checked as
// strictly as a file: unknown keys, wrong kinds, a local key written in
// it, and then the whole config's validation, every problem with its
// place in the document. Relative paths in the document are resolved
// against local's directory, as each instance reads them on its own
// machine.
func ParseShared(file string, data []byte, local *Config) (*Config, error) {
	// ${VAR} is expanded from each instance's environment, so a secret
	// (a DNS provider's token) need not be written into etcd.
	root, c, err := check(file, data)
	if err != nil {
		return nil, err
	}
	for _, k := range LocalKeys {
		if p, ok := c.positions[k]; ok {
			c.problems = append(c.problems, Problem{File: file, Position: p, Path: k,
				Message: fmt.Sprintf("%s belongs to each instance's own file, not the fleet's shared document", k)})
			c.suppress = append(c.suppress, k)
		}
	}
	cfg, err := decodeChecked(file, root, c)
	if err != nil {
		return nil, err
	}
	if local.File != "" {
		dir, err := filepath.Abs(filepath.Dir(local.File))
		if err != nil {
			return nil, fmt.Errorf("resolving config directory: %w", err)
		}
		cfg.resolvePaths(dir)
	}
	cfg.withDefaults()
	// After the defaults, so a Listener the local file turned off stays
	// off.
	cfg.Listen, cfg.Storage, cfg.StorageEtcd, cfg.Admin, cfg.Log = local.Listen, local.Storage, local.StorageEtcd, local.Admin, local.Log
	cfg.Fleet, cfg.Docker, cfg.ACMEServer = local.Fleet, local.Docker, local.ACMEServer
	cfg.shared = true
	return finish(cfg, c)
}
