//go:build !unix

package proxy

import "errors"

// canPeek says peekByte works here. Without it, pooled connections are not
// checked when taken; a closed one still costs nothing but a retry, an
// unasked-for answer on one is the risk.
const canPeek = false

func peekByte(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
