package framing

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// valid are framings the Checker lets through.
var valid = []struct{ name, request string }{
	{"GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"pipelined GETs", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"Content-Length body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
	{"same Content-Length twice", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length:5 \r\n\r\nhello"},
	{"body with bare LF in it", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\na\nb\nc"},
	{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n"},
	{"chunked, any case and OWS", "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  Chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{"chunk extension", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"},
	{"16 hex digits", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005\r\nhello\r\n0\r\n\r\n"},
	{"trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"},
	{"value with tab and obs-text", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\tc\xff\r\n\r\n"},
}

func TestCheckerRefusesVectors(t *testing.T) {
	for _, v := range Vectors {
		t.Run(v.Name, func(t *testing.T) {
			var c Checker
			err := c.Feed([]byte(v.Request))
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, want a refusal", err)
			}
			// Byte by byte, the same refusal at the same byte.
			var d Checker
			var err1 error
			for i := 0; i < len(v.Request) && err1 == nil; i++ {
				err1 = d.Feed([]byte{v.Request[i]})
			}
			if err1 == nil || err1.Error() != err.Error() {
				t.Errorf("byte by byte: got %v, want %v", err1, err)
			}
		})
	}
}

func TestCheckerLetsValidThrough(t *testing.T) {
	for _, v := range valid {
		t.Run(v.name, func(t *testing.T) {
			var c Checker
			if err := c.Feed([]byte(v.request)); err != nil {
				t.Fatal(err)
			}
			if c.st != sLineStart {
				t.Errorf("after the whole request: state %d, want the start of the next", c.st)
			}
		})
	}
}

// Until its body is complete a request is not done, and bytes after it
// are checked as the next request.
func TestCheckerFollowsBodies(t *testing.T) {
	var c Checker
	if err := c.Feed([]byte("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Feed([]byte("def\nhi")); err != nil {
		t.Fatal(err)
	}
	if err := c.Feed([]byte("GET / HTTP/1.1\n")); err == nil {
		t.Fatal("bare LF in the request after the body: got no refusal")
	}
}

// FuzzChecker feeds arbitrary bytes, whole and split at an arbitrary
// point. The Checker never panics, a split never changes its verdict, and
// whatever it lets through as complete requests, net/http reads as the
// same number of requests ending at the same byte, or refuses: the two
// never disagree about where a request ends.
func FuzzChecker(f *testing.F) {
	for _, v := range Vectors {
		f.Add([]byte(v.Request), uint16(len(v.Request)/2))
	}
	for _, v := range valid {
		f.Add([]byte(v.request), uint16(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		var whole Checker
		err := whole.Feed(in)
		at := int(split) % (len(in) + 1)
		var parts Checker
		errParts := parts.Feed(in[:at])
		if errParts == nil {
			errParts = parts.Feed(in[at:])
		}
		if (err == nil) != (errParts == nil) || (err != nil && err.Error() != errParts.Error()) {
			t.Fatalf("whole: %v; split at %d: %v", err, at, errParts)
		}
		if err != nil || whole.st != sLineStart {
			return
		}
		// Complete requests only: compare with net/http's reading.
		n := requests(in)
		br := bufio.NewReader(bytes.NewReader(in))
		for i := 0; ; i++ {
			if _, err := br.Peek(1); err == io.EOF {
				if i != n {
					t.Fatalf("net/http read %d requests, the Checker %d", i, n)
				}
				return
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				return // net/http is stricter here
			}
			_, err = io.Copy(io.Discard, req.Body)
			if err != nil {
				return
			}
			if req.Close && br.Buffered() > 0 && i+1 < n {
				// net/http stops after a request asking to close; so
				// does the server.
				return
			}
		}
	})
}

// requests counts the complete requests in in, which the Checker accepts.
func requests(in []byte) int {
	var c Checker
	n := 0
	for i := range in {
		c.Feed(in[i : i+1])
		if c.st == sLineStart {
			n++
		}
	}
	return n
}

func BenchmarkChecker(b *testing.B) {
	req := []byte(strings.Repeat("GET /index.html HTTP/1.1\r\nHost: localhost:8443\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n", 1))
	b.SetBytes(int64(len(req)))
	var c Checker
	for b.Loop() {
		if err := c.Feed(req); err != nil {
			b.Fatal(err)
		}
	}
}
