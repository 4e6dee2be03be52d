package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-proxy/gatehouse/internal/password"
)

// cmdHashPassword prints the bcrypt hash of a password read from stdin,
// for basic_auth.users. On a terminal it asks twice and does not echo;
// otherwise it hashes the first line (without its line ending), so
// `echo -n secret | gatehouse hash-password` and here-strings work.
func cmdHashPassword(_ context.Context, c *cmdline) error {
	cost := c.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt `cost` (%d to %d); each step doubles the work", bcrypt.MinCost, bcrypt.MaxCost))
	if _, err := c.parse(0); err != nil {
		return err
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		fmt.Fprintf(c.stderr, "-cost %d is not from %d to %d\n", *cost, bcrypt.MinCost, bcrypt.MaxCost)
		return exitError(2)
	}
	in := c.stdin
	if in == nil {
		in = os.Stdin
	}
	pass, err := password.Read(in, c.stderr)
	if err != nil {
		return err
	}
	hash, err := password.Hash(pass, *cost)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s\n", hash)
	return nil
}
