package pebbletest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
)

// LegoProvider is a DNS-01 provider for lego's client that presents the
// challenge records in b by RFC 2136 updates, for tests where lego is the
// ACME client of a CA that validates against b.
func (b *BIND) LegoProvider() challenge.Provider { return legoBIND{b} }

type legoBIND struct{ b *BIND }

func (p legoBIND) Present(ctx context.Context, domain, _, keyAuth string) error {
	info := dns01.GetChallengeInfo(ctx, domain, keyAuth)
	return p.b.SetTXT(ctx, info.EffectiveFQDN, info.Value)
}

func (p legoBIND) CleanUp(ctx context.Context, domain, _, keyAuth string) error {
	info := dns01.GetChallengeInfo(ctx, domain, keyAuth)
	return p.b.RemoveTXT(ctx, info.EffectiveFQDN, info.Value)
}

// LegoAccount is an ACME account of lego's client (its registration.User)
// with a fresh P-256 key; Reg is set once registered.
type LegoAccount struct {
	Key crypto.Signer
	Reg *acme.ExtendedAccount
}

// NewLegoAccount returns an account with a fresh key, not registered.
func NewLegoAccount(t testing.TB) *LegoAccount {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &LegoAccount{Key: key}
}

func (u *LegoAccount) GetEmail() string                       { return "" }
func (u *LegoAccount) GetRegistration() *acme.ExtendedAccount { return u.Reg }
func (u *LegoAccount) GetPrivateKey() crypto.Signer           { return u.Key }
