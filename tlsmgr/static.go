package tlsmgr

import (
	"crypto/tls"
	"fmt"
	"os"
)

// loadStatic loads a certificate managed by hand. Apply calls it every time,
// so a SIGHUP picks up files an operator (or certbot) replaced; a bad file
// fails the whole Apply and the previous certificate stays in service.
func loadStatic(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

// looseKeyMode reports whether the key file can be read by group or others,
// which is worth a warning: it is a private key.
func looseKeyMode(keyFile string) bool {
	fi, err := os.Stat(keyFile)
	return err == nil && fi.Mode().Perm()&0o077 != 0
}
