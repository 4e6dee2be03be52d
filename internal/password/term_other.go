//go:build !linux

package password

import "os"

// isTTY reports false: off Linux the password is read as a line, as
// from a pipe, and the terminal echoes it.
func isTTY(*os.File) bool { return false }

func noEcho(*os.File) func() { return func() {} }
