package config

import (
	"fmt"
	"slices"
	"strings"
)

//go:generate go run ./internal/gendns

// legoDNSProvider is one of lego's DNS providers, as its description
// lists it.
type legoDNSProvider struct {
	// Name is the provider's own name ("Hetzner").
	Name string
	// Unavailable reports whether no build of gatehouse has the provider:
	// the module proxy gatehouse builds with does not serve the modules
	// it needs.
	Unavailable bool
	// Credentials are its environment variables as credentials keys.
	Credentials []DNSCredential
}

// DefaultLegoDNSProviders are the lego providers, beyond those of
// DNSProviders, that every build has: the ones most asked for. A build
// with -tags alldns has all of lego's (AllDNSProviders).
var DefaultLegoDNSProviders = []string{
	"gcloud", "ovh", "hetzner", "gandiv5", "godaddy", "namecheap", "porkbun",
	"duckdns", "vultr", "pdns", "ionos", "netcup", "namesilo", "transip", "scaleway",
}

// LookupDNSProvider returns the credentials keys of the DNS provider
// name, if this build has it.
func LookupDNSProvider(name string) ([]DNSCredential, bool) {
	if creds, ok := DNSProviders[name]; ok {
		return creds, true
	}
	p, ok := legoDNSProviders[name]
	if !ok || p.Unavailable || !AllDNSProviders && !slices.Contains(DefaultLegoDNSProviders, name) {
		return nil, false
	}
	return p.Credentials, true
}

// unknownDNSProvider says that name is no DNS provider, suggesting the
// closest one of lego's.
func unknownDNSProvider(name string) string {
	best, bestDist := "", len(name)+1
	for n := range legoDNSProviders {
		if d := editDistance(strings.ToLower(name), n); d < bestDist || d == bestDist && n < best {
			best, bestDist = n, d
		}
	}
	for n := range DNSProviders {
		if d := editDistance(strings.ToLower(name), n); d < bestDist || d == bestDist && n < best {
			best, bestDist = n, d
		}
	}
	if bestDist <= max(1, len(name)/3) {
		return fmt.Sprintf("unknown DNS provider %q; did you mean %q?", name, best)
	}
	return fmt.Sprintf("unknown DNS provider %q; gatehouse has %s (exec and httpreq reach any other)", name, strings.Join(DNSProviderNames(), ", "))
}
