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
	pass, err := password.Read(in, env.stderr)
	if err != nil {
		return err
	}
	hash, err := password.Hash(pass, *cost)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s\n", hash)
	return nil
}
