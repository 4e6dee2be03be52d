// Package password reads a password as `gatehouse hash-password` takes it
// and hashes it for basic_auth.users: from a terminal it asks twice,
// without echo; from anything else (a pipe, a file, a here-string) it
// takes the first line.
package password

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// MaxLength is the longest password bcrypt hashes: it ignores what
// follows, so a longer one is refused rather than cut short.
const MaxLength = 72

// Read reads a password from in. From a terminal (one termios answers
// for, on Linux) it shows the prompts on prompt, reads twice with echo
// off, and fails when the entries differ; otherwise it returns the first
// line of in without its line ending. An empty password is an error.
func Read(in io.Reader, prompt io.Writer) ([]byte, error) {
	var pass []byte
	var err error
	if f, ok := in.(*os.File); ok && isTTY(f) {
		pass, err = askTwice(f, prompt)
	} else {
		pass, err = readLine(in)
	}
	if err == nil && len(pass) == 0 {
		err = errors.New("reading the password: it is empty")
	}
	return pass, err
}

// Hash returns the bcrypt hash of pass at cost ([bcrypt.MinCost] to
// [bcrypt.MaxCost]), as basic_auth.users takes it. A password longer
// than [MaxLength] bytes is refused.
func Hash(pass []byte, cost int) ([]byte, error) {
	if len(pass) > MaxLength {
		return nil, fmt.Errorf("hashing the password: %d bytes; bcrypt uses at most %d", len(pass), MaxLength)
	}
	hash, err := bcrypt.GenerateFromPassword(pass, cost)
	if err != nil {
		return nil, fmt.Errorf("hashing the password: %w", err)
	}
	return hash, nil
}

// readLine returns the first line of r without its line ending.
func readLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// askTwice reads the password from the terminal f twice, without echo.
func askTwice(f *os.File, prompt io.Writer) ([]byte, error) {
	first, err := readSilently(f, prompt, "Password: ")
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	second, err := readSilently(f, prompt, "Again: ")
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	if !bytes.Equal(first, second) {
		return nil, errors.New("reading the password: the two entries differ")
	}
	return first, nil
}

// readSilently shows label, then reads a line from the terminal f with
// echo turned off where the platform allows it (see term_*.go). Echo goes
// off before the label shows, so nothing typed after it echoes.
func readSilently(f *os.File, prompt io.Writer, label string) ([]byte, error) {
	restore := noEcho(f)
	defer restore()
	fmt.Fprint(prompt, label)
	defer fmt.Fprintln(prompt)
	var line []byte
	var b [1]byte
	for {
		n, err := f.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	return []byte(strings.TrimRight(string(line), "\r")), nil
}
