package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// KnownCA is a public ACME CA that `ca:` accepts by name, with what using
// it takes. The table lives here, not in tlsmgr, because validation needs
// it and config imports none of gatehouse's other packages; tlsmgr and
// preflight read the same table.
type KnownCA struct {
	// Name is what `ca:` accepts instead of Directory.
	Name string
	// Directory is the ACME directory URL.
	Directory string
	// Staging reports whether the CA issues untrusted test certificates.
	Staging bool
	// EAB, when set, says that the CA refuses accounts without an external
	// account binding, and where to get one.
	EAB string
	// EABFromAPIKey reports whether eab.api_key can stand in for key_id
	// and mac_key: gatehouse asks the CA's API for a binding (ZeroSSL).
	EABFromAPIKey bool
	// Lifetime is how long the CA's certificates are valid by default;
	// zero when it varies by product.
	Lifetime time.Duration
	// NoARI reports whether the CA offers no renewal information (RFC
	// 9773): its certificates renew by their lifetime alone.
	NoARI bool
	// Profiles are the ACME profiles the CA offers, the default first; nil
	// when gatehouse does not know them (any profile is passed on).
	Profiles []string
	// CAA is the issuer domain the CA looks for in CAA records.
	CAA string
	// Limits are the rate limits the CA publishes, which gatehouse
	// budgets against; nil when it publishes none gatehouse knows.
	Limits *RateLimits
}

// KnownCAs lists the CAs `ca:` accepts by name. Only CAs whose public ACME
// directory is stable are listed.
var KnownCAs = []KnownCA{
	{Name: "letsencrypt", Directory: "https://acme-v02.api.letsencrypt.org/directory",
		Lifetime: 90 * 24 * time.Hour, Profiles: letsEncryptProfiles, CAA: "letsencrypt.org",
		Limits: &letsEncryptLimits},
	{Name: "letsencrypt-staging", Directory: "https://acme-staging-v02.api.letsencrypt.org/directory", Staging: true,
		Lifetime: 90 * 24 * time.Hour, Profiles: letsEncryptProfiles, CAA: "letsencrypt.org",
		Limits: &letsEncryptStagingLimits},
	{Name: "zerossl", Directory: "https://acme.zerossl.com/v2/DV90",
		EAB:           "ZeroSSL's dashboard, https://app.zerossl.com/developer (\"EAB Credentials for ACME Clients\"), or give its API key as eab.api_key",
		EABFromAPIKey: true, Lifetime: 90 * 24 * time.Hour, CAA: "sectigo.com"},
	{Name: "buypass", Directory: "https://api.buypass.com/acme/directory",
		Lifetime: 180 * 24 * time.Hour, NoARI: true, CAA: "buypass.com"},
	{Name: "buypass-staging", Directory: "https://api.test4.buypass.no/acme/directory", Staging: true,
		Lifetime: 180 * 24 * time.Hour, NoARI: true, CAA: "buypass.com"},
	{Name: "google", Directory: "https://dv.acme-v02.api.pki.goog/directory",
		EAB:      "Google Cloud: `gcloud publicca external-account-keys create` (https://cloud.google.com/certificate-manager/docs/public-ca-tutorial)",
		Lifetime: 90 * 24 * time.Hour, CAA: "pki.goog"},
	{Name: "google-staging", Directory: "https://dv.acme-v02.test-api.pki.goog/directory", Staging: true,
		EAB:      "Google Cloud: `gcloud publicca external-account-keys create` with the staging endpoint (https://cloud.google.com/certificate-manager/docs/public-ca-tutorial)",
		Lifetime: 90 * 24 * time.Hour, CAA: "pki.goog"},
	{Name: "sslcom", Directory: "https://acme.ssl.com/sslcom-dv-ecc",
		EAB: "your SSL.com account: Dashboard, api credentials (https://www.ssl.com/how-to/generate-acme-credentials-for-reseller-customers/)",
		CAA: "ssl.com"},
	{Name: "sslcom-rsa", Directory: "https://acme.ssl.com/sslcom-dv-rsa",
		EAB: "your SSL.com account: Dashboard, api credentials (https://www.ssl.com/how-to/generate-acme-credentials-for-reseller-customers/)",
		CAA: "ssl.com"},
}

// letsEncryptLimits are Let's Encrypt's published rate limits
// (https://letsencrypt.org/docs/rate-limits/): 50 certificates per
// registered domain and 5 per exact set of names per 7 days, 300 new
// orders per account per 3 hours, 5 failed authorizations per identifier
// per account per hour and 10 new accounts per IP address per 3 hours.
var letsEncryptLimits = RateLimits{
	CertificatesPerDomainWeek: 50, DuplicatesPerWeek: 5, OrdersPer3Hours: 300,
	FailedValidationsPerHour: 5, AccountsPer3Hours: 10,
}

