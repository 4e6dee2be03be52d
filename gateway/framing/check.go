// Package framing checks the HTTP/1.1 requests arriving on a connection
// byte by byte, before net/http parses them, and refuses the framing that
// request smuggling is made of (RFC 9112): bare LF line ends, obs-fold,
// Content-Length together with Transfer-Encoding, differing
// Content-Lengths, any Transfer-Encoding but exactly chunked, malformed
// chunk sizes and chunk framing. net/http accepts several of these; a
// proxy that parses a request differently from the Upstream behind it is
// how one request becomes two.
package framing

import (
	"errors"
	"fmt"
)

// Error is a framing violation: what was wrong and at which byte of the
// connection (counted from 0).
type Error struct {
	Offset int64
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("malformed HTTP/1 request at byte %d: %s", e.Offset, e.Reason)
}

// ErrRefused is what errors.Is finds in every *Error.
var ErrRefused = errors.New("malformed HTTP/1 request")

// Is reports whether target is ErrRefused.
func (e *Error) Is(target error) bool { return target == ErrRefused }

type state uint8

const (
	sLineStart   state = iota // before a request line
	sReqLine                  // in the request line
	sReqLineCR                // CR of the request line seen
	sFieldStart               // at the start of a field line or the empty line
	sName                     // in a field name
	sValue                    // in a field value
	sValueCR                  // CR of a field line seen
	sEndCR                    // CR of the empty line seen
	sBody                     // in a Content-Length body
	sChunkSize                // in a chunk size
	sChunkExt                 // in a chunk extension
	sChunkSizeCR              // CR of a chunk-size line seen
	sChunkData                // in chunk data
	sChunkDataCR              // expecting the CR after chunk data
	sChunkDataLF              // expecting the LF after chunk data
)

// field is a field whose value the framing depends on.
type field uint8

const (
	fOther field = iota
	fContentLength
	fTransferEncoding
	fUpgrade
)

const (
	// maxChunkDigits bounds a chunk size: 16 hex digits fill an int64's
	// bits and more are an attack on the integer, not a body.
	maxChunkDigits = 16
	// maxChunkLine bounds a chunk-size line with its extensions, as
	// net/http bounds it.
	maxChunkLine = 4096
	// maxValue bounds the Content-Length and Transfer-Encoding values kept;
	// a longer one is not a valid value.
	maxValue = 32
)

// Checker follows the requests of one connection. Its zero value expects
// a request line. A Checker is not safe for concurrent use.
type Checker struct {
	st  state
	off int64 // bytes fed so far

	// n is what is left of a body or chunk, or the digits of a chunk size,
	// or the length of a chunk-size line.
	n    int64
	size uint64 // the chunk size being read

	// Of the request being read:
	tail     uint64 // the last 8 bytes of its request line
	name     [len("transfer-encoding")]byte
	nameLen  int
	cur      field
	val      [maxValue]byte
	valLen   int
	cl       int64
	hasCL    bool
	hasTE    bool
	chunked  bool
	upgrade  bool
	trailer  bool // the field lines read are a trailer section
	upgrades int  // requests with an Upgrade field whose header was complete
}

// Upgrades counts the complete requests that asked for a protocol
// upgrade; the connection watches for a 101 answer after each.
func (c *Checker) Upgrades() int { return c.upgrades }

func (c *Checker) fail(i int, reason string) error {
	return &Error{Offset: c.off + int64(i), Reason: reason}
}

// http10 is "HTTP/1.0" as the last 8 bytes of a request line.
var http10 = uint64('H')<<56 | uint64('T')<<48 | uint64('T')<<40 | uint64('P')<<32 |
	uint64('/')<<24 | uint64('1')<<16 | uint64('.')<<8 | uint64('0')

