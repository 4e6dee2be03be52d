package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// limitsUpstream is an Upstream for the limits tests: /slow holds each
// request until its client goes away (or the test ends), counting how many
// it holds at once; /upload reads the body; anything else answers "app".
type limitsUpstream struct {
	*httptest.Server
	mu             sync.Mutex
	inFlight, peak int
	uploads        atomic.Int64 // bodies read to their end
}

func newLimitsUpstream(t *testing.T) *limitsUpstream {
	u := &limitsUpstream{}
	done := make(chan struct{})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			u.mu.Lock()
			u.inFlight++
			u.peak = max(u.peak, u.inFlight)
			u.mu.Unlock()
			select {
			case <-r.Context().Done():
			case <-done:
			}
			u.mu.Lock()
			u.inFlight--
			u.mu.Unlock()
		case "/upload":
			if _, err := io.Copy(io.Discard, r.Body); err == nil {
				u.uploads.Add(1)
			}
		default:
			fmt.Fprint(w, "app")
		}
	}))
	t.Cleanup(func() { close(done); u.Close() })
	return u
}

// resetPeak starts counting the peak anew.
func (u *limitsUpstream) resetPeak() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.peak = u.inFlight
}

// peakInFlight is the most /slow requests the Upstream held at once.
func (u *limitsUpstream) peakInFlight() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.peak
}

// limitsConfig sets every limit low enough for a test to cross it.
const limitsConfig = `limits: {header_bytes: 8KiB, headers: 20, uri_bytes: 1KiB, streams: 5}`

// meanwhile runs abuse while other clients (on their own HTTP/2
// connection) keep asking for /, and fails the test if any of them was
// not served, or if they got no answer during and right after abuse.
func meanwhile(t *testing.T, in *instance, abuse func()) {
	t.Helper()
	c := in.Client(t)
	var served, failed atomic.Int64
	var first atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := c.Get("https://localhost/")
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = errors.New(res.Status)
					}
				}
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				served.Add(1)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Errorf("other clients meanwhile: %d requests failed (first: %v)", n, first.Load())
		}
	}()
	waitFor(t, 10*time.Second, func() bool { return served.Load() > 0 })
	abuse()
	after := served.Load()
	waitFor(t, 10*time.Second, func() bool { return served.Load() >= after+3 })
}

