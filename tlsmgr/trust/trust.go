// Package trust puts a root certificate (the local CA's) into the trust
// stores of this machine and takes it out again: the system store, the NSS
// databases Firefox and Chromium read, and Java's keystore, each through
// github.com/smallstep/truststore. It serves `gatehouse trust --install`
// and `gatehouse untrust`.
//
// [Install] is all or nothing: it first checks that every store it would
// change can be changed with the rights it has, and changes none when one
// needs root ([NeedsRootError]); a store that fails midway is followed by
// removing the root from the stores already changed.
package trust

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/smallstep/truststore"
)

// Store names for [Store.Name].
const (
	StoreSystem = "system"
	StoreNSS    = "nss"
	StoreJava   = "java"
)

// Store is one trust store of this machine.
type Store struct {
	// Name is StoreSystem, StoreNSS or StoreJava.
	Name string
	// Where is the store's file, directory or databases, as a person
	// would look for them.
	Where string
}

// String describes the store for a person: "the system trust store
// (/usr/local/share/ca-certificates)".
func (s Store) String() string {
	var what string
	switch s.Name {
	case StoreSystem:
		what = "the system trust store"
	case StoreNSS:
		what = "the NSS databases of Firefox and Chromium"
	case StoreJava:
		what = "Java's keystore"
	default:
		what = s.Name
	}
	if s.Where == "" {
		return what
	}
	return what + " (" + s.Where + ")"
}

// Outcome is what happened to a store.
type Outcome string

// Outcomes in a [Result].
const (
	Installed      Outcome = "installed"
	AlreadyTrusted Outcome = "already trusted"
	Removed        Outcome = "removed"
	NotPresent     Outcome = "not present"
	// Skipped stores are not on this machine or cannot be reached; the
	// Result's Note says why and what to do.
	Skipped Outcome = "skipped"
)

// Result is the outcome for one store.
type Result struct {
	Store   Store
	Outcome Outcome
	// Note says why a store was skipped, and how to include it.
	Note string
}

// NeedsRootError reports the stores that only root may change, when this
// process is not root and sudo is not installed to ask for it. Nothing was
// changed.
type NeedsRootError struct {
	Stores []Store
}

func (e *NeedsRootError) Error() string {
	names := make([]string, len(e.Stores))
	for i, s := range e.Stores {
		names[i] = s.String()
	}
	verb := "needs"
	if len(names) > 1 {
		verb = "need"
	}
	return fmt.Sprintf("%s %s root rights to change, and sudo is not installed; nothing was changed", strings.Join(names, " and "), verb)
}

// store is one trust store and how to change it.
type store struct {
	Store
	// skip says why the store cannot be used here ("" when it can).
	skip string
	// needsRoot reports whether changing the store needs rights this
	// process has no way to get.
	needsRoot bool
	// trust is the truststore implementation of the NSS and Java stores;
	// nil for the system store.
	trust truststore.Trust
	// keytool is the Java store's keytool.
	keytool string
}

func (s *store) exists(cert *x509.Certificate) bool {
	if s.trust == nil {
		return systemHas(cert)
	}
	return s.trust.Exists(cert)
}

// mayHave reports whether the store may hold cert: where the system
// store cannot be looked into, Uninstall removes it all the same.
func (s *store) mayHave(cert *x509.Certificate) bool {
	return s.exists(cert) || (s.trust == nil && !systemKnown)
}

func (s *store) install(cert *x509.Certificate) error {
	var err error
	if s.trust == nil {
		err = truststore.Install(cert)
	} else {
		err = truststore.Install(cert, truststore.WithTrust(s.trust), truststore.WithNoSystem())
	}
	if err != nil {
		return cmdOutput(err)
	}
	// truststore skips a store silently when its pre-check fails, and its
	// NSS install ignores a database certutil failed on: look again.
	if s.trust != nil && !s.exists(cert) {
		return errors.New("the certificate is not there after installing it")
	}
	return nil
}

func (s *store) uninstall(cert *x509.Certificate) error {
	var err error
	if s.trust == nil {
		err = truststore.Uninstall(cert)
	} else {
		err = truststore.Uninstall(cert, truststore.WithTrust(s.trust), truststore.WithNoSystem())
	}
	if err != nil {
		return cmdOutput(err)
	}
	// update-ca-certificates tells its hooks of added local certificates
	// but never of removed ones, so Java would keep trusting, through
	// the entry Debian's ca-certificates-java made, a root the system
	// store no longer has.
	switch {
	case s.trust == nil:
		err = removeDebianAlias("", debianJavaStore, cert)
	case s.Name == StoreJava && s.exists(cert):
		err = removeDebianAlias(s.keytool, s.Where, cert)
	}
	if err != nil {
		return err
	}
	if (s.trust != nil || systemKnown) && s.exists(cert) {
		return errors.New("the certificate is still there after removing it")
	}
	return nil
}

// cmdOutput adds what a failed command printed to its error.
func cmdOutput(err error) error {
	var ce *truststore.CmdError
	if errors.As(err, &ce) {
		if out := strings.TrimSpace(string(ce.Out())); out != "" {
			return fmt.Errorf("%w: %s", err, out)
		}
	}
	return err
}

// stores finds the trust stores of this machine, in the order Install
// changes them.
func stores() []*store {
	return []*store{systemStore(), nssStore(), javaStore()}
}

