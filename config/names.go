package config

import (
	"net/netip"
	"strings"
)

// ByteSize is a size in bytes, written in YAML as a plain number or with a
// unit: "512KiB", "10MB", "1GiB" (KB/MB/GB are powers of 1000, KiB/MiB/GiB of
// 1024).
type ByteSize int64

// IssuerFor reports which issuer serves host for a Site with this TLS
// setting: "" for a Certificate from files, IssuerInternal for the local CA,
// IssuerACME otherwise. On-demand Sites always use ACME.
func (t SiteTLS) IssuerFor(host string) string {
	switch {
	case t.Cert != "":
		return ""
	case t.OnDemand:
		return IssuerACME
	case t.Issuer != "":
		return t.Issuer
	case IsInternalName(host):
		return IssuerInternal
	default:
		return IssuerACME
	}
}

// IsInternalName reports whether no public CA can certify host: localhost and
// its subdomains, IP addresses, and the private-use suffixes .internal,
// .home.arpa, .local and .invalid. Such hosts use the local CA. (.test is
// left to ACME: test CAs such as Pebble issue for it.)
func IsInternalName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || !strings.Contains(host, ".") {
		return true
	}
	for _, suffix := range []string{".localhost", ".internal", ".home.arpa", ".local", ".invalid"} {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	// Last, and only what may be an address (IPv4 starts with a digit,
	// IPv6 has a colon): a failed parse allocates.
	if '0' <= host[0] && host[0] <= '9' || strings.Contains(host, ":") {
		_, err := netip.ParseAddr(host)
		return err == nil
	}
	return false
}
