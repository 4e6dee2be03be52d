package password

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
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

// TestReadTerminal types a password on a real (pseudo-)terminal: it is
// asked twice and never echoed; two entries that differ are refused.
func TestReadTerminal(t *testing.T) {
	for _, tc := range []struct {
		name, first, again, err string
	}{
		{"same twice", "hunter2", "hunter2", ""},
		{"entries differ", "hunter2", "hunter3", "reading the password: the two entries differ"},
	} {
		t.Run(tc.name, func(t *testing.T) { readTerminal(t, tc.first, tc.again, tc.err) })
	}
}

func readTerminal(t *testing.T, first, again, wantErr string) {
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

	var prompts gatewaytest.SyncBuffer
	type result struct {
		pass []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		pass, err := Read(slave, &prompts)
		done <- result{pass, err}
	}()

	waitFor := func(prompt string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for !strings.Contains(prompts.String(), prompt) {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-deadline:
				t.Fatalf("no %q prompt within 5s; prompts %q", prompt, prompts.String())
			}
		}
	}
	waitFor("Password: ")
	master.WriteString(first + "\n")
	waitFor("Again: ")
	master.WriteString(again + "\n")
	select {
	case r := <-done:
		switch {
		case wantErr == "" && (r.err != nil || string(r.pass) != first):
			t.Fatalf("Read: got %q, %v; want %q", r.pass, r.err, first)
		case wantErr != "" && (r.err == nil || r.err.Error() != wantErr):
			t.Fatalf("Read: got %q, %v; want the error %q", r.pass, r.err, wantErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not finish")
	}

	// A marker written after Read returned bounds what the terminal
	// showed; the password must not be in it.
	slave.WriteString("END\n")
	var screen strings.Builder
	for line := range shown {
		screen.WriteString(line)
		if strings.Contains(line, "END") {
			break
		}
	}
	if strings.Contains(screen.String(), first) || strings.Contains(screen.String(), again) {
		t.Errorf("the terminal echoed the password: %q", screen.String())
	}
}
