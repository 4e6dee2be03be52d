package main

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// hashPassword runs hash-password in-process with stdin and returns its
// exit code and output.
func hashPassword(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runStdin(t, strings.NewReader(stdin), nil, append([]string{"hash-password"}, args...)...)
}

func TestHashPassword(t *testing.T) {
	for _, tt := range []struct {
		name, stdin, password string
	}{
		{"line", "correct horse battery staple\n", "correct horse battery staple"},
		{"no newline", "s3cret", "s3cret"},
		{"CRLF, only the first line", "s3cret\r\nignored\n", "s3cret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := hashPassword(t, tt.stdin, "-cost", "5")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			hash := strings.TrimSuffix(out, "\n")
			if strings.Contains(hash, "\n") || !strings.HasPrefix(hash, "$2a$05$") {
				t.Fatalf("stdout %q is not one bcrypt hash of cost 5", out)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(tt.password)); err != nil {
				t.Errorf("hash does not verify %q: %v", tt.password, err)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(tt.password+"x")); err == nil {
				t.Error("hash verifies another password")
			}
		})
	}

	// The default cost is bcrypt's, and the hash works in basic_auth.
	code, out, _ := hashPassword(t, "pw\n")
	if cost, err := bcrypt.Cost([]byte(strings.TrimSpace(out))); code != 0 || err != nil || cost != bcrypt.DefaultCost {
		t.Errorf("default: exit %d, cost %d (%v), want 0 and %d", code, cost, err, bcrypt.DefaultCost)
	}

	for _, tt := range []struct {
		name, stdin string
		args        []string
		code        int
		msg         string
	}{
		{"empty", "\n", nil, 1, "empty"},
		{"nothing", "", nil, 1, "empty"},
		{"too long", strings.Repeat("x", 73) + "\n", nil, 1, "at most 72"},
		{"cost too low", "pw\n", []string{"-cost", "3"}, 2, "-cost 3 is not from 4 to 31"},
		{"stray argument", "pw\n", []string{"pw"}, 2, "unexpected argument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := hashPassword(t, tt.stdin, tt.args...)
			if code != tt.code || out != "" || !strings.Contains(errOut, tt.msg) {
				t.Errorf("got exit %d, stdout %q, stderr %q; want %d, nothing, and %q", code, out, errOut, tt.code, tt.msg)
			}
		})
	}
}
