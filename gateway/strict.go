package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/framing"
)

// strictListener wraps every connection of a plain HTTP Listener in a
// framing.Conn, so malformed request framing is refused before net/http
// parses it.
type strictListener struct {
	net.Listener
	onRefuse func(net.Conn, error)
}

func (l strictListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return framing.NewConn(c, l.onRefuse), nil
}

// refusedLogger logs each connection refused for its framing at debug
// level: a scanner's attempts would flood the log at any higher one.
func refusedLogger(logger *slog.Logger) func(net.Conn, error) {
	return func(c net.Conn, err error) {
		logger.Debug("connection refused: malformed HTTP/1 framing", "client", c.RemoteAddr().String(), "error", err)
	}
}

// tlsListener does the TLS handshake of each connection of the HTTPS
// Listener on a goroutine of its own, and hands net/http the connections
// whose handshake succeeded: HTTP/2 (and acme-tls/1) ones as the
// *tls.Conn net/http expects of them, HTTP/1 ones wrapped in a
// framing.Conn, whose checks must see the bytes after decryption and
// before net/http does. net/http then serves the HTTP/1 connection as
// plain and takes Request.TLS from the wrapper.
//
// A failed handshake is reported on logf as net/http reports it, so the
// handshake metrics see no difference. The goroutines end with their
// handshake, which timeout bounds, or when the Listener is closed.
type tlsListener struct {
	net.Listener
	conf     *tls.Config
	timeout  time.Duration
	logf     func(format string, args ...any)
	onRefuse func(net.Conn, error)

	ready  chan net.Conn // handshaken connections
	ctx    context.Context
	cancel context.CancelFunc // ends the handshakes in flight on Close
	errMu  sync.Mutex         // guards err
	err    error              // why the accept loop ended
	once   sync.Once
}

func newTLSListener(ln net.Listener, conf *tls.Config, timeout time.Duration, errorLog *log.Logger, onRefuse func(net.Conn, error)) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &tlsListener{
		Listener: ln, conf: conf, timeout: timeout, logf: errorLog.Printf, onRefuse: onRefuse,
		ready: make(chan net.Conn), ctx: ctx, cancel: cancel,
	}
	go l.acceptLoop()
	return l
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.ctx.Done():
		l.errMu.Lock()
		defer l.errMu.Unlock()
		return nil, l.err
	}
}

func (l *tlsListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		l.errMu.Lock()
		if l.err == nil {
			l.err = net.ErrClosed
		}
		l.errMu.Unlock()
		l.cancel()
	})
	return err
}

// acceptLoop accepts until the Listener is closed. Other accept errors
// (out of file descriptors) are logged and retried after a growing pause,
// as net/http does.
func (l *tlsListener) acceptLoop() {
	var pause time.Duration
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				l.Close()
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			l.logf("http: Accept error: %v; retrying in %v", err, pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		pause = 0
		go l.handshake(raw)
	}
}

func (l *tlsListener) handshake(raw net.Conn) {
	tc := tls.Server(raw, l.conf)
	if l.timeout > 0 {
		raw.SetDeadline(time.Now().Add(l.timeout))
	}
	if err := tc.HandshakeContext(l.ctx); err != nil {
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			reason = "client sent an HTTP request to an HTTPS server"
		}
		raw.Close()
		if l.ctx.Err() == nil {
			l.logf("http: TLS handshake error from %s: %v", raw.RemoteAddr(), reason)
		}
		return
	}
	raw.SetDeadline(time.Time{})
	var c net.Conn = tc
	switch tc.ConnectionState().NegotiatedProtocol {
	case "", "http/1.1", "http/1.0":
		c = framing.NewConn(tc, l.onRefuse)
	}
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

// looksLikeHTTP reports whether the first bytes of a connection to the
// HTTPS Listener are a plain HTTP request, as net/http judges them.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
