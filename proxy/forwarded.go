package proxy

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// trusts reports whether a is one of the configured trusted proxies.
func (t *trust) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr returns the address of the connection's remote end.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// clientIP returns the address of the client: the peer, or, when the peer
// is a trusted proxy, the rightmost X-Forwarded-For entry that is not a
// trusted proxy itself. Entries left of that one are whatever the client
// chose to send and are never believed.
func (t *trust) clientIP(r *http.Request) netip.Addr {
	peer, ok := peerAddr(r)
	if !ok || !t.trusts(peer) {
		return peer
	}
	client := peer
	values := r.Header["X-Forwarded-For"]
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			a, ok := parseForwardedAddr(entry)
			if !ok {
				return client
			}
			client = a
			if !t.trusts(a) {
				return a
			}
		}
	}
	return client
}

// parseForwardedAddr parses one X-Forwarded-For entry: an address, maybe
// with a port or in brackets.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// X-Forwarded-Proto values shared by every request: a header map gets them
// with cap == len, so an Add copies instead of writing into them.
var (
	forwardedHTTP  = []string{"http"}
	forwardedHTTPS = []string{"https"}
)

// setForwarded sets X-Forwarded-For, -Proto and -Host on out. What the
// client sent is believed only from a trusted proxy: then X-Forwarded-For is
// appended to, and -Proto, -Host and Forwarded are kept. From anyone else
// they are replaced (Forwarded is dropped). ReverseProxy has already removed
// all four from out, so they are assigned under their canonical names
// rather than through Header.Set. vals, when not nil, holds the two
// per-request values instead of a new allocation.
func (t *trust) setForwarded(in, out *http.Request, vals *[2]string) {
	proto := forwardedHTTP
	if in.TLS != nil {
		proto = forwardedHTTPS
	}
	host := in.Host
	peer, ok := peerAddr(in)
	trusted := ok && t.trusts(peer)
	var xff string
	if ok {
		// One string for the whole value: the prior hops when trusted,
		// then the peer.
		var buf [128]byte
		b := buf[:0]
		if trusted {
			for _, v := range in.Header["X-Forwarded-For"] {
				b = append(b, v...)
				b = append(b, ", "...)
			}
		}
		xff = string(peer.AppendTo(b))
	}
	if trusted {
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			proto = []string{v}
		}
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
		if v := in.Header["Forwarded"]; v != nil {
			out.Header["Forwarded"] = slices.Clone(v)
		}
	}
	// Both per-request values in one array; each slice has cap == len, so
	// an Add to one copies instead of overwriting the other.
	if vals == nil {
		vals = new([2]string)
	}
	vals[0], vals[1] = xff, host
	if xff != "" {
		out.Header["X-Forwarded-For"] = vals[0:1:1]
	}
	out.Header["X-Forwarded-Proto"] = proto
	out.Header["X-Forwarded-Host"] = vals[1:2:2]
}
