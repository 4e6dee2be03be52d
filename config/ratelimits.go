package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RateLimits are an ACME CA's rate limits as gatehouse budgets them: each a
// number of events in a sliding window of fixed length. Zero (or absent)
// keeps the CA's published limit ([KnownCA.Limits]); a CA gatehouse does
// not know has none unless they are set here.
type RateLimits struct {
	// CertificatesPerDomainWeek bounds the Certificates issued for names
	// under one registered domain (example.com for www.example.com, by the
	// public suffix list) in 7 days.
	CertificatesPerDomainWeek int `yaml:"certificates_per_domain_week,omitempty"`
	// DuplicatesPerWeek bounds the Certificates issued for one exact set
	// of names in 7 days.
	DuplicatesPerWeek int `yaml:"duplicates_per_week,omitempty"`
	// OrdersPer3Hours bounds the new orders of one ACME account in 3
	// hours.
	OrdersPer3Hours int `yaml:"orders_per_3_hours,omitempty"`
	// FailedValidationsPerHour bounds the failed validations of one host
	// name by one account in an hour.
	FailedValidationsPerHour int `yaml:"failed_validations_per_hour,omitempty"`
	// AccountsPer3Hours bounds the new accounts in 3 hours.
	AccountsPer3Hours int `yaml:"accounts_per_3_hours,omitempty"`
}

// The windows of the RateLimits fields.
const (
	WeekWindow    = 7 * 24 * time.Hour
	ThreeHours    = 3 * time.Hour
	OneHourWindow = time.Hour
)

// LimitsFor returns the rate limits of the CA ca (a name or a directory
// URL): the CA's published ones, each replaced by the one override sets.
func LimitsFor(ca string, override *RateLimits) RateLimits {
	var l RateLimits
	if k, ok := LookupCA(ca); ok && k.Limits != nil {
		l = *k.Limits
	}
	if o := override; o != nil {
		for _, f := range []struct {
			dst *int
			src int
		}{
			{&l.CertificatesPerDomainWeek, o.CertificatesPerDomainWeek},
			{&l.DuplicatesPerWeek, o.DuplicatesPerWeek},
			{&l.OrdersPer3Hours, o.OrdersPer3Hours},
			{&l.FailedValidationsPerHour, o.FailedValidationsPerHour},
			{&l.AccountsPer3Hours, o.AccountsPer3Hours},
		} {
			if f.src > 0 {
				*f.dst = f.src
			}
		}
	}
	return l
}

// DefaultBudgetShare is on_demand.budget_share when unset.
const DefaultBudgetShare = 0.5

// BudgetShareOf returns on_demand.budget_share as a fraction (0.5 for
// "50%"), or DefaultBudgetShare when od or the setting is absent. A value
// validation refuses counts as the default.
func BudgetShareOf(od *OnDemand) float64 {
	if od == nil || od.BudgetShare == "" {
		return DefaultBudgetShare
	}
	f, err := parseShare(od.BudgetShare)
	if err != nil {
		return DefaultBudgetShare
	}
	return f
}

// parseShare parses a percentage, "50%" or "50", into a fraction.
func parseShare(s string) (float64, error) {
	n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")), 64)
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("%q is not a percentage from 0%% to 100%%, like \"50%%\"", s)
	}
	return n / 100, nil
}

// rateLimits checks a limits override at path.
func (v *validator) rateLimits(l *RateLimits, path string) {
	if l == nil {
		return
	}
	for key, n := range map[string]int{
		"certificates_per_domain_week": l.CertificatesPerDomainWeek,
		"duplicates_per_week":          l.DuplicatesPerWeek,
		"orders_per_3_hours":           l.OrdersPer3Hours,
		"failed_validations_per_hour":  l.FailedValidationsPerHour,
		"accounts_per_3_hours":         l.AccountsPer3Hours,
	} {
		if n < 0 {
			v.addf(path+"."+key, "must not be negative (leave it out for the CA's published limit)")
		}
	}
}
