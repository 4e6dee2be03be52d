package tlsmgr

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/go-acme/lego/v5/challenge"
)

// legoEnvMu serializes building providers from lego's environment
// variables: each build sets the variables of its credentials, calls the
// provider's constructor (which reads them) and puts the environment back.
var legoEnvMu sync.Mutex

// newLegoEnvProvider builds the lego provider d names, which reads its
// settings from environment variables, by setting the variable of each
// credential (config lists them) for the time of its constructor. The
// variables are set only while legoEnvMu is held and are restored after,
// so they do not outlive the constructor (lego's providers read them
// there, not later). A child process that another goroutine starts in
// that moment (an events exec hook) inherits them: the price of building
// ~200 providers without a hand-written mapping each. Variables the
// credentials leave out keep the value the environment gives them, as
// lego's documentation says.
func newLegoEnvProvider(d *config.DNS, build func(name string) (challenge.Provider, error)) (dnsProvider, time.Duration, error) {
	creds, ok := config.LookupDNSProvider(d.Provider)
	if !ok {
		return nil, 0, fmt.Errorf("unknown DNS provider %q", d.Provider)
	}
	vars := map[string]string{}
	rename := []string{}
	prefix := ""
	for _, c := range creds {
		if prefix == "" && strings.HasSuffix(c.Env, strings.ToUpper(c.Key)) {
			prefix = strings.TrimSuffix(c.Env, strings.ToUpper(c.Key))
		}
		rename = append(rename, c.Env, "credentials."+c.Key)
		if v, set := d.Credentials[c.Key]; set {
			vars[c.Env] = v
		}
	}
	if d.PropagationTimeout > 0 && prefix != "" {
		vars[prefix+"PROPAGATION_TIMEOUT"] = strconv.Itoa(int(d.PropagationTimeout.Seconds()))
	}

	legoEnvMu.Lock()
	restore := make(map[string]*string, len(vars))
	for k, v := range vars {
		if old, had := os.LookupEnv(k); had {
			restore[k] = &old
		} else {
			restore[k] = nil
		}
		_ = os.Setenv(k, v)
	}
	p, err := build(d.Provider)
	for k, old := range restore {
		if old == nil {
			_ = os.Unsetenv(k)
		} else {
			_ = os.Setenv(k, *old)
		}
	}
	legoEnvMu.Unlock()

	if err != nil {
		// lego names its environment variables; the operator wrote
		// credentials keys. Longer names first, so API_KEY_ID is not
		// half-replaced as API_KEY.
		return nil, 0, fmt.Errorf("%s", longestFirstReplacer(rename).Replace(err.Error()))
	}
	var interval time.Duration
	if pt, ok := p.(challenge.ProviderTimeout); ok {
		_, interval = pt.Timeout()
	}
	return p, interval, nil
}

// longestFirstReplacer replaces old→new pairs, longer olds first.
func longestFirstReplacer(pairs []string) *strings.Replacer {
	type pair struct{ old, new string }
	ps := make([]pair, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		ps = append(ps, pair{pairs[i], pairs[i+1]})
	}
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if len(ps[j].old) > len(ps[i].old) {
				ps[i], ps[j] = ps[j], ps[i]
			}
		}
	}
	flat := make([]string, 0, len(pairs))
	for _, p := range ps {
		flat = append(flat, p.old, p.new)
	}
	return strings.NewReplacer(flat...)
}
