package client_test

import (
	"context"
	"errors"
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
