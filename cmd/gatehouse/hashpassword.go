package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// cmdHashPassword prints the bcrypt hash of a password read from stdin,
// for basic_auth.users. On a terminal it asks twice and does not echo;
// otherwise it hashes the first line (without its line ending), so
// `echo -n secret | gatehouse hash-password` and here-strings work.
func cmdHashPassword(_ context.Context, args []string, env *environment) error {
	fs := newFlags("hash-password", "hash-password [-cost N] < password", env)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt `cost` (%d to %d); each step doubles the work", bcrypt.MinCost, bcrypt.MaxCost))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		fmt.Fprintf(env.stderr, "-cost %d is not from %d to %d\n", *cost, bcrypt.MinCost, bcrypt.MaxCost)
		return exitError(2)
	}
	in := env.stdin
	if in == nil {
		in = os.Stdin
	}
	var pass []byte
	var err error
	if f, ok := in.(*os.File); ok && isTTY(f) {
		pass, err = askTwice(f, env.stderr)
	} else {
		pass, err = readLine(in)
	}
	if err != nil {
		return err
	}
	switch {
	case len(pass) == 0:
		return errors.New("reading the password: it is empty")
	case len(pass) > 72:
		return fmt.Errorf("hashing the password: %d bytes; bcrypt uses at most 72", len(pass))
	}
	hash, err := bcrypt.GenerateFromPassword(pass, *cost)
	if err != nil {
		return fmt.Errorf("hashing the password: %w", err)
	}
	fmt.Fprintf(env.stdout, "%s\n", hash)
	return nil
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
// echo turned off where the platform allows it (see hashpassword_*.go).
// Echo goes off before the label shows, so nothing typed after it echoes.
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
