//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyReopen delivers SIGUSR1 to c. Always caught: its default action
// would kill the process.
func notifyReopen(c chan<- os.Signal) { signal.Notify(c, syscall.SIGUSR1) }
