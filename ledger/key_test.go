package ledger_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/domicile/domicile/ledger"
)

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.key")
	key, created, err := ledger.LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateKey of a new path = %v, %v; want a new key", created, err)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, ledger.PublicKeyPath(path): 0o644} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v, %v; want mode %04o", p, st.Mode(), err, mode)
		}
	}
	again, created, err := ledger.LoadOrCreateKey(path)
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("LoadOrCreateKey again = %v, %v; want the same key", created, err)
	}
	pub, err := ledger.LoadPublicKey(ledger.PublicKeyPath(path))
	if err != nil || !pub.Equal(key.Public()) {
		t.Fatalf("LoadPublicKey = %v; want the key's public key", err)
	}
	if id := ledger.KeyID(pub); !strings.HasPrefix(id, "ed25519:") || len(id) != len("ed25519:")+16 {
		t.Fatalf("KeyID = %q", id)
	}

	// A lost public key is written again; another key in its place is an
	// error.
	os.Remove(ledger.PublicKeyPath(path))
	if _, _, err := ledger.LoadOrCreateKey(path); err != nil {
		t.Fatal(err)
	}
	if pub, err := ledger.LoadPublicKey(ledger.PublicKeyPath(path)); err != nil || !pub.Equal(key.Public()) {
		t.Fatalf("public key written again: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if _, _, err := ledger.LoadOrCreateKey(other); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(ledger.PublicKeyPath(other))
	os.WriteFile(ledger.PublicKeyPath(path), data, 0o644)
	if _, _, err := ledger.LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "not the public key of") {
		t.Fatalf("LoadOrCreateKey with another public key beside it = %v", err)
	}

	// A private key others may read is refused.
	os.Chmod(path, 0o644)
	if _, err := ledger.LoadKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadKey of a key readable by others = %v", err)
	}
}

// Processes that start at once on a new directory end with one key.
func TestLoadOrCreateKeyConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.key")
	keys := make([]ed25519.PrivateKey, 8)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], _, errs[i] = ledger.LoadOrCreateKey(path) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || !keys[i].Equal(keys[0]) {
			t.Fatalf("opener %d: %v, same key %v", i, errs[i], keys[i].Equal(keys[0]))
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 {
		t.Fatalf("%d files left, want the key and its public key", len(entries))
	}
}
