package ledger_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/sqlite"
)

// fixture is a SQLite control store, a key and a head file.
type fixture struct {
	dir    string
	c      *sqlite.Control
	key    ed25519.PrivateKey
	pub    ed25519.PublicKey
	head   string
	sealer *ledger.Sealer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.c = f.open(t, filepath.Join(f.dir, "control.db"))
	f.pub, f.key, _ = ed25519.GenerateKey(rand.Reader)
	f.head = filepath.Join(f.dir, "ledger-head.json")
	f.sealer = &ledger.Sealer{Control: f.c, Key: f.key, Path: f.head}
	return f
}

func (f *fixture) open(t *testing.T, path string) *sqlite.Control {
	t.Helper()
	c, err := sqlite.OpenControl(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// append appends n entries.
func (f *fixture) append(t *testing.T, c *sqlite.Control, n int) {
	t.Helper()
	for i := range n {
		if err := c.AppendLedger(context.Background(), "test", fmt.Sprint(i), map[string]any{"i": i, "html": "<&>"}); err != nil {
			t.Fatal(err)
		}
	}
}

// seal seals and fails unless the head then names entry seq.
func (f *fixture) seal(t *testing.T, seq int64, wrote bool) *ledger.Head {
	t.Helper()
	h, w, err := f.sealer.Seal(context.Background())
	if err != nil || h.Seq != seq || w != wrote {
		t.Fatalf("Seal = %+v, wrote %v, %v; want entry %d, wrote %v", h, w, err, seq, wrote)
	}
	return h
}

// exec runs SQL on the control store's file, on a connection of its own.
func (f *fixture) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(f.dir, "control.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestSeal(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// An empty ledger has a head too: entry 0.
	f.seal(t, 0, true)
	f.seal(t, 0, false)
	f.append(t, f.c, 3)
	h := f.seal(t, 3, true)
	if head, _ := f.c.LedgerHead(ctx); h.Ledger() != head || h.KeyID != ledger.KeyID(f.pub) || h.Type != ledger.HeadType {
		t.Fatalf("head %+v; want the ledger's %+v signed by %s", h, head, ledger.KeyID(f.pub))
	}
	read, err := ledger.ReadHead(f.head, f.pub)
	if err != nil || read.Seq != 3 || read.Hash != h.Hash || !read.At.Equal(h.At) {
		t.Fatalf("ReadHead = %+v, %v; want %+v", read, err, h)
	}
	f.seal(t, 3, false)
	f.append(t, f.c, 2)
	f.seal(t, 5, true)

	// The head file altered by hand no longer reads, and Seal will not
	// build on it.
	data, _ := os.ReadFile(f.head)
	os.WriteFile(f.head, []byte(strings.Replace(string(data), `"seq": 5`, `"seq": 4`, 1)), 0o644)
	if _, err := ledger.ReadHead(f.head, f.pub); !errors.Is(err, ledger.ErrSignature) {
		t.Fatalf("ReadHead of an altered head = %v; want %v", err, ledger.ErrSignature)
	}
	if _, _, err := f.sealer.Seal(ctx); !errors.Is(err, ledger.ErrSignature) {
		t.Fatalf("Seal over an altered head = %v; want %v", err, ledger.ErrSignature)
	}
	os.WriteFile(f.head, data, 0o644)

	// Another key does not replace the head, whose key it names.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	s := &ledger.Sealer{Control: f.c, Key: other, Path: f.head}
	if _, _, err := s.Seal(ctx); !errors.Is(err, ledger.ErrOtherKey) || !strings.Contains(err.Error(), "keep the key that signed it") {
		t.Fatalf("Seal with another key = %v; want %v", err, ledger.ErrOtherKey)
	}
}

// A ledger whose chain does not hold gets no first head.
func TestSealBroken(t *testing.T) {
	f := newFixture(t)
	f.append(t, f.c, 4)
	f.exec(t, `UPDATE ledger SET body = '{}' WHERE seq = 2`)
	if _, _, err := f.sealer.Seal(context.Background()); !errors.Is(err, ledger.ErrBroken) || !strings.Contains(err.Error(), "ledger entry 2: hash does not match") {
		t.Fatalf("Seal of a broken ledger = %v; want %v naming entry 2", err, ledger.ErrBroken)
	}
	if _, err := os.Stat(f.head); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a head was written: %v", err)
	}
}

// A process whose ledger is behind the head, or does not continue it, never
// writes the head: the head stays the evidence.
func TestSealNeverGoesBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		old    bool   // seal from a copy of the store made at entry 3
		more   int    // entries appended to it, chained to what is there
		tamper string // SQL run on the store then
		want   string
	}{
		{"older view", true, 0, "", "the ledger ends at entry 3, before entry 5"},
		{"older view, appended to", true, 3, "", "ledger entry 5 is not the one the signed head"},
		{"newest entries cut", false, 0, `DELETE FROM ledger WHERE seq > 4`, "the ledger ends at entry 4, before entry 5"},
		{"head entry rewritten", false, 3, `UPDATE ledger SET body = '{}' WHERE seq = 5`, "ledger entry 5 is not the one the signed head"},
		{"head entry missing", false, 3, `DELETE FROM ledger WHERE seq = 5`, "ledger entry 5, which the signed head"},
		{"entry after the head altered", false, 3, `UPDATE ledger SET body = '{}' WHERE seq = 7`, "ledger entry 7: hash does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			f.append(t, f.c, 3)
			// A copy of the control store as it is now: a process with an
			// older view once the original moves on.
			f.exec(t, `VACUUM INTO ?`, filepath.Join(f.dir, "old.db"))
			f.append(t, f.c, 2)
			f.seal(t, 5, true)
			before, _ := os.ReadFile(f.head)
			c := f.c
			if tc.old {
				c = f.open(t, filepath.Join(f.dir, "old.db"))
			}
			f.append(t, c, tc.more)
			if tc.tamper != "" {
				f.exec(t, tc.tamper)
			}
			s := &ledger.Sealer{Control: c, Key: f.key, Path: f.head}
			h, wrote, err := s.Seal(ctx)
			if !errors.Is(err, ledger.ErrDiverged) || !strings.Contains(err.Error(), tc.want) || wrote || h == nil || h.Seq != 5 {
				t.Fatalf("Seal = %+v, %v, %v; want the head at 5 kept and %q", h, wrote, err, tc.want)
			}
			if after, _ := os.ReadFile(f.head); string(after) != string(before) {
				t.Fatalf("the head file changed:\n%s", after)
			}
		})
	}
}

