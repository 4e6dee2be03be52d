package acmeserver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// maxOrderBody bounds the new-order request read to check its names; an
// order for a hundred long names is a few kilobytes.
const maxOrderBody = 64 << 10

// policy is acme_server's allowed_clients and allowed_names, compiled.
type policy struct {
	clients []netip.Prefix
	// exact are the names allowed as they are (IP addresses included);
	// under are the domains D of "*.D", whose every subdomain is allowed.
	exact map[string]bool
	under []string
	// names is allowed_names as written, for error details.
	names []string
}

func newPolicy(c config.ACMEServer) (policy, error) {
	p := policy{exact: map[string]bool{}, names: c.AllowedNames}
	for _, s := range c.AllowedClients {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return policy{}, fmt.Errorf("acme_server.allowed_clients: %q is neither an IP address nor a CIDR", s)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		p.clients = append(p.clients, pfx.Masked())
	}
	for _, n := range c.AllowedNames {
		n = normalize(n)
		if d, ok := strings.CutPrefix(n, "*."); ok {
			p.under = append(p.under, d)
		} else {
			p.exact[n] = true
		}
	}
	if len(p.exact) == 0 && len(p.under) == 0 {
		return policy{}, errors.New("acme_server.allowed_names is empty")
	}
	return p, nil
}

func normalize(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// clientAllowed reports whether a may use the server.
func (p policy) clientAllowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, pfx := range p.clients {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// nameAllowed reports whether the server may certify name (an identifier's
// value, "*.x.home.arpa" for a wildcard).
func (p policy) nameAllowed(name string) bool {
	name = normalize(name)
	if p.exact[name] {
		return true
	}
	if a, err := netip.ParseAddr(name); err == nil {
		return p.exact[a.Unmap().String()]
	}
	for _, d := range p.under {
		if strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}

// checkOrder reads the identifiers of the new-order request r, leaving
// its body for the CA to read again, and returns a detail naming those
// outside allowed_names, or "" when all are allowed. It does not verify
// the request's signature (the CA does, after); a forged request only
// learns it is refused. err
// is a request that cannot be an order.
func (p policy) checkOrder(r *http.Request) (refused string, err error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOrderBody+1))
	r.Body.Close()
	if err != nil {
		return "", fmt.Errorf("reading the order: %w", err)
	}
	if len(body) > maxOrderBody {
		return "", fmt.Errorf("the order is over %d bytes", maxOrderBody)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var jws struct {
		Protected string `json:"protected"`
		Payload   string `json:"payload"`
	}
	if err := json.Unmarshal(body, &jws); err != nil {
		return "", fmt.Errorf("the order is not a JWS in flattened JSON: %w", err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil {
		return "", fmt.Errorf("the order's payload is not base64url: %w", err)
	}
	var order struct {
		Identifiers []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"identifiers"`
	}
	if err := json.Unmarshal(payload, &order); err != nil {
		return "", fmt.Errorf("the order's payload is not a new-order object: %w", err)
	}
	var out []string
	for _, id := range order.Identifiers {
		if !p.nameAllowed(id.Value) {
			out = append(out, fmt.Sprintf("%q", id.Value))
		}
	}
	if len(out) == 0 {
		return "", nil
	}
	return fmt.Sprintf("this CA does not certify %s: acme_server.allowed_names is %s", strings.Join(out, ", "), strings.Join(p.names, ", ")), nil
}
