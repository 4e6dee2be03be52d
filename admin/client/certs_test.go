package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/admin/client"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// testOffline reaches addr, where nothing may answer, and returns the
// *tlsmgr.Offline on cfg's storage Reach falls back to.
func testOffline(t *testing.T, ctx context.Context, addr string, cfg *config.Config) *tlsmgr.Offline {
	t.Helper()
	certs, err := client.Reach(ctx, addr, nil, func(why error) (client.Certificates, error) {
		if !errors.Is(why, client.ErrNoInstance) {
			t.Errorf("Reach(%s) falls back because %v; want ErrNoInstance", addr, why)
		}
		return &tlsmgr.Offline{Config: cfg}, nil
	})
	off, ok := certs.(*tlsmgr.Offline)
	if err != nil || !ok {
		t.Fatalf("Reach(%s) where nothing answers: got %T, %v; want the *tlsmgr.Offline", addr, certs, err)
	}
	return off
}

// TestReach checks Reach's choice: the admin endpoint while a gatehouse
// answers there, the fallback with the reason while none does, and no
// fallback for an address that is no address.
func TestReach(t *testing.T) {
	ctx := t.Context()
	_, srv := serve(t, admin.Options{Certificates: newLocalManager(t, "app.internal")})
	addr := srv.Listener.Addr().String()
	fellBack := false
	fallback := func(why error) (client.Certificates, error) {
		fellBack = true
		return nil, errors.New("no storage either")
	}

	certs, err := client.Reach(ctx, addr, srv.Client(), fallback)
	if _, ok := certs.(*client.Client); !ok || err != nil || fellBack {
		t.Fatalf("Reach(%s) of a serving endpoint: got %T, %v, fell back %v; want the *client.Client", addr, certs, err, fellBack)
	}
	list, err := certs.Certificates(ctx)
	if ci, ok := tlsmgr.FindCertificate(list, "App.Internal."); err != nil || !ok || ci.Source != tlsmgr.SourceInternal {
		t.Errorf("Certificates through Reach: got %+v, %v; want app.internal from the local CA", list, err)
	}

	if _, err := client.Reach(ctx, "2019", nil, fallback); err == nil || fellBack || !strings.Contains(err.Error(), `parsing admin address "2019"`) {
		t.Errorf(`Reach("2019"): got %v, fell back %v; want the address refused and no fallback`, err, fellBack)
	}

	srv.Close()
	cfg := &config.Config{Storage: t.TempDir()}
	if off := testOffline(t, ctx, addr, cfg); off.Config != cfg {
		t.Errorf("Reach of a closed endpoint: got the storage of %+v, want %+v", off.Config, cfg)
	}
	if _, err := client.Reach(ctx, "off", nil, fallback); err == nil || err.Error() != "no storage either" || !fellBack {
		t.Errorf(`Reach("off"): got %v, fell back %v; want the fallback's error`, err, fellBack)
	}
}

// TestRenewAll renews what may be renewed, through a running gatehouse
// (every local CA name) and offline (ACME names only), and passes over a
// name whose first certificate is still to come, reporting it.
func TestRenewAll(t *testing.T) {
	ctx := t.Context()
	c, _ := serve(t, admin.Options{Certificates: newLocalManager(t, "localhost", "app.internal")})
	before, err := c.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]string{}
	for _, ci := range before {
		serials[ci.Names[0]] = ci.Serial
	}
	var got []client.Renewal
	failed, err := client.RenewAll(ctx, c, false, func(r client.Renewal) { got = append(got, r) })
	if err != nil || failed != 0 || len(got) != 2 {
		t.Fatalf("RenewAll through the admin endpoint: got %+v, %d failed, %v; want localhost and app.internal renewed", got, failed, err)
	}
	for _, r := range got {
		if r.Err != nil || r.Pending || r.Renewed.Serial == "" || r.Renewed.Serial == serials[r.Name] {
			t.Errorf("RenewAll of %s: got %+v; want a new serial (was %q)", r.Name, r, serials[r.Name])
		}
	}

	dir := t.TempDir()
	cfg := parseConfig(t, dir, "listen: {http: \"127.0.0.1:1\", https: \"127.0.0.1:2\"}\nadmin: off\nstorage: "+filepath.Join(dir, "storage")+
		"\nacme: {ca: \"https://127.0.0.1:1/dir\"}\nsites:\n  - hosts: [app.example.com, app.internal]\n    routes: [{respond: {body: ok}}]\n")
	got = nil
	failed, err = client.RenewAll(ctx, &tlsmgr.Offline{Config: cfg}, true, func(r client.Renewal) { got = append(got, r) })
	if err != nil || failed != 0 || len(got) != 1 || got[0].Name != "app.example.com" || !got[0].Pending || got[0].Listed.Status != tlsmgr.StatusPending {
		t.Errorf("offline RenewAll: got %+v, %d failed, %v; want app.example.com passed over as pending, app.internal not renewed offline", got, failed, err)
	}
}