// TestRequestLimits crosses header count, header size, URI length and
// max_body through a real Listener over HTTP/1.1, HTTP/2 and HTTP/3 (issue
// 13, faults that lose nothing): each is refused with its status, nothing
// over a limit reaches the Upstream, and other clients are served
// meanwhile.
func TestRequestLimits(t *testing.T) {
	up := newLimitsUpstream(t)
	in := startProxy(t, up.URL, ", http3: true", limitsConfig, ", max_body: 1KiB")
	roots := in.LocalRoots(t)
	h1 := in.Client(t)
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	h1.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	clients := map[string]*http.Client{"HTTP/1.1": h1, "HTTP/2.0": in.Client(t), "HTTP/3.0": h3Client(t, in, roots)}

	many := make(http.Header)
	for i := range 25 {
		many.Set(fmt.Sprintf("X-Field-%d", i), "v")
	}
	few := make(http.Header)
	for i := range 10 {
		few.Set(fmt.Sprintf("X-Field-%d", i), "v")
	}
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   string
		want   int
	}{
		{"10 header fields", "GET", "/", few, "", 200},
		{"25 header fields over headers: 20", "GET", "/", many, "", 431},
		{"25 values of one field", "GET", "/", http.Header{"X-Many": slicesRepeat("v", 25)}, "", 431},
		{"a 1000-byte target", "GET", "/?q=" + strings.Repeat("a", 996), nil, "", 200},
		{"a 2000-byte target over uri_bytes: 1KiB", "GET", "/?q=" + strings.Repeat("a", 2000), nil, "", 414},
		{"a 1 KiB body", "POST", "/upload", nil, strings.Repeat("b", 1024), 200},
		{"a 2 KiB body over max_body: 1KiB", "POST", "/upload", nil, strings.Repeat("b", 2048), 413},
	}
	for proto, c := range clients {
		t.Run(proto, func(t *testing.T) {
			meanwhile(t, in, func() {
				for _, tt := range tests {
					before := up.uploads.Load()
					req, _ := http.NewRequest(tt.method, "https://localhost"+tt.path, strings.NewReader(tt.body))
					if tt.body == "" {
						req.Body = nil
					}
					for k, v := range tt.header {
						req.Header[k] = v
					}
					res, err := c.Do(req)
					if err != nil {
						t.Errorf("%s: %v", tt.name, err)
						continue
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.Proto != proto || res.StatusCode != tt.want {
						t.Errorf("%s: got %s %d, want %s %d", tt.name, res.Proto, res.StatusCode, proto, tt.want)
					}
					if tt.want == 413 && up.uploads.Load() != before {
						t.Errorf("%s: the Upstream read the whole body", tt.name)
					}
				}
			})
		})
	}

	// header_bytes: Go's clients refuse to send a header block over the
	// server's advertised limit, so the request goes out raw.
	t.Run("header_bytes over HTTP/2", func(t *testing.T) {
		meanwhile(t, in, func() {
			c := dialH2(t, in.HTTPS, roots)
			c.request(1, "GET", "/", true, "x-big", strings.Repeat("a", 9<<10))
			if got := c.await(1); got.status != "431" && got.goAway == nil {
				t.Errorf("a 9 KiB header over header_bytes: 8KiB: got %+v, want 431 or GOAWAY", got)
			}
		})
	})
	t.Run("header_bytes over HTTP/1.1", func(t *testing.T) {
		meanwhile(t, in, func() {
			req, _ := http.NewRequest("GET", "https://localhost/", nil)
			// Go's server allows 4 KiB over MaxHeaderBytes for the request line.
			req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
			res, err := h1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 431 {
				t.Errorf("a 16 KiB header over header_bytes: 8KiB: got %d, want 431", res.StatusCode)
			}
		})
	})
}

