//go:build !alldns

package tlsmgr

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/providers/dns/duckdns"
	"github.com/go-acme/lego/v5/providers/dns/gandiv5"
	"github.com/go-acme/lego/v5/providers/dns/gcloud"
	"github.com/go-acme/lego/v5/providers/dns/godaddy"
	"github.com/go-acme/lego/v5/providers/dns/hetzner"
	"github.com/go-acme/lego/v5/providers/dns/ionos"
	"github.com/go-acme/lego/v5/providers/dns/namecheap"
	"github.com/go-acme/lego/v5/providers/dns/namesilo"
	"github.com/go-acme/lego/v5/providers/dns/netcup"
	"github.com/go-acme/lego/v5/providers/dns/ovh"
	"github.com/go-acme/lego/v5/providers/dns/pdns"
	"github.com/go-acme/lego/v5/providers/dns/porkbun"
	"github.com/go-acme/lego/v5/providers/dns/scaleway"
	"github.com/go-acme/lego/v5/providers/dns/transip"
	"github.com/go-acme/lego/v5/providers/dns/vultr"
)

// legoProviders builds the lego providers of config.DefaultLegoDNSProviders
// from the environment. A build with -tags alldns has all of lego's
// instead (dns01_alldns.go).
func legoProviders(name string) (challenge.Provider, error) {
	switch name {
	case "duckdns":
		return duckdns.NewDNSProvider()
	case "gandiv5":
		return gandiv5.NewDNSProvider()
	case "gcloud":
		return gcloud.NewDNSProvider()
	case "godaddy":
		return godaddy.NewDNSProvider()
	case "hetzner":
		return hetzner.NewDNSProvider()
	case "ionos":
		return ionos.NewDNSProvider()
	case "namecheap":
		return namecheap.NewDNSProvider()
	case "namesilo":
		return namesilo.NewDNSProvider()
	case "netcup":
		return netcup.NewDNSProvider()
	case "ovh":
		return ovh.NewDNSProvider()
	case "pdns":
		return pdns.NewDNSProvider()
	case "porkbun":
		return porkbun.NewDNSProvider()
	case "scaleway":
		return scaleway.NewDNSProvider()
	case "transip":
		return transip.NewDNSProvider()
	case "vultr":
		return vultr.NewDNSProvider()
	}
	return nil, fmt.Errorf("DNS provider %q is not in this build (-tags alldns has all of lego's)", name)
}
