package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are the hop-by-hop headers of RFC 9110, section 7.6.1, and
// their older kin (Keep-Alive, Proxy-Connection), never passed on.
// ReverseProxy strips the same list from requests and final responses;
// gatehouse applies it where ReverseProxy does not: to informational (1xx)
// answers, to a 101's header, and to forward_auth's exchanges.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopHeaders deletes hop-by-hop headers, and those Connection names.
func removeHopHeaders(h http.Header) {
	removeConnectionNamed(h, false)
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// removeUpgradeHopHeaders is removeHopHeaders for the 101 answering a
// WebSocket upgrade: it keeps the Connection: Upgrade and Upgrade that make
// the answer a protocol switch, and drops everything else the Upstream's
// Connection names (a header meant for gatehouse, not for the client).
func removeUpgradeHopHeaders(h http.Header) {
	if removeConnectionNamed(h, true) {
		h["Connection"] = []string{"Upgrade"}
	}
	for _, name := range hopHeaders {
		if name != "Connection" && name != "Upgrade" {
			delete(h, name)
		}
	}
}

// removeConnectionNamed deletes the headers h's Connection names, all but
// Upgrade when keepUpgrade is set, and reports whether Connection names
// anything besides Upgrade.
func removeConnectionNamed(h http.Header, keepUpgrade bool) bool {
	other := false
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			name = textproto.TrimString(name)
			if name == "" || keepUpgrade && strings.EqualFold(name, "upgrade") {
				continue
			}
			other = true
			delete(h, http.CanonicalHeaderKey(name))
		}
	}
	return other
}
