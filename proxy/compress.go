package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// minCompressSize is the smallest body worth compressing: below it the
// encoding's framing eats the gain.
const minCompressSize = 512

// encoding is a content coding gatehouse can produce.
type encoding uint8

const (
	encIdentity encoding = iota
	encGzip
	encZstd
)

func (e encoding) String() string {
	switch e {
	case encGzip:
		return "gzip"
	case encZstd:
		return "zstd"
	}
	return "identity"
}

// negotiateEncoding picks the coding for an Accept-Encoding header: the
// one with the highest q-value, zstd on a tie, identity when neither is
// acceptable. "*" stands for any coding not named. It does not allocate.
func negotiateEncoding(values []string) encoding {
	// -1: not mentioned.
	qGzip, qZstd, qAny := -1.0, -1.0, -1.0
	for _, v := range values {
		for v != "" {
			var item string
			if i := strings.IndexByte(v, ','); i >= 0 {
				item, v = v[:i], v[i+1:]
			} else {
				item, v = v, ""
			}
			name, params, _ := strings.Cut(item, ";")
			name = strings.TrimSpace(name)
			q := 1.0
			for params != "" {
				var p string
				if i := strings.IndexByte(params, ';'); i >= 0 {
					p, params = params[:i], params[i+1:]
				} else {
					p, params = params, ""
				}
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil || f < 0 || f > 1 {
						f = 0
					}
					q = f
				}
			}
			switch {
			case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
				qGzip = max(qGzip, q)
			case strings.EqualFold(name, "zstd"):
				qZstd = max(qZstd, q)
			case name == "*":
				qAny = max(qAny, q)
			}
		}
	}
	if qGzip < 0 {
		qGzip = qAny
	}
	if qZstd < 0 {
		qZstd = qAny
	}
	switch {
	case qZstd > 0 && qZstd >= qGzip:
		return encZstd
	case qGzip > 0:
		return encGzip
	}
	return encIdentity
}

// compressible reports whether a response of this Content-Type gains from
// compression. Images (but SVG and icons), audio, video, fonts in WOFF,
// archives and opaque binaries are compressed already; gRPC frames itself.
func compressible(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	if mt == "" {
		// Unknown: net/http would sniff the compressed bytes instead.
		return false
	}
	major, minor, _ := strings.Cut(mt, "/")
	switch {
	case strings.EqualFold(major, "text"):
		return true
	case strings.EqualFold(major, "image"):
		for _, ok := range []string{"svg+xml", "x-icon", "vnd.microsoft.icon", "bmp"} {
			if strings.EqualFold(minor, ok) {
				return true
			}
		}
		return false
	case strings.EqualFold(major, "video"), strings.EqualFold(major, "audio"):
		return false
	case strings.EqualFold(major, "font"):
		return !strings.EqualFold(minor, "woff") && !strings.EqualFold(minor, "woff2")
	case strings.EqualFold(major, "application"):
		for _, no := range []string{"octet-stream", "zip", "gzip", "x-gzip", "zstd", "x-bzip2", "x-xz", "x-7z-compressed",
			"x-rar-compressed", "vnd.rar", "pdf", "font-woff", "x-font-woff", "wasm-compressed"} {
			if strings.EqualFold(minor, no) {
				return false
			}
		}
		return len(minor) < 4 || !strings.EqualFold(minor[:4], "grpc")
	}
	return true
}

// Encoders are pooled: a zstd encoder holds a window and tables, a gzip
// one its deflate state, and both are reset per response.
var (
	gzipPool = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, 5)
		return w
	}}
	zstdPool = sync.Pool{New: func() any {
		w, _ := zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithWindowSize(1<<20),
			zstd.WithLowerEncoderMem(true))
		return w
	}}
	compressWriterPool = sync.Pool{New: func() any { return new(compressWriter) }}
)

// compressHandler compresses the responses of next as the client accepts
// (see compressWriter for when it does not).
type compressHandler struct {
	next http.Handler
}

func (c *compressHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cw := compressWriterPool.Get().(*compressWriter)
	*cw = compressWriter{ResponseWriter: w, enc: negotiateEncoding(r.Header["Accept-Encoding"]), head: r.Method == http.MethodHead}
	c.next.ServeHTTP(cw, r)
	cw.finish()
	*cw = compressWriter{}
	compressWriterPool.Put(cw)
}

// compressWriter states.
const (
	cwHeaderPending = iota // nothing written yet
	cwBuffering            // compressible, length unknown: the first bytes wait in buf
	cwCompressing          // header sent with Content-Encoding
	cwPassthrough          // not compressing this response
)

// compressWriter compresses one response on its way out. It compresses
// only a final status other than 204, 206 and 304, of a compressible
// Content-Type, not already encoded, without Cache-Control: no-transform,
// for a client that accepts gzip or zstd, and of at least minCompressSize
// bytes: a Content-Length below it passes as is, and a body of unknown
// length is held until minCompressSize bytes came or the handler flushed.
// A flush goes through the encoder, so streams (server-sent events) keep
// flowing.
type compressWriter struct {
	http.ResponseWriter
	enc    encoding
	head   bool
	state  int
	status int
	buf    [minCompressSize]byte
	n      int
	gz     *gzip.Writer
	zs     *zstd.Encoder
	err    error
}

