package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: what a user types goes into
// master, the command reads slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("naming the pseudo-terminal: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening the pseudo-terminal's slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestHashPasswordTerminal types a password on a real (pseudo-)terminal:
// it is asked twice and never echoed.
func TestHashPasswordTerminal(t *testing.T) {
	master, slave := openPTY(t)
	// Everything the terminal shows, echo included, arrives on master.
	shown := make(chan string, 64)
	go func() {
		r := bufio.NewReader(master)
		for {
			s, err := r.ReadString('\n')
			if s != "" {
				shown <- s
			}
			if err != nil {
				close(shown)
				return
			}
		}
	}()

	var prompts, out syncBuffer
	env := &environment{stdout: &out, stderr: &prompts, stdin: slave, getenv: func(string) string { return "" }}
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), []string{"hash-password", "-cost", "4"}, env) }()

	waitFor := func(prompt string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for !strings.Contains(prompts.String(), prompt) {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-deadline:
				t.Fatalf("no %q prompt within 5s; stderr %q", prompt, prompts.String())
			}
		}
	}
	waitFor("Password: ")
	master.WriteString("hunter2\n")
	waitFor("Again: ")
	master.WriteString("hunter2\n")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hash-password: %v; stderr %q", err, prompts.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hash-password did not finish")
	}
	if err := bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out.String())), []byte("hunter2")); err != nil {
		t.Errorf("stdout %q is not a hash of the typed password: %v", out.String(), err)
	}

	// A marker written after the command ends bounds what the terminal
	// showed; the password must not be in it.
	slave.WriteString("END\n")
	var screen strings.Builder
	for line := range shown {
		screen.WriteString(line)
		if strings.Contains(line, "END") {
			break
		}
	}
	if strings.Contains(screen.String(), "hunter2") {
		t.Errorf("the terminal echoed the password: %q", screen.String())
	}
}