// Feed checks the next bytes of the connection and returns the first
// violation in them, after which the Checker must not be fed again.
func (c *Checker) Feed(p []byte) error {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch c.st {
		case sLineStart:
			*c = Checker{off: c.off, upgrades: c.upgrades, st: sReqLine}
			fallthrough
		case sReqLine:
			switch b {
			case '\r':
				c.st = sReqLineCR
			case '\n':
				return c.fail(i, "request line ends with a bare LF")
			default:
				// Pass the plain bytes at once, keeping the last 8.
				j := i
				for j < len(p)-1 && p[j+1] != '\r' && p[j+1] != '\n' {
					j++
				}
				for k := max(i, j-7); k <= j; k++ {
					c.tail = c.tail<<8 | uint64(p[k])
				}
				i = j
			}
		case sReqLineCR:
			if b != '\n' {
				return c.fail(i, "CR without LF in the request line")
			}
			c.st = sFieldStart
		case sFieldStart:
			switch {
			case b == '\r':
				c.st = sEndCR
			case b == '\n':
				return c.fail(i, "field line ends with a bare LF")
			case b == ' ' || b == '\t':
				return c.fail(i, "obs-fold (a field line continued on the next line)")
			case !isTchar(b):
				return c.fail(i, fmt.Sprintf("invalid byte %#02x in a field name", b))
			default:
				c.st, c.nameLen, c.valLen, c.cur = sName, 0, 0, fOther
				c.addName(b)
			}
		case sName:
			switch {
			case b == ':':
				c.st, c.cur = sValue, c.fieldOf()
			case !isTchar(b):
				return c.fail(i, fmt.Sprintf("invalid byte %#02x in a field name", b))
			default:
				c.addName(b)
			}
		case sValue:
			if c.cur == fOther {
				// Most values: pass the plain bytes at once.
				for i < len(p)-1 && p[i] >= ' ' && p[i] != 0x7f {
					i++
				}
				b = p[i]
			}
			switch {
			case b == '\r':
				c.st = sValueCR
			case b == '\n':
				return c.fail(i, "field line ends with a bare LF")
			case (b < ' ' && b != '\t') || b == 0x7f:
				return c.fail(i, fmt.Sprintf("control byte %#02x in a field value", b))
			case c.cur != fOther:
				if c.valLen == len(c.val) {
					return c.fail(i, "Content-Length or Transfer-Encoding value too long")
				}
				c.val[c.valLen] = b
				c.valLen++
			}
		case sValueCR:
			if b != '\n' {
				return c.fail(i, "CR without LF in a field line")
			}
			if reason := c.endField(); reason != "" {
				return c.fail(i, reason)
			}
			c.st = sFieldStart
		case sEndCR:
			if b != '\n' {
				return c.fail(i, "CR without LF after the field lines")
			}
			if reason := c.endHeader(); reason != "" {
				return c.fail(i, reason)
			}
		case sBody:
			i = c.skip(p, i, sLineStart)
		case sChunkSize:
			if v, ok := unhex(b); ok {
				c.n++
				if c.n > maxChunkDigits {
					return c.fail(i, "chunk size has more than 16 hex digits")
				}
				c.size = c.size<<4 | uint64(v)
				continue
			}
			if c.n == 0 {
				return c.fail(i, fmt.Sprintf("chunk size expected, got byte %#02x", b))
			}
			switch b {
			case ';':
				c.st, c.n = sChunkExt, c.n+1
			case '\r':
				c.st = sChunkSizeCR
			case '\n':
				return c.fail(i, "chunk-size line ends with a bare LF")
			default:
				return c.fail(i, fmt.Sprintf("invalid byte %#02x after a chunk size", b))
			}
		case sChunkExt:
			switch {
			case b == '\r':
				c.st = sChunkSizeCR
			case b == '\n':
				return c.fail(i, "chunk extension ends with a bare LF")
			case (b < ' ' && b != '\t') || b == 0x7f:
				return c.fail(i, fmt.Sprintf("control byte %#02x in a chunk extension", b))
			}
			if c.n++; c.n > maxChunkLine {
				return c.fail(i, "chunk extension too long")
			}
		case sChunkSizeCR:
			if b != '\n' {
				return c.fail(i, "CR without LF after a chunk size")
			}
			if c.size == 0 {
				c.st, c.trailer = sFieldStart, true
			} else {
				c.st, c.n = sChunkData, int64(c.size)
				if c.n < 0 {
					return c.fail(i, "chunk size too large")
				}
			}
		case sChunkData:
			i = c.skip(p, i, sChunkDataCR)
		case sChunkDataCR:
			if b != '\r' {
				return c.fail(i, "chunk data not followed by CRLF")
			}
			c.st = sChunkDataLF
		case sChunkDataLF:
			if b != '\n' {
				return c.fail(i, "chunk data not followed by CRLF")
			}
			c.st, c.n, c.size = sChunkSize, 0, 0
		}
	}
	c.off += int64(len(p))
	return nil
}

