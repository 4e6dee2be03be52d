package tlsmgr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/caddyserver/zerossl"
	"github.com/mholt/acmez/v3/acme"
)

// zeroSSLEABTimeout bounds asking ZeroSSL's API for a binding. It runs
// while an issuance policy is built (at start, or on a reload that brings
// a new API key), which has no caller's context to honour.
const zeroSSLEABTimeout = 30 * time.Second

// zeroSSLEAB returns the external account binding that ZeroSSL's API
// hands out for apiKey: the one kept in store by an earlier start, else a
// new one from the API at apiURL ("" is ZeroSSL's), which is then kept. A
// binding serves any number of accounts, so keeping it means a restart
// does not depend on ZeroSSL's API being up (the ACME account itself is
// kept by certmagic once it is registered).
func zeroSSLEAB(store certmagic.Storage, apiURL, apiKey string) (*acme.EAB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), zeroSSLEABTimeout)
	defer cancel()
	sum := sha256.Sum256([]byte(apiKey))
	// The key names the API key by a hash, so storage listings show no
	// secret; the binding itself is as secret as an account key, which
	// the same storage holds.
	key := "gatehouse/eab/zerossl-" + hex.EncodeToString(sum[:8]) + ".json"
	if b, err := store.Load(ctx, key); err == nil {
		var eab acme.EAB
		if err := json.Unmarshal(b, &eab); err == nil && eab.KeyID != "" && eab.MACKey != "" {
			return &eab, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("loading the ZeroSSL binding from storage: %w", err)
	}
	kid, mac, err := zerossl.Client{AccessKey: apiKey, BaseURL: apiURL}.GenerateEABCredentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("asking ZeroSSL's API for an external account binding with eab.api_key: %w", err)
	}
	if kid == "" || mac == "" {
		return nil, errors.New("asking ZeroSSL's API for an external account binding with eab.api_key: the answer has no eab_kid or eab_hmac_key")
	}
	eab := &acme.EAB{KeyID: kid, MACKey: mac}
	b, err := json.Marshal(eab)
	if err != nil {
		return nil, fmt.Errorf("encoding the ZeroSSL binding: %w", err)
	}
	if err := store.Store(ctx, key, b); err != nil {
		return nil, fmt.Errorf("keeping the ZeroSSL binding in storage: %w", err)
	}
	return eab, nil
}
