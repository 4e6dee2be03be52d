package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Bounds of the cache of verified passwords.
const (
	authCacheTTL  = time.Minute
	authCacheSize = 1024
)

// basicAuth asks for a user name and password (HTTP basic authentication)
// and checks them against bcrypt hashes. bcrypt runs for unknown users too,
// against the costliest user's hash, so the answer time does not tell
// which names exist. A successful check is remembered for a minute under a
// salted SHA-256 of the credentials, so a browser sending them with every
// request does not pay bcrypt each time; the password itself is never
// kept.
type basicAuth struct {
	users map[string][]byte
	// decoy is the hash compared for an unknown user: one of the users'
	// hashes with the highest bcrypt cost, so an unknown name is never
	// answered faster than the slowest known one.
	decoy     []byte
	challenge []string // WWW-Authenticate value
	salt      [32]byte
	now       func() time.Time
	next      http.Handler
	// slots bounds the bcrypt comparisons running at once to half the
	// CPUs, so a flood of password guesses slows logins, not the proxy.
	slots chan struct{}
	// compare is bcrypt.CompareHashAndPassword; tests wrap it to see
	// which hashes are compared and how many at once.
	compare func(hash, pass []byte) error

	// logins remembers verified credentials; a reload that keeps the
	// Route's users hands it (and salt) to the new Table.
	logins *authCache
}

// authCache maps a salted hash of verified credentials to when it expires.
type authCache struct {
	mu       sync.Mutex // guards verified
	verified map[[32]byte]time.Time
}

// size returns how many credentials are remembered.
func (c *authCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.verified)
}

func newBasicAuth(cr *config.BasicAuth, now func() time.Time) (*basicAuth, error) {
	if len(cr.Users) == 0 {
		return nil, errors.New("checking users: none")
	}
	realm := cr.Realm
	if realm == "" {
		realm = config.DefaultRealm
	}
	ba := &basicAuth{
		users:     make(map[string][]byte, len(cr.Users)),
		challenge: []string{`Basic realm="` + realm + `", charset="UTF-8"`},
		now:       now,
		logins:    &authCache{verified: make(map[[32]byte]time.Time)},
		slots:     make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		compare:   bcrypt.CompareHashAndPassword,
	}
	names := slices.Sorted(maps.Keys(cr.Users))
	decoyCost := 0
	for _, name := range names {
		hash := []byte(cr.Users[name])
		cost, err := bcrypt.Cost(hash)
		if err != nil {
			return nil, fmt.Errorf("checking users.%s: %w", name, err)
		}
		ba.users[name] = hash
		// In name order, so the same users always pick the same decoy.
		if cost > decoyCost {
			ba.decoy, decoyCost = hash, cost
		}
	}
	_, _ = rand.Read(ba.salt[:])
	return ba, nil
}

func (ba *basicAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || !ba.check(r.Context(), user, pass) {
		w.Header()["Www-Authenticate"] = ba.challenge
		writeStatus(w, http.StatusUnauthorized)
		return
	}
	// The Upstream gets no copy of the password; request_headers may
	// pass it the user's name as {user}.
	r2 := r.WithContext(context.WithValue(r.Context(), userKey{}, user))
	r2.Header = r.Header.Clone()
	delete(r2.Header, "Authorization")
	ba.next.ServeHTTP(w, r2)
}

// userKey is the context key of the name basic_auth verified.
type userKey struct{}

// check reports whether pass is user's password. It gives up, false, when
// ctx ends while waiting for a bcrypt slot.
func (ba *basicAuth) check(ctx context.Context, user, pass string) bool {
	h := sha256.New()
	h.Write(ba.salt[:])
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	var key [32]byte
	h.Sum(key[:0])

	now := ba.now()
	c := ba.logins
	c.mu.Lock()
	until, ok := c.verified[key]
	c.mu.Unlock()
	if ok && now.Before(until) {
		return true
	}

	hash, known := ba.users[user]
	if !known {
		hash = ba.decoy
	}
	select {
	case ba.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	err := ba.compare(hash, []byte(pass))
	<-ba.slots
	if err != nil || !known {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.verified) >= authCacheSize {
		for k, t := range c.verified {
			if !now.Before(t) {
				delete(c.verified, k)
			}
		}
		// Still full: forget any one (map order is random).
		for k := range c.verified {
			if len(c.verified) < authCacheSize {
				break
			}
			delete(c.verified, k)
		}
	}
	c.verified[key] = now.Add(authCacheTTL)
	return true
}

// sameUsers reports whether o has exactly ba's users and hashes, so a login
// o verified is still good for ba. A removed user or changed password
// never inherits.
func (ba *basicAuth) sameUsers(o *basicAuth) bool {
	return maps.EqualFunc(ba.users, o.users, bytes.Equal)
}