// skip passes over the body or chunk bytes left in p from i at once, and
// returns the index of the last one passed (the loop's i++ steps past
// it); after the last byte of the body, the state is next.
func (c *Checker) skip(p []byte, i int, next state) int {
	n := min(c.n, int64(len(p)-i))
	c.n -= n
	if c.n == 0 {
		c.st = next
	}
	return i + int(n) - 1
}

func (c *Checker) addName(b byte) {
	if c.nameLen < len(c.name) {
		c.name[c.nameLen] = b | 0x20 // lower case; other names do not matter
	}
	c.nameLen++
}

// fieldOf names the field whose name was just read.
func (c *Checker) fieldOf() field {
	if c.nameLen > len(c.name) {
		return fOther
	}
	switch string(c.name[:c.nameLen]) {
	case "content-length":
		return fContentLength
	case "transfer-encoding":
		return fTransferEncoding
	case "upgrade":
		return fUpgrade
	}
	return fOther
}

// endField takes in the value of a field line just ended, and returns why
// the framing it makes is refused, if it is.
func (c *Checker) endField() string {
	v := trimOWS(c.val[:c.valLen])
	if c.trailer {
		// A trailer cannot change the framing of the body it follows.
		if c.cur == fContentLength || c.cur == fTransferEncoding {
			return "Content-Length or Transfer-Encoding in a trailer"
		}
		return ""
	}
	switch c.cur {
	case fContentLength:
		if len(v) == 0 || len(v) > 18 {
			return "Content-Length is not a decimal number"
		}
		var n int64
		for _, d := range v {
			if d < '0' || d > '9' {
				return "Content-Length is not a decimal number"
			}
			n = n*10 + int64(d-'0')
		}
		if c.hasCL && n != c.cl {
			return "two different Content-Length values"
		}
		c.cl, c.hasCL = n, true
	case fTransferEncoding:
		if c.hasTE {
			return "more than one Transfer-Encoding field"
		}
		c.hasTE = true
		c.chunked = len(v) == len("chunked") && equalFold(v, "chunked")
	case fUpgrade:
		c.upgrade = len(v) > 0
	}
	return ""
}

// endHeader decides how the body of the request whose field lines just
// ended is framed, and returns why that is refused, if it is.
func (c *Checker) endHeader() string {
	if c.trailer {
		c.st = sLineStart
		return ""
	}
	switch {
	case c.hasTE && c.hasCL:
		return "both Content-Length and Transfer-Encoding"
	case c.hasTE && c.tail == http10:
		return "Transfer-Encoding in an HTTP/1.0 request"
	case c.hasTE && !c.chunked:
		return "Transfer-Encoding other than exactly chunked"
	case c.hasTE:
		c.st, c.n, c.size = sChunkSize, 0, 0
	case c.cl > 0:
		c.st, c.n = sBody, c.cl
	default:
		c.st = sLineStart
	}
	if c.upgrade {
		c.upgrades++
	}
	return ""
}

// isTchar reports whether b may be in a field name (RFC 9110 §5.6.2).
func isTchar(b byte) bool {
	return tchar[b]
}

var tchar = func() (t [256]bool) {
	for b := '0'; b <= '9'; b++ {
		t[b] = true
	}
	for b := 'a'; b <= 'z'; b++ {
		t[b], t[b-'a'+'A'] = true, true
	}
	for _, b := range "!#$%&'*+-.^_`|~" {
		t[b] = true
	}
	return t
}()

func unhex(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// equalFold reports whether v is s (lower case ASCII) in any case.
func equalFold(v []byte, s string) bool {
	for i := range v {
		if v[i]|0x20 != s[i] {
			return false
		}
	}
	return true
}
