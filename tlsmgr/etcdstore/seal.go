package etcdstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the size of an encryption key: AES-256.
const KeySize = 32

// sealMagic starts every sealed value, so one is told from a PEM key.
const sealMagic = "gatehouse-sealed-v1:"

// idSize is the size of the key ID in a sealed value: enough to tell the
// wrong key from a damaged value, too short to say anything of the key.
const idSize = 8

// ErrKey is returned (wrapped) when a sealed private key cannot be opened:
// no encryption key is configured, or another one sealed it.
var ErrKey = errors.New("private key sealed with another encryption key")

// sealer seals and opens private keys with AES-256-GCM.
type sealer struct {
	aead cipher.AEAD
	id   [idSize]byte
	file string
}

func newSealer(key []byte, file string) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("encryption key %s: got %d bytes, want %d (write one with gatehouse storage keygen)", cmpOr(file, "(given)"), len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &sealer{aead: aead, file: cmpOr(file, "(given)")}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("gatehouse storage key id"))
	copy(s.id[:], mac.Sum(nil))
	return s, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ReadKeyFile reads an encryption key written by [WriteKeyFile].
func ReadKeyFile(file string) ([]byte, error) {
	key, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading encryption key: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("encryption key %s: got %d bytes, want %d (write one with gatehouse storage keygen)", file, len(key), KeySize)
	}
	return key, nil
}

// WriteKeyFile writes a new random encryption key to file, mode 0600. It
// refuses to replace an existing file: the keys sealed with it would be
// lost.
func WriteKeyFile(file string) error {
	key := make([]byte, KeySize)
	rand.Read(key)
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing encryption key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(file)
		return fmt.Errorf("writing encryption key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return fmt.Errorf("writing encryption key: %w", err)
	}
	return nil
}

// isPrivateKey reports whether key names a private key in certmagic's
// layout: a certificate's key or an ACME account's.
func isPrivateKey(key string) bool { return strings.HasSuffix(key, ".key") }

func isSealed(v []byte) bool { return bytes.HasPrefix(v, []byte(sealMagic)) }

// seal encrypts plain, bound to the storage key name.
func (s *sealer) seal(name string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	out := make([]byte, 0, len(sealMagic)+idSize+len(nonce)+len(plain)+s.aead.Overhead())
	out = append(out, sealMagic...)
	out = append(out, s.id[:]...)
	out = append(out, nonce...)
	return s.aead.Seal(out, nonce, plain, []byte(name)), nil
}

// open decrypts a value sealed by seal for name.
func (s *sealer) open(name string, v []byte) ([]byte, error) {
	rest := v[len(sealMagic):]
	ns := s.aead.NonceSize()
	if len(rest) < idSize+ns {
		return nil, fmt.Errorf("opening %s: sealed value is truncated", name)
	}
	if !hmac.Equal(rest[:idSize], s.id[:]) {
		return nil, fmt.Errorf("opening %s: %w, not the one in %s", name, ErrKey, s.file)
	}
	plain, err := s.aead.Open(nil, rest[idSize:idSize+ns], rest[idSize+ns:], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("opening %s with the key in %s: sealed value is damaged or was moved from another key", name, s.file)
	}
	return plain, nil
}

// open returns the value of key as stored, opened if it is sealed.
func (s *Storage) open(key string, v []byte) ([]byte, error) {
	if !isSealed(v) {
		return v, nil
	}
	if s.seal == nil {
		return nil, fmt.Errorf("opening %s: %w: it is encrypted at rest and no storage.etcd.encryption_key_file is set", key, ErrKey)
	}
	return s.seal.open(key, v)
}

// checkOpenable reports an error if v is sealed and cannot be opened
// with this Storage's key.
func (s *Storage) checkOpenable(key string, v []byte) error {
	_, err := s.open(key, v)
	return err
}
