package framing

// Vector is one request-smuggling framing.
type Vector struct{ Name, Request string }

// Vectors are request-smuggling framings (RFC 9112) that net/http (Go
// 1.26) hands to its handler, each refused by the Checker: the tests of
// this package and the gateway's, which send each through real Listeners,
// share them.
var Vectors = []Vector{
	{"bare LF after chunk size", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"},
	{"bare LF after chunk data", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n"},
	{"bare LF in chunk extension", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n"},
	{"bare LF in trailer", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\n\r\n"},
	{"bare LF ending trailer", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n"},
	{"Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{"two differing Content-Length", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello"},
	{"Transfer-Encoding chunked then gzip", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{"Transfer-Encoding twice", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{"chunk size with plus sign", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"},
	{"chunk size with minus sign", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"},
	{"chunk size with trailing space", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"},
	{"chunk size with trailing tab", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\t\r\nhello\r\n0\r\n\r\n"},
	{"chunk size with leading space", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n"},
	{"chunk size of 17 hex digits", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n"},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n c\r\n\r\n"},
	{"obs-fold with tab", "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n\tc\r\n\r\n"},
	{"space in field name", "GET / HTTP/1.1\r\nHost: localhost\r\nX A: b\r\n\r\n"},
	{"space before colon", "GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
	{"control byte in field name", "GET / HTTP/1.1\r\nHost: localhost\r\nX\x01A: b\r\n\r\n"},
	{"request line ends with bare LF", "GET / HTTP/1.1\nHost: localhost\r\n\r\n"},
	{"field line ends with bare LF", "GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n"},
	{"header section ends with bare LF", "GET / HTTP/1.1\r\nHost: localhost\r\n\n"},
	{"second request with bare LF", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\nHost: localhost\r\n\r\n"},
}
