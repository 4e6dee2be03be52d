//go:build unix

package proxy

import "syscall"

// canPeek says peekByte works here.
const canPeek = true

// peekByte reads up to len(b) bytes from the socket fd without taking them
// and without waiting: syscall.EAGAIN when there is nothing, 0 bytes and no
// error at the end of the stream.
func peekByte(fd uintptr, b []byte) (int, error) {
	n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
