package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestCertsBudget runs `gatehouse certs budget` against a running
// gatehouse whose CA has an orders limit, then offline on its storage:
// both count the one order the CA saw.
func TestCertsBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	p := newPorts(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	withLimits := strings.Replace(adminACMEConfig, "  ca_root: %s\n", "  ca_root: %s\n  limits: {orders_per_3_hours: 25}\n", 1)
	in := start(t, p, fmt.Sprintf(withLimits, ca.DirectoryURL(), ca.ClientRootFile(), "app.test"))
	waitForCertificate(t, in, ca, "app.test", 30*time.Second)

	orders := func(out string) tlsmgr.BudgetLine {
		t.Helper()
		var lines []tlsmgr.BudgetLine
		if err := json.Unmarshal([]byte(out), &lines); err != nil {
			t.Fatalf("certs budget --json printed %q: %v", out, err)
		}
		for _, l := range lines {
			if l.Limit == tlsmgr.LimitOrders && l.Issuer == ca.DirectoryURL() {
				return l
			}
		}
		t.Fatalf("certs budget --json has no orders line for %s: %s", ca.DirectoryURL(), out)
		return tlsmgr.BudgetLine{}
	}
	code, out, errOut := runCmd(t, nil, "certs", "budget", "--json", "-config", in.CfgPath)
	if code != 0 {
		t.Fatalf("certs budget --json: exit %d\n%s", code, errOut)
	}
	if got := orders(out); got.Used != ca.Orders() || got.Max != 25 || got.Remaining != 25-ca.Orders() {
		t.Errorf("orders line: got %+v, want %d of 25 used", got, ca.Orders())
	}
	code, out, errOut = runCmd(t, nil, "certs", "budget", "-config", in.CfgPath)
	if code != 0 || !strings.HasPrefix(out, "ISSUER") || !strings.Contains(out, "orders_per_account") || !strings.Contains(out, "25/3h") {
		t.Errorf("certs budget: exit %d\n%s%s", code, out, errOut)
	}

	// The running gatehouse's metrics have it too.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.Admin))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`gatehouse_acme_budget_remaining{domain="(no email)",issuer=%q,limit="orders_per_account"} %d`, ca.DirectoryURL(), 25-ca.Orders()); !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s", want)
	}

	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, nil, "certs", "budget", "--json", "-config", in.CfgPath)
	if code != 0 || !strings.Contains(errOut, "no gatehouse answers") {
		t.Fatalf("offline certs budget --json: exit %d\n%s", code, errOut)
	}
	if got := orders(out); got.Used != ca.Orders() || got.Remaining != 25-ca.Orders() {
		t.Errorf("offline orders line: got %+v, want %d of 25 used", got, ca.Orders())
	}
}