func nssStore() *store {
	s := &store{Store: Store{Name: StoreNSS}}
	var dbs []string
	if home, err := os.UserHomeDir(); err == nil {
		dbs = append(dbs, filepath.Join(home, ".pki", "nssdb"))
	}
	if truststore.NSSProfile != "" {
		dbs = append(dbs, truststore.NSSProfile)
	}
	s.Where = strings.Join(dbs, ", ")
	nss, err := truststore.NewNSSTrust()
	if err != nil {
		s.skip = "certutil is not installed: install libnss3-tools (Debian, Ubuntu) or nss-tools (Fedora), then run this again"
		return s
	}
	if err := nss.PreCheck(); err != nil {
		s.skip = "no NSS database for this user (Chromium and Firefox create one when they first start)"
		return s
	}
	s.trust = nss
	return s
}

func javaStore() *store {
	s := &store{Store: Store{Name: StoreJava}}
	home := os.Getenv("JAVA_HOME")
	if home == "" {
		home = javaHome()
		if home == "" {
			s.skip = "no Java found (JAVA_HOME is not set and there is no java on PATH)"
			return s
		}
		// truststore finds Java only through JAVA_HOME; keytool gets it too.
		_ = os.Setenv("JAVA_HOME", home)
	}
	s.Where = cacerts(home)
	java, err := truststore.NewJavaTrust()
	if err != nil || s.Where == "" {
		s.skip = "no keytool or cacerts keystore under JAVA_HOME " + home
		return s
	}
	s.trust = java
	s.keytool = filepath.Join(home, "bin", "keytool")
	s.needsRoot = !mayChange(s.Where)
	return s
}

// javaHome is the Java installation the java on PATH belongs to, or "".
func javaHome() string {
	bin, err := exec.LookPath("java")
	if err != nil {
		return ""
	}
	bin, err = filepath.EvalSymlinks(bin)
	if err != nil {
		return ""
	}
	return filepath.Dir(filepath.Dir(bin))
}

// cacerts is the keystore truststore changes under home (it prefers
// jre/lib/security, as in Java 8), or "".
func cacerts(home string) string {
	for _, p := range []string{filepath.Join(home, "jre", "lib", "security", "cacerts"), filepath.Join(home, "lib", "security", "cacerts")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// mayChange reports whether this process can change path, itself or
// through sudo (which truststore calls and which asks for a password).
func mayChange(path string) bool {
	if writable(path) {
		return true
	}
	_, err := exec.LookPath("sudo")
	return err == nil
}

// Install adds cert to every trust store found on this machine that lacks
// it. The stores that are not here, or that cannot be reached (no certutil,
// no NSS database, no Java), are Skipped with a Note. When a store that
// needs changing needs root rights this process cannot get, Install
// changes nothing and returns a *NeedsRootError. When changing a store
// fails, the stores changed before it are restored before Install
// returns the error.
func Install(cert *x509.Certificate) ([]Result, error) {
	all, results, present, err := survey(cert, false)
	if err != nil {
		return results, err
	}
	var done []*store
	for i, s := range all {
		if s.skip != "" {
			continue
		}
		// Look again: installing in the system store can fill another
		// (Debian's ca-certificates-java hook adds it to Java's).
		if present[i] || s.exists(cert) {
			results[i].Outcome = AlreadyTrusted
			continue
		}
		if err := s.install(cert); err != nil {
			err = fmt.Errorf("installing in %s: %w", s.Store, err)
			return results, rollback(err, done, cert)
		}
		done = append(done, s)
		results[i].Outcome = Installed
	}
	return results, nil
}

// survey finds the stores, which of them hold cert, and returns a
// *NeedsRootError when one that would change (gain cert, or lose it when
// removing) needs rights this process cannot get.
func survey(cert *x509.Certificate, removing bool) ([]*store, []Result, []bool, error) {
	all := stores()
	results := make([]Result, len(all))
	present := make([]bool, len(all))
	var needRoot []Store
	for i, s := range all {
		results[i] = Result{Store: s.Store}
		if s.skip != "" {
			results[i].Outcome, results[i].Note = Skipped, s.skip
			continue
		}
		if removing {
			present[i] = s.mayHave(cert)
		} else {
			present[i] = s.exists(cert)
		}
		if present[i] == removing && s.needsRoot {
			needRoot = append(needRoot, s.Store)
		}
	}
	if len(needRoot) > 0 {
		return all, results, present, &NeedsRootError{Stores: needRoot}
	}
	return all, results, present, nil
}

// rollback removes cert from the stores Install changed before it failed
// with err, last first, and says what could not be undone.
func rollback(err error, done []*store, cert *x509.Certificate) error {
	var left []string
	for i := len(done) - 1; i >= 0; i-- {
		if uerr := done[i].uninstall(cert); uerr != nil {
			left = append(left, fmt.Sprintf("%s (%v)", done[i].Store, uerr))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("%w; undoing it failed, the root is still in %s: remove it with gatehouse untrust", err, strings.Join(left, ", "))
	}
	if len(done) > 0 {
		return fmt.Errorf("%w; nothing was changed (the root was removed again from the stores installed before)", err)
	}
	return fmt.Errorf("%w; nothing was changed", err)
}

// Uninstall removes cert from every trust store found on this machine
// that has it. When one needs root rights this process cannot get, it
// changes nothing and returns a *NeedsRootError. A store that fails does
// not stop the others; every failure is returned.
func Uninstall(cert *x509.Certificate) ([]Result, error) {
	all, results, present, err := survey(cert, true)
	if err != nil {
		return results, err
	}
	var errs []error
	for i, s := range all {
		if s.skip != "" {
			continue
		}
		// Removing it from the system store can empty another (Java's,
		// through Debian's hook): look again.
		if !present[i] || !s.mayHave(cert) {
			results[i].Outcome = NotPresent
			continue
		}
		if err := s.uninstall(cert); err != nil {
			errs = append(errs, fmt.Errorf("removing from %s: %w", s.Store, err))
			continue
		}
		results[i].Outcome = Removed
	}
	return results, errors.Join(errs...)
}
