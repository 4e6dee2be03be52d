package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/smallstep/truststore"
	"golang.org/x/sys/unix"
)

// systemKnown: systemHas looks into the system store.
const systemKnown = true

func systemStore() *store {
	s := &store{Store: Store{Name: StoreSystem}}
	if truststore.SystemTrustCommand == nil {
		s.skip = "no system trust store known on this Linux (none of the directories update-ca-certificates, update-ca-trust or trust read)"
		return s
	}
	s.Where = filepath.Dir(truststore.SystemTrustFilename)
	s.needsRoot = !mayChange(s.Where)
	return s
}

// systemFile is where truststore writes cert in the system store.
func systemFile(cert *x509.Certificate) string {
	// truststore's name for a certificate without its prefix option.
	name := cert.Subject.CommonName + " " + cert.SerialNumber.String()
	if cert.Subject.CommonName == "" {
		name = "Truststore Development CA " + cert.SerialNumber.String()
	}
	return fmt.Sprintf(truststore.SystemTrustFilename, strings.ReplaceAll(name, " ", "_"))
}

// systemHas reports whether cert's file is in the system store's
// directory with cert in it.
func systemHas(cert *x509.Certificate) bool {
	data, err := os.ReadFile(systemFile(cert))
	if err != nil {
		return false
	}
	block, _ := pem.Decode(data)
	return block != nil && bytes.Equal(block.Bytes, cert.Raw)
}

// writable reports whether this process may write path, as the kernel
// decides (root, owner, group, ACLs).
func writable(path string) bool {
	return unix.Access(path, unix.W_OK) == nil
}

// debianJavaAlias is the alias Debian's ca-certificates-java gives cert
// in Java's keystore once update-ca-certificates has it.
func debianJavaAlias(cert *x509.Certificate) string {
	return "debian:" + strings.ToLower(strings.TrimSuffix(filepath.Base(systemFile(cert)), ".crt")) + ".pem"
}

// debianJavaStore is the Java keystore Debian's ca-certificates-java
// keeps in step with the system store.
const debianJavaStore = "/etc/ssl/certs/java/cacerts"

// removeDebianAlias deletes the entry Debian's ca-certificates-java made
// for cert in keystore, if there is one, with keytool ("" finds one).
func removeDebianAlias(keytool, keystore string, cert *x509.Certificate) error {
	if _, err := os.Stat(keystore); err != nil {
		return nil
	}
	if keytool == "" {
		var err error
		if keytool, err = exec.LookPath("keytool"); err != nil {
			return nil
		}
	}
	alias := debianJavaAlias(cert)
	cmd := exec.Command(keytool, "-delete", "-alias", alias, "-keystore", keystore, "-storepass", truststore.JavaStorePass)
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "does not exist") {
		return fmt.Errorf("deleting alias %s from %s: %w: %s", alias, keystore, err, strings.TrimSpace(string(out)))
	}
	return nil
}