// letsEncryptStagingLimits are those of Let's Encrypt's staging
// environment (https://letsencrypt.org/docs/staging-environment/).
var letsEncryptStagingLimits = RateLimits{
	CertificatesPerDomainWeek: 30000, DuplicatesPerWeek: 30000, OrdersPer3Hours: 1500,
	FailedValidationsPerHour: 200, AccountsPer3Hours: 50,
}

// letsEncryptProfiles are Let's Encrypt's ACME profiles: classic (90
// days, the default), tlsserver (90 days, moving to 45) and shortlived
// (160 hours).
var letsEncryptProfiles = []string{"classic", "tlsserver", "shortlived"}

// LookupCA returns the known CA that ca names, by name or by directory
// URL.
func LookupCA(ca string) (KnownCA, bool) {
	for _, k := range KnownCAs {
		if ca == k.Name || ca == k.Directory {
			return k, true
		}
	}
	return KnownCA{}, false
}

// CADirectory returns the directory URL of ca, a known CA's name or a URL
// (returned as it is).
func CADirectory(ca string) string {
	if k, ok := LookupCA(ca); ok {
		return k.Directory
	}
	return ca
}

// isCAName reports whether ca is meant as a name rather than a URL.
func isCAName(ca string) bool {
	return ca != "" && !strings.Contains(ca, ":") && !strings.Contains(ca, "/")
}

// knownCANames returns the names of KnownCAs, in table order.
func knownCANames() []string {
	names := make([]string, len(KnownCAs))
	for i, k := range KnownCAs {
		names[i] = k.Name
	}
	return names
}

// unknownCA says that name is no known CA, suggesting the closest one.
func unknownCA(name string) string {
	best, bestDist := "", len(name)+1
	for _, n := range knownCANames() {
		if d := editDistance(strings.ToLower(name), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	// A name that starts like a known one ("letsencrypt-prod") is as good
	// a hint as a typo.
	if bestDist <= max(2, len(name)/3) || strings.HasPrefix(strings.ToLower(name), best) {
		return fmt.Sprintf("unknown CA %q; did you mean %q? (or give an ACME directory URL)", name, best)
	}
	return fmt.Sprintf("unknown CA %q; known names are %s, or give an ACME directory URL", name, strings.Join(knownCANames(), ", "))
}

// caIssuer is the part of an acme section or an issuers entry that says
// which CA and how to reach it.
type caIssuer struct {
	ca, profile string
	eab         *EAB
}

// checkCA checks one CA reference at path (the ca key's parent) against
// what the CA needs, and returns its directory URL ("" if it is bad). The
// profile is the one in force, which may be inherited from profilePath.
func (v *validator) checkCA(is caIssuer, path, profilePath string) string {
	if is.eab != nil {
		v.eab(is.eab, is.ca, path+".eab")
	}
	if isCAName(is.ca) {
		if _, ok := LookupCA(is.ca); !ok {
			v.addf(path+".ca", "%s", unknownCA(is.ca))
			return ""
		}
	} else if msg := checkDirectoryURL(is.ca); msg != "" {
		v.addf(path+".ca", "%s", msg)
		return ""
	}
	k, known := LookupCA(is.ca)
	if !known {
		return is.ca
	}
	if k.EAB != "" && is.eab == nil {
		v.addf(path+".eab", "%s requires an external account binding: set eab {key_id, mac_key} from %s", k.Name, k.EAB)
	}
	if is.profile != "" && k.Profiles != nil && isProfileName(is.profile) && !slices.Contains(k.Profiles, is.profile) {
		v.addf(profilePath, "%s offers the profiles %s, not %q", k.Name, strings.Join(k.Profiles, ", "), is.profile)
	}
	return k.Directory
}

// checkDirectoryURL says what is wrong with an ACME directory URL, or
// returns "".
func checkDirectoryURL(ca string) string {
	if ca == "" {
		return "is required: a CA name (" + strings.Join(knownCANames(), ", ") + ") or an ACME directory URL"
	}
	if u, err := url.Parse(ca); err != nil || u.Host == "" ||
		!(u.Scheme == "https" || u.Scheme == "http" && isLoopback(u.Hostname())) {
		return fmt.Sprintf("%q is not an absolute https:// URL (http:// is allowed only for a CA on a loopback address)", ca)
	}
	return ""
}
