//go:build !unix

package main

import "os"

// notifyReopen does nothing where there is no SIGUSR1: the access log file
// is reopened by a restart there.
func notifyReopen(chan<- os.Signal) {}