func (w *compressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *compressWriter) WriteHeader(code int) {
	if code < 200 || w.state != cwHeaderPending {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	h := w.Header()
	eligible := code != http.StatusNoContent && code != http.StatusNotModified && code != http.StatusPartialContent &&
		h.Get("Content-Encoding") == "" && h.Get("Content-Range") == "" &&
		compressible(h.Get("Content-Type")) && !hasToken(h["Cache-Control"], "no-transform")
	if eligible {
		addVary(h, "Accept-Encoding")
	}
	if !eligible || w.enc == encIdentity || w.head {
		w.state = cwPassthrough
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n < minCompressSize {
			w.state = cwPassthrough
			w.ResponseWriter.WriteHeader(code)
			return
		}
		w.status = code
		w.start()
		return
	}
	w.status = code
	w.state = cwBuffering
}

// start sends the header for a compressed body and readies the encoder.
func (w *compressWriter) start() {
	h := w.Header()
	h.Set("Content-Encoding", w.enc.String())
	delete(h, "Content-Length")
	delete(h, "Accept-Ranges")
	if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
		// The compressed body is not byte-identical any more.
		h.Set("Etag", "W/"+et)
	}
	w.ResponseWriter.WriteHeader(w.status)
	w.state = cwCompressing
	switch w.enc {
	case encGzip:
		w.gz = gzipPool.Get().(*gzip.Writer)
		w.gz.Reset(w.ResponseWriter)
	case encZstd:
		w.zs = zstdPool.Get().(*zstd.Encoder)
		w.zs.Reset(w.ResponseWriter)
	}
	if w.n > 0 {
		n := w.n
		w.n = 0
		_, _ = w.encode(w.buf[:n])
	}
}

func (w *compressWriter) encode(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	var n int
	if w.gz != nil {
		n, w.err = w.gz.Write(p)
	} else {
		n, w.err = w.zs.Write(p)
	}
	return n, w.err
}

func (w *compressWriter) Write(p []byte) (int, error) {
	if w.state == cwHeaderPending {
		w.WriteHeader(http.StatusOK)
	}
	switch w.state {
	case cwBuffering:
		if w.n+len(p) < minCompressSize {
			w.n += copy(w.buf[w.n:], p)
			return len(p), nil
		}
		w.start()
		return w.encode(p)
	case cwCompressing:
		return w.encode(p)
	}
	return w.ResponseWriter.Write(p)
}

// WriteString spares fixed responses a copy of their body: it goes to the
// encoder through buf.
func (w *compressWriter) WriteString(s string) (int, error) {
	if w.state == cwHeaderPending {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == cwBuffering {
		if w.n+len(s) < minCompressSize {
			w.n += copy(w.buf[w.n:], s)
			return len(s), nil
		}
		w.start()
	}
	if w.state != cwCompressing {
		return io.WriteString(w.ResponseWriter, s)
	}
	n := 0
	for len(s) > 0 {
		c := copy(w.buf[:], s)
		if _, err := w.encode(w.buf[:c]); err != nil {
			return n, err
		}
		n += c
		s = s[c:]
	}
	return n, nil
}

// ReadFrom keeps sendfile for responses that pass as they are.
func (w *compressWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.state == cwHeaderPending {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == cwPassthrough {
		if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
			return rf.ReadFrom(r)
		}
	}
	return io.Copy(struct{ io.Writer }{w}, r)
}

// FlushError sends what the encoder holds, then flushes the connection. A
// flush while buffering means a stream: it is compressed from here on.
func (w *compressWriter) FlushError() error {
	if w.state == cwHeaderPending {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == cwBuffering {
		w.start()
	}
	if w.state == cwCompressing && w.err == nil {
		if w.gz != nil {
			w.err = w.gz.Flush()
		} else {
			w.err = w.zs.Flush()
		}
		if w.err != nil {
			return w.err
		}
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// finish ends the response: a short buffered body goes out as it is, an
// encoder writes its trailer and goes back to its pool.
func (w *compressWriter) finish() {
	switch w.state {
	case cwBuffering:
		w.Header().Set("Content-Length", strconv.Itoa(w.n))
		w.ResponseWriter.WriteHeader(w.status)
		_, _ = w.ResponseWriter.Write(w.buf[:w.n])
	case cwCompressing:
		if w.gz != nil {
			if w.err == nil {
				_ = w.gz.Close()
			}
			w.gz.Reset(io.Discard)
			gzipPool.Put(w.gz)
		}
		if w.zs != nil {
			if w.err == nil {
				_ = w.zs.Close()
			}
			w.zs.Reset(nil)
			zstdPool.Put(w.zs)
		}
	}
}

// hasToken reports whether a comma-separated header holds token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			if name, _, _ := strings.Cut(item, "="); strings.EqualFold(strings.TrimSpace(name), token) {
				return true
			}
		}
	}
	return false
}

// addVary adds name to Vary unless it is there already.
func addVary(h http.Header, name string) {
	if hasToken(h["Vary"], name) || hasToken(h["Vary"], "*") {
		return
	}
	h["Vary"] = append(h["Vary"], name)
}
