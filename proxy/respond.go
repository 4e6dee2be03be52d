package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// respondRoute answers every request with a fixed status and body, its
// headers rendered once at compile time.
type respondRoute struct {
	status        int
	body          string
	contentType   []string // shared, never written in place
	contentLength []string
}

func newRespondRoute(cr *config.Respond) *respondRoute {
	status := cr.Status
	if status == 0 {
		status = http.StatusOK
	}
	ct := "text/plain; charset=utf-8"
	if strings.HasPrefix(strings.TrimLeft(cr.Body, " \t\r\n"), "<") {
		ct = "text/html; charset=utf-8"
	}
	return &respondRoute{
		status:        status,
		body:          cr.Body,
		contentType:   []string{ct},
		contentLength: []string{strconv.Itoa(len(cr.Body))},
	}
}

func (rr *respondRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !bodyAllowed(rr.status) {
		w.WriteHeader(rr.status)
		return
	}
	h := w.Header()
	if rr.body != "" {
		h["Content-Type"] = rr.contentType
	}
	h["Content-Length"] = rr.contentLength
	w.WriteHeader(rr.status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, rr.body)
	}
}

// bodyAllowed reports whether a response with this status may carry a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
