package password

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestReadLine reads the password from what is not a terminal: its first
// line, without the line ending.
func TestReadLine(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, err string
	}{
		{"line", "correct horse battery staple\n", "correct horse battery staple", ""},
		{"no newline", "s3cret", "s3cret", ""},
		{"CRLF, only the first line", "s3cret\r\nignored\n", "s3cret", ""},
		{"empty line", "\nsecond\n", "", "reading the password: it is empty"},
		{"nothing", "", "", "reading the password: it is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(strings.NewReader(tc.in), nil)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %q, %v; want the error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestHash(t *testing.T) {
	hash, err := Hash([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost(hash); err != nil || cost != bcrypt.MinCost {
		t.Errorf("cost of %q: got %d, %v; want %d", hash, cost, err, bcrypt.MinCost)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte("s3cret")) != nil || bcrypt.CompareHashAndPassword(hash, []byte("s3cretx")) == nil {
		t.Errorf("%q does not verify s3cret alone", hash)
	}
	if _, err := Hash([]byte(strings.Repeat("x", MaxLength)), bcrypt.MinCost); err != nil {
		t.Errorf("a password of %d bytes: %v", MaxLength, err)
	}
	if _, err := Hash([]byte(strings.Repeat("x", MaxLength+1)), bcrypt.MinCost); err == nil || !strings.Contains(err.Error(), "73 bytes; bcrypt uses at most 72") {
		t.Errorf("a password of %d bytes: got %v, want it refused", MaxLength+1, err)
	}
	if _, err := Hash([]byte("s3cret"), bcrypt.MaxCost+1); err == nil || !strings.HasPrefix(err.Error(), "hashing the password: ") {
		t.Errorf("cost %d: got %v, want bcrypt's refusal", bcrypt.MaxCost+1, err)
	}
}
