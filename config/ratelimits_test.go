package config

import (
	"strings"
	"testing"
)

// TestRateLimits checks that a known CA's published limits are the
// default, that limits overrides replace them field by field, and that bad
// values are refused with their position.
func TestRateLimits(t *testing.T) {
	le := LimitsFor("letsencrypt", nil)
	if le.CertificatesPerDomainWeek != 50 || le.DuplicatesPerWeek != 5 || le.OrdersPer3Hours != 300 || le.FailedValidationsPerHour != 5 {
		t.Errorf("Let's Encrypt's limits: got %+v", le)
	}
	if got := LimitsFor("https://acme-v02.api.letsencrypt.org/directory", &RateLimits{OrdersPer3Hours: 20}); got.OrdersPer3Hours != 20 || got.CertificatesPerDomainWeek != 50 {
		t.Errorf("override of orders only: got %+v", got)
	}
	if got := LimitsFor("https://ca.internal/dir", nil); got != (RateLimits{}) {
		t.Errorf("unknown CA: got %+v, want no limits", got)
	}

	const file = `storage: /tmp/gatehouse-ratelimits-test
acme:
  issuers:
    - ca: https://ca-a.internal/dir
      limits: {certificates_per_domain_week: 3, orders_per_3_hours: -1}
    - ca: letsencrypt
on_demand:
  allow: [shop.example.com]
  budget_share: 150%
sites:
  - hosts: [example.com]
    routes: [{respond: {body: ok}}]
`
	_, err := Parse("/etc/gatehouse/gatehouse.yaml", []byte(file))
	if err == nil {
		t.Fatal("Parse: no error for a negative limit and a share over 100%")
	}
	for _, want := range []string{
		"/etc/gatehouse/gatehouse.yaml:5:",
		"acme.issuers[0].limits.orders_per_3_hours: must not be negative",
		"/etc/gatehouse/gatehouse.yaml:9:",
		`on_demand.budget_share: "150%" is not a percentage`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse error lacks %q:\n%v", want, err)
		}
	}

	good := strings.NewReplacer("orders_per_3_hours: -1", "orders_per_3_hours: 10", "150%", "20%").Replace(file)
	c, err := Parse("/etc/gatehouse/gatehouse.yaml", []byte(good))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := c.ACME.Issuers[0].Limits; got == nil || got.CertificatesPerDomainWeek != 3 || got.OrdersPer3Hours != 10 {
		t.Errorf("limits of issuers[0]: got %+v", got)
	}
	if got := BudgetShareOf(c.OnDemand); got != 0.2 {
		t.Errorf("budget_share: got %v, want 0.2", got)
	}
	if got := BudgetShareOf(nil); got != DefaultBudgetShare {
		t.Errorf("default budget_share: got %v, want %v", got, DefaultBudgetShare)
	}

	withBoth := strings.Replace(good, "acme:\n", "acme:\n  limits: {orders_per_3_hours: 5}\n", 1)
	if _, err := Parse("/etc/gatehouse/gatehouse.yaml", []byte(withBoth)); err == nil || !strings.Contains(err.Error(), "acme.limits cannot be combined with acme.issuers") {
		t.Errorf("acme.limits beside acme.issuers: got %v", err)
	}
}
