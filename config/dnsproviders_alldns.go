//go:build alldns

package config

// AllDNSProviders reports whether this build has every lego DNS provider
// (-tags alldns) rather than DNSProviders and DefaultLegoDNSProviders.
const AllDNSProviders = true
