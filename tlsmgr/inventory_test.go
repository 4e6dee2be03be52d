package tlsmgr

import (
	"testing"
	"time"
)

func TestFindCertificate(t *testing.T) {
	certs := []CertificateInfo{
		{Names: []string{"old.test"}, Status: StatusRetired, Serial: "1"},
		{Names: []string{"app.test", "www.app.test"}, Status: StatusValid, Serial: "2"},
		{Names: []string{"old.test"}, Status: StatusRetired, Serial: "3"},
		{Names: []string{"old.test"}, Status: StatusValid, Serial: "4"},
		{Names: []string{"gone.test"}, Status: StatusRetired, Serial: "5"},
		{Names: []string{"gone.test"}, Status: StatusRetired, Serial: "6"},
	}
	for _, tc := range []struct {
		name, serial string
	}{
		{"app.test", "2"},
		{"WWW.App.Test.", "2"},
		// The current one before a retired one listing the name too.
		{"old.test", "4"},
		// Among retired ones, the first.
		{"gone.test", "5"},
		{"nothing.test", ""},
		{"app", ""},
	} {
		got, ok := FindCertificate(certs, tc.name)
		if got.Serial != tc.serial || ok != (tc.serial != "") {
			t.Errorf("FindCertificate(%q): got serial %q, %v; want %q", tc.name, got.Serial, ok, tc.serial)
		}
	}
}

func TestRenewable(t *testing.T) {
	issued := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		what string
		ci   CertificateInfo
		// online and offline: whether it renews; pending: whether it
		// is passed over for having no certificate yet.
		online, offline, pending bool
	}{
		{"acme", CertificateInfo{Names: []string{"a.test"}, Source: SourceACME, Status: StatusValid, NotAfter: issued}, true, true, false},
		{"acme expired", CertificateInfo{Names: []string{"a.test"}, Source: SourceACME, Status: StatusExpired, NotAfter: issued}, true, true, false},
		{"acme pending", CertificateInfo{Names: []string{"a.test"}, Source: SourceACME, Status: StatusPending}, false, false, true},
		{"acme failing first", CertificateInfo{Names: []string{"a.test"}, Source: SourceACME, Status: StatusFailing}, false, false, true},
		{"on demand", CertificateInfo{Names: []string{"d.test"}, Source: SourceOnDemand, Status: StatusValid, NotAfter: issued}, true, false, false},
		{"on demand pending", CertificateInfo{Names: []string{"d.test"}, Source: SourceOnDemand, Status: StatusPending}, false, false, true},
		// A local CA name gets its first leaf from a renewal.
		{"local CA", CertificateInfo{Names: []string{"app.internal"}, Source: SourceInternal, Status: StatusPending}, true, false, false},
		{"files", CertificateInfo{Names: []string{"f.test"}, Source: SourceFile, Status: StatusValid, NotAfter: issued}, false, false, false},
		{"retired", CertificateInfo{Names: []string{"r.test"}, Source: SourceACME, Status: StatusRetired, NotAfter: issued}, false, false, false},
		{"retired pending", CertificateInfo{Names: []string{"r.test"}, Source: SourceACME, Status: StatusRetired}, false, false, false},
		{"no names", CertificateInfo{Source: SourceACME, Status: StatusValid, NotAfter: issued}, false, false, false},
	} {
		on, pendingOn := tc.ci.Renewable(false)
		off, pendingOff := tc.ci.Renewable(true)
		if on != tc.online || off != tc.offline || pendingOn != tc.pending || pendingOff != tc.pending {
			t.Errorf("%s: Renewable online %v (pending %v), offline %v (pending %v); want %v, %v, pending %v",
				tc.what, on, pendingOn, off, pendingOff, tc.online, tc.offline, tc.pending)
		}
	}
}
