//go:build !linux

package trust

import "crypto/x509"

// systemStore is the platform's own store (macOS keychain, Windows
// certificate store), which truststore changes with the platform's tools,
// asking for rights as the platform does.
// systemKnown: systemHas cannot look into the platform's store.
const systemKnown = false

func systemStore() *store {
	return &store{Store: Store{Name: StoreSystem}}
}

// systemHas cannot look into the platform's store: Install adds cert
// again, which the platform's tools accept.
func systemHas(*x509.Certificate) bool { return false }

// writable leaves rights to the platform's tools.
func writable(string) bool { return true }

// Debian's ca-certificates-java runs on Linux only.
const debianJavaStore = ""

func removeDebianAlias(string, string, *x509.Certificate) error { return nil }
