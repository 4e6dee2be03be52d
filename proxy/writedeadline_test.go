package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// deadlineRecorder is an HTTP/2 ResponseWriter that counts the write
// deadlines set on it.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	set int
}

func (d *deadlineRecorder) SetWriteDeadline(time.Time) error { d.set++; return nil }

// TestWriteDeadlineArmedLazily: an HTTP/2 response arms timeouts.write only
// once it outgrows the server's buffer or flushes, never for a small
// answer (a deadline per stream costs a fifth of a small request's CPU).
func TestWriteDeadlineArmedLazily(t *testing.T) {
	h2 := httptest.NewRequest("GET", "/", nil)
	h2.ProtoMajor = 2
	newExchange := func() (*exchange, *deadlineRecorder) {
		d := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		return &exchange{ResponseWriter: d, req: h2, writeTimeout: time.Minute}, d
	}

	x, d := newExchange()
	x.WriteHeader(200)
	x.Write([]byte(strings.Repeat("s", bufferedBytes)))
	if d.set != 0 {
		t.Errorf("a %d-byte answer set %d write deadlines, want none", bufferedBytes, d.set)
	}
	x.Write([]byte("1"))
	if d.set != 1 {
		t.Errorf("past %d bytes: %d write deadlines set, want 1", bufferedBytes, d.set)
	}

	x, d = newExchange()
	x.Write([]byte("data: small\n\n"))
	if err := http.NewResponseController(x).Flush(); err != nil {
		t.Fatal(err)
	}
	if d.set != 1 {
		t.Errorf("a flush of a small answer: %d write deadlines set, want 1 (a flush may block on the client)", d.set)
	}
}