// Processes that append and seal at once never move the head back, and a
// reader never finds it half written.
func TestSealConcurrently(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const sealers, rounds = 4, 10
	done := make(chan struct{})
	var readErr error
	var reader sync.WaitGroup
	reader.Go(func() {
		last := int64(-1)
		for {
			select {
			case <-done:
				return
			default:
			}
			h, err := ledger.ReadHead(f.head, f.pub)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil || h.Seq < last {
				readErr = fmt.Errorf("read head %+v after %d: %v", h, last, err)
				return
			}
			last = h.Seq
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, sealers)
	for i := range sealers {
		wg.Go(func() {
			// A store of its own on the same file, as another process has.
			c, err := sqlite.OpenControl(filepath.Join(f.dir, "control.db"), nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			s := &ledger.Sealer{Control: c, Key: f.key, Path: f.head}
			for r := range rounds {
				if err := c.AppendLedger(ctx, "test", fmt.Sprint(i), map[string]int{"round": r}); err != nil {
					errs[i] = err
					return
				}
				if _, _, err := s.Seal(ctx); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	reader.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sealer %d: %v", i, err)
		}
	}
	if readErr != nil {
		t.Fatal(readErr)
	}
	h, err := ledger.ReadHead(f.head, f.pub)
	if err != nil || h.Seq != sealers*rounds {
		t.Fatalf("head after every seal = %+v, %v; want entry %d", h, err, sealers*rounds)
	}
}
