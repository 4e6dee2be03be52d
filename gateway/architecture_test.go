package gateway

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPackageImports holds the README's Architecture rules: which of
// gatehouse's own packages each may import. proxy and tlsmgr never import
// each other, and only cmd/gatehouse and gateway wire them together.
func TestPackageImports(t *testing.T) {
	const module = "github.com/gatehouse-proxy/gatehouse/"
	allowed := map[string][]string{
		"config":            {},
		"proxy":             {"config"},
		"tlsmgr":            {"config"},
		"tlsmgr/preflight":  {"config"},
		"tlsmgr/trust":      {},
		"internal/password": {},
		"admin":             {"tlsmgr"},
		"admin/client":      {"admin", "tlsmgr"},
		"gateway":           {"config", "proxy", "tlsmgr", "admin"},
		"gateway/fleet":     {"config", "gateway", "admin", "tlsmgr/etcdstore"},
	}
	for pkg, may := range allowed {
		p, err := build.ImportDir(filepath.Join("..", pkg), 0)
		if err != nil {
			t.Fatalf("reading package %s: %v", pkg, err)
		}
		for _, imp := range p.Imports {
			own, ok := strings.CutPrefix(imp, module)
			// A package's own subpackages (tlsmgr/etcdstore) are its own business.
			if ok && !slices.Contains(may, own) && !strings.HasPrefix(own, pkg+"/") {
				t.Errorf("%s imports %s; it may import only %v", pkg, own, may)
			}
		}
	}
}
