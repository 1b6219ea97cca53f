package domicile_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// The entry hash is pinned: every control store computes it, ledgers
// written before it moved here carry it, and docs/audit.md defines it.
func TestLedgerEntryHash(t *testing.T) {
	e := domicile.LedgerEntry{Seq: 7, At: time.UnixMilli(1740830400123), Kind: "move.committed", Ref: "m-1",
		Body: json.RawMessage(`{"from":"cn-beijing","to":"us-east"}`), Prev: "abc", Hash: "ignored"}
	const want = "51236e2a5115a0a9ee4968e720e2392b3b9d7dd895b8bcf355e37e681e638c25"
	if got := e.ChainHash(); got != want {
		t.Fatalf("entry hash = %s; want %s", got, want)
	}
}

// chain returns n entries correctly chained.
func chain(n int) []domicile.LedgerEntry {
	var es []domicile.LedgerEntry
	prev := ""
	for i := 1; i <= n; i++ {
		e := domicile.LedgerEntry{Seq: int64(i), At: time.UnixMilli(int64(1000 * i)), Kind: "k", Ref: "r",
			Body: json.RawMessage(`{"i":` + strings.Repeat("1", i) + `}`), Prev: prev}
		e.Hash = e.ChainHash()
		prev = e.Hash
		es = append(es, e)
	}
	return es
}

func TestLedgerChain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func([]domicile.LedgerEntry) []domicile.LedgerEntry
		want   []string // the problems, by prefix
	}{
		{"intact", func(es []domicile.LedgerEntry) []domicile.LedgerEntry { return es }, nil},
		{"body altered", func(es []domicile.LedgerEntry) []domicile.LedgerEntry {
			es[2].Body = json.RawMessage(`{"i":2}`)
			return es
		}, []string{"ledger entry 3: hash does not match its content"}},
		{"body not JSON, rehashed", func(es []domicile.LedgerEntry) []domicile.LedgerEntry {
			es[4].Body = json.RawMessage(`{"i":`)
			es[4].Hash = es[4].ChainHash()
			return es
		}, []string{"ledger entry 5: its body is not JSON"}},
		{"middle entry deleted", func(es []domicile.LedgerEntry) []domicile.LedgerEntry {
			return append(es[:2], es[3:]...)
		}, []string{"ledger entry 4: entry 3 is missing"}},
		{"two entries deleted", func(es []domicile.LedgerEntry) []domicile.LedgerEntry {
			return append(es[:1], es[3:]...)
		}, []string{"ledger entry 4: entries 2 to 3 are missing"}},
		{"first entry deleted", func(es []domicile.LedgerEntry) []domicile.LedgerEntry {
			return es[1:]
		}, []string{"ledger entry 2: entry 1 is missing"}},
		{"entries swapped", func(es []domicile.LedgerEntry) []domicile.LedgerEntry {
			es[1], es[3] = es[3], es[1]
			es[1].Seq, es[3].Seq = 2, 4
			return es
		}, []string{"ledger entry 2: hash does not match", "ledger entry 3: does not chain", "ledger entry 4: hash does not match", "ledger entry 5: does not chain"}},
		{"entry inserted and hashed", func(es []domicile.LedgerEntry) []domicile.LedgerEntry {
			fake := domicile.LedgerEntry{Seq: 3, At: es[1].At, Kind: "k", Body: json.RawMessage(`{}`), Prev: es[1].Hash}
			fake.Hash = fake.ChainHash()
			out := append([]domicile.LedgerEntry{}, es[:2]...)
			out = append(out, fake)
			for _, e := range es[2:] {
				e.Seq++
				out = append(out, e)
			}
			return out
		}, []string{"ledger entry 4: hash does not match", "ledger entry 5: hash does not match", "ledger entry 6: hash does not match"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c domicile.LedgerChain
			var got []string
			for _, e := range tc.tamper(chain(5)) {
				if p := c.Add(e); p != "" {
					got = append(got, p)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q; want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Fatalf("problem %d = %q; want %q…", i, got[i], w)
				}
			}
		})
	}
}

// A chain resumed from a head checks the entries after it only.
func TestResumeLedgerChain(t *testing.T) {
	es := chain(6)
	c := domicile.ResumeLedgerChain(domicile.LedgerHead{Seq: 3, Hash: es[2].Hash})
	for _, e := range es[3:] {
		if p := c.Add(e); p != "" {
			t.Fatal(p)
		}
	}
	if h := c.Head(); h.Seq != 6 || h.Hash != es[5].Hash {
		t.Fatalf("head %+v", h)
	}
	c = domicile.ResumeLedgerChain(domicile.LedgerHead{Seq: 3, Hash: "other"})
	if p := c.Add(es[3]); !strings.HasPrefix(p, "ledger entry 4: does not chain") {
		t.Fatalf("entry after a head it does not chain to: %q", p)
	}
}
