package trust

import (
	"errors"
	"testing"
)

// TestNeedsRootError checks what a user without root rights reads: every
// store that needs them, with where it is, and that nothing changed.
// (Install and Uninstall themselves are tested on this machine's real
// stores by cmd/gatehouse's TestTrustInstallSystem.)
func TestNeedsRootError(t *testing.T) {
	system := Store{Name: StoreSystem, Where: "/usr/local/share/ca-certificates"}
	java := Store{Name: StoreJava, Where: "/usr/lib/jvm/java-17/lib/security/cacerts"}
	for _, tc := range []struct {
		stores []Store
		want   string
	}{
		{[]Store{system}, "the system trust store (/usr/local/share/ca-certificates) needs root rights to change, and sudo is not installed; nothing was changed"},
		{[]Store{system, java}, "the system trust store (/usr/local/share/ca-certificates) and Java's keystore (/usr/lib/jvm/java-17/lib/security/cacerts) need root rights to change, and sudo is not installed; nothing was changed"},
	} {
		var err error = &NeedsRootError{Stores: tc.stores}
		if got := err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
		var nr *NeedsRootError
		if !errors.As(err, &nr) || len(nr.Stores) != len(tc.stores) {
			t.Errorf("errors.As: got %v", nr)
		}
	}
}