func slicesRepeat(v string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// TestHTTP2StreamLimits holds one HTTP/2 connection to limits.streams,
// then floods it with rapid resets (CVE-2023-44487) and another with
// CONTINUATION frames (CVE-2024-27316), through a real Listener (issue
// 13): the connection gets no more than the limit in flight, neither flood
// makes the Upstream hold more than a few requests of it (the CONTINUATION
// flood ends with the connection closed), and other clients are served
// meanwhile.
func TestHTTP2StreamLimits(t *testing.T) {
	up := newLimitsUpstream(t)
	in := startProxy(t, up.URL, "", limitsConfig, "")
	roots := in.LocalRoots(t)

	t.Run("streams", func(t *testing.T) {
		meanwhile(t, in, func() {
			c := dialH2(t, in.HTTPS, roots)
			// The server's first frame is its SETTINGS.
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			f, err := c.fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			sf, ok := f.(*http2.SettingsFrame)
			if !ok {
				t.Fatalf("first frame %v, want SETTINGS", f)
			}
			if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 5 {
				t.Errorf("advertised MAX_CONCURRENT_STREAMS %d (%v), want 5", v, ok)
			}
			c.fr.WriteSettingsAck()
			for id := uint32(1); id <= 9; id += 2 {
				c.request(id, "GET", "/slow", true)
			}
			waitFor(t, 10*time.Second, func() bool { return up.peakInFlight() == 5 })
			c.request(11, "GET", "/slow", true)
			if got := c.await(11); !got.wasRST || (got.reset != http2.ErrCodeRefusedStream && got.reset != http2.ErrCodeProtocol) {
				t.Errorf("a sixth stream: got %+v, want it reset (REFUSED_STREAM or PROTOCOL_ERROR)", got)
			}
			c.conn.Close()
			waitFor(t, 10*time.Second, func() bool {
				up.mu.Lock()
				defer up.mu.Unlock()
				return up.inFlight == 0
			})
			if p := up.peakInFlight(); p != 5 {
				t.Errorf("the Upstream held %d requests of one connection at once, want 5", p)
			}
		})
	})

	t.Run("rapid reset", func(t *testing.T) {
		up.resetPeak()
		meanwhile(t, in, func() {
			c := dialH2(t, in.HTTPS, roots)
			// Every request is cancelled as soon as it is sent, so none
			// counts against MAX_CONCURRENT_STREAMS; what bounds the work
			// is that Go's server runs at most streams handlers per
			// connection and closes one that queues more than 4x that
			// (ENHANCE_YOUR_CALM).
			var burst bytes.Buffer
			fr := http2.NewFramer(&burst, nil)
			for id := uint32(1); id < 2*1000; id += 2 {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block("GET", "/slow"), EndStream: true, EndHeaders: true})
				fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			fr.WritePing(false, drainPing)
			// The burst goes out while the reader below drains the answers.
			go func() { c.conn.Write(burst.Bytes()) }()
			goAway, closed := c.drain(20*time.Second, true)
			t.Logf("after the burst: closed %v, GOAWAY %v, Upstream peak %d", closed, goAway, up.peakInFlight())
			// Whether the queue overflows (and the connection is closed)
			// depends on how fast the cancelled handlers return against
			// how fast the frames are read: on a loaded machine they keep
			// up, and the server acks the ping after the last reset. Either
			// way the Upstream's peak below is what bounds the work; a
			// close must be ENHANCE_YOUR_CALM.
			if closed && (goAway == nil || goAway.ErrCode != http2.ErrCodeEnhanceYourCalm) {
				t.Errorf("after the flood: closed with GOAWAY %v, want ENHANCE_YOUR_CALM", goAway)
			}
			// Slack over 5: the Upstream notices a cancelled request only
			// when its connection closes, after gatehouse started the next.
			if p := up.peakInFlight(); p > 4*5 {
				t.Errorf("the Upstream held %d requests of one connection at once during the flood, want about 5", p)
			}
		})
	})

	t.Run("CONTINUATION flood", func(t *testing.T) {
		meanwhile(t, in, func() {
			c := dialH2(t, in.HTTPS, roots)
			// A header block that never ends: HEADERS without END_HEADERS,
			// then 4 KiB CONTINUATION frames, up to 4 MiB in all.
			go func() {
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block("GET", "/"), EndStream: true}); err != nil {
					return
				}
				for i := range 1000 {
					if err := c.fr.WriteContinuation(1, false, c.fields(fmt.Sprintf("x-flood-%d", i), strings.Repeat("f", 4000))); err != nil {
						return
					}
				}
			}()
			goAway, closed := c.drain(20*time.Second, false)
			if !closed || goAway == nil || goAway.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("a header block that never ends: closed %v, GOAWAY %v, want closed with PROTOCOL_ERROR", closed, goAway)
			}
		})
	})
}

// TestHTTP3StreamLimit holds one HTTP/3 connection to limits.streams
// (issue 13): QUIC grants the client no more request streams than that,
// so a sixth cannot even be opened, and the Upstream holds five.
func TestHTTP3StreamLimit(t *testing.T) {
	up := newLimitsUpstream(t)
	in := startProxy(t, up.URL, ", http3: true", limitsConfig, "")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, in.HTTPS, &tls.Config{ServerName: "localhost", RootCAs: in.LocalRoots(t), NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		t.Fatalf("dialing QUIC: %v", err)
	}
	defer conn.CloseWithError(0, "")
	meanwhile(t, in, func() {
		for range 5 {
			str, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := str.Write(h3Headers("GET", "/slow")); err != nil {
				t.Fatal(err)
			}
			str.Close()
		}
		waitFor(t, 10*time.Second, func() bool { return up.peakInFlight() == 5 })
		var limit *quic.StreamLimitReachedError
		if _, err := conn.OpenStream(); !errors.As(err, &limit) {
			t.Errorf("opening a sixth stream: %v, want the stream limit reached", err)
		}
	})
}
