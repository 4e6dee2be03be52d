package proxy

import (
	"cmp"
	"net/http"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// requestLimits are limits.uri_bytes and limits.headers, checked on every
// request before it is routed. limits.header_bytes is the servers' own
// MaxHeaderBytes, and max_body a Route's.
type requestLimits struct {
	uriBytes int // the longest request target
	headers  int // the most header fields
}

func newRequestLimits(l config.Limits) requestLimits {
	return requestLimits{
		uriBytes: int(cmp.Or(l.URIBytes, config.DefaultURIBytes)),
		headers:  cmp.Or(l.Headers, config.DefaultHeaders),
	}
}

// refuse returns the status that answers r when it is over a limit (414,
// 431), or 0. Repeated fields count once per value, as each was a line
// (HTTP/1) or a field (HTTP/2, HTTP/3) of its own.
func (l requestLimits) refuse(r *http.Request) int {
	if len(r.RequestURI) > l.uriBytes {
		return http.StatusRequestURITooLong
	}
	if len(r.Header) > l.headers {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	n := 0
	for _, v := range r.Header {
		n += len(v)
	}
	if n > l.headers {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	return 0
}
