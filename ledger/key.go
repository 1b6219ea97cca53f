package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// PublicKeyPath returns where the public key of the private key at path is
// kept: beside it, with ".pub" added.
func PublicKeyPath(path string) string { return path + ".pub" }

// KeyID names a public key: "ed25519:" and the first 16 hex digits of the
// SHA-256 of its 32 bytes. Signed documents carry it, so that a verifier
// given another key says so rather than just "does not verify".
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// LoadOrCreateKey loads the private key at path, first creating a new key
// pair if there is none: the private key in PEM (PKCS #8) with mode 0600,
// its public key in PEM (PKIX) at PublicKeyPath(path). created reports
// whether it made the pair. Two processes creating at once end with one
// pair. A missing public key file is written again from the private key.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = LoadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if created, err = createKey(path); err != nil {
			return nil, false, err
		}
		key, err = LoadKey(path)
	}
	if err != nil {
		return nil, false, err
	}
	return key, created, writePublicKey(path, key)
}

// createKey writes a new private key to path unless a file is there; it
// reports whether it wrote one. The key is written in full to a temporary
// file first and then linked into place, so no reader ever sees part of it.
func createKey(path string) (bool, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := writeTemp(path, data, 0o600)
	if err != nil {
		return false, fmt.Errorf("create signing key %s: %w", path, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return false, nil // another process made one first
	} else if err != nil {
		return false, fmt.Errorf("create signing key %s: %w", path, err)
	}
	return true, syncDir(filepath.Dir(path))
}

// writePublicKey writes key's public key beside it, unless the file there
// holds it already; a file holding another key is an error.
func writePublicKey(path string, key ed25519.PrivateKey) error {
	pub := key.Public().(ed25519.PublicKey)
	pubPath := PublicKeyPath(path)
	have, err := LoadPublicKey(pubPath)
	switch {
	case err == nil && have.Equal(pub):
		return nil
	case err == nil:
		return fmt.Errorf("%s holds key %s, not the public key of %s (%s): remove it and it is written again", pubPath, KeyID(have), path, KeyID(pub))
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return writeFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

// LoadKey reads an Ed25519 private key in PEM (PKCS #8). A key file that
// others than its owner may read is refused.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s can be read by others (mode %04o): chmod 600 %[1]s", path, st.Mode().Perm())
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T, not an Ed25519 key", path, k)
	}
	return key, nil
}

// LoadPublicKey reads an Ed25519 public key in PEM (PKIX), as
// LoadOrCreateKey writes it and `openssl pkey -pubout` prints it.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key %s: not a PEM public key", path)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key %s: a %T, not an Ed25519 key", path, k)
	}
	return pub, nil
}
