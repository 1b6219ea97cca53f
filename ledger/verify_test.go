package ledger_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile/ledger"
)

func TestVerify(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name   string
		tamper func(*testing.T, *fixture)
		want   []string // the problems, by substring; none: ok
	}{
		{"intact", func(*testing.T, *fixture) {}, nil},
		{"body altered", func(t *testing.T, f *fixture) {
			f.exec(t, `UPDATE ledger SET body = replace(body, '"i":2', '"i":9') WHERE seq = 3`)
		}, []string{"ledger entry 3: hash does not match its content"}},
		{"middle entry deleted", func(t *testing.T, f *fixture) {
			f.exec(t, `DELETE FROM ledger WHERE seq = 4`)
		}, []string{"ledger entry 5: entry 4 is missing"}},
		{"newest entries cut", func(t *testing.T, f *fixture) {
			f.exec(t, `DELETE FROM ledger WHERE seq > 4`)
		}, []string{"the ledger ends at entry 4, but the signed head", "names entry 6: entries 5 to 6 were removed"}},
		{"rewritten and rehashed", func(t *testing.T, f *fixture) {
			// Entries 5 and 6 replaced by new ones chained to entry 4: the
			// chain holds; only the head knows.
			f.exec(t, `DELETE FROM ledger WHERE seq > 4`)
			f.append(t, f.c, 2)
		}, []string{"ledger entry 6: its hash", "the ledger was rewritten up to it"}},
		{"no head", func(t *testing.T, f *fixture) {
			os.Remove(f.head)
		}, []string{"no signed ledger head at"}},
		{"head altered", func(t *testing.T, f *fixture) {
			data, _ := os.ReadFile(f.head)
			os.WriteFile(f.head, bytes.Replace(data, []byte(`"seq": 6`), []byte(`"seq": 4`), 1), 0o644)
		}, []string{"the document was altered after it was signed"}},
		{"head signed by another key", func(t *testing.T, f *fixture) {
			os.Remove(f.head)
			s := &ledger.Sealer{Control: f.c, Key: otherKey, Path: f.head}
			if _, _, err := s.Seal(context.Background()); err != nil {
				t.Fatal(err)
			}
		}, []string{"signed by another key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.append(t, f.c, 6)
			f.seal(t, 6, true)
			tc.tamper(t, f)
			rep, err := ledger.Verify(context.Background(), f.c, f.head, f.pub)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK != (len(tc.want) == 0) || len(tc.want) > 0 && len(rep.Problems) != 1 {
				t.Fatalf("Verify = ok %v, problems %q; want %q", rep.OK, rep.Problems, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(rep.Problems[0], w) {
					t.Fatalf("problem %q lacks %q", rep.Problems[0], w)
				}
			}
		})
	}
}

// Entries appended after the head was sealed are counted, not refused: the
// chain vouches for them until the next seal.
func TestVerifyUnsealed(t *testing.T) {
	f := newFixture(t)
	f.append(t, f.c, 3)
	f.seal(t, 3, true)
	f.append(t, f.c, 2)
	rep, err := ledger.Verify(context.Background(), f.c, f.head, f.pub)
	if err != nil || !rep.OK || rep.Entries != 5 || rep.Unsealed != 2 || rep.Head.Seq != 3 {
		t.Fatalf("Verify = %+v, %v; want ok, 5 entries, 2 unsealed", rep, err)
	}
}

// The export holds what a third party needs to check the chain with the
// definition docs/audit.md gives, and nothing of domicile's code: this
// test reads it as they would.
func TestExport(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.append(t, f.c, 4)
	if err := f.c.AppendLedger(ctx, "subject.created", `u"1<`, map[string]string{"country": "BR", "note": "é\u2028"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, err := ledger.Export(ctx, f.c, &out)
	if err != nil || n != 5 {
		t.Fatalf("Export = %d, %v; want 5 entries", n, err)
	}
	head, _ := f.c.LedgerHead(ctx)
	prev, seq := "", int64(0)
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		var e struct {
			Seq             int64
			At              string
			Kind, Ref, Prev string
			Hash            string
			Body            map[string]any
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		at, err := time.Parse(time.RFC3339, e.At)
		if err != nil {
			t.Fatal(err)
		}
		body := line[strings.Index(line, `,"body":`)+len(`,"body":`) : strings.LastIndex(line, `,"prev":"`)]
		h := sha256.New()
		fmt.Fprintf(h, "%d\x00%d\x00%s\x00%s\x00%s\x00%s", e.Seq, at.UnixMilli(), e.Kind, e.Ref, e.Prev, body)
		if got := hex.EncodeToString(h.Sum(nil)); got != e.Hash || e.Prev != prev || e.Seq != seq+1 {
			t.Fatalf("line %q: hash %s, prev %q after %q, seq after %d", line, got, e.Prev, prev, seq)
		}
		prev, seq = e.Hash, e.Seq
	}
	if seq != head.Seq || prev != head.Hash {
		t.Fatalf("export ends at %d %s; the ledger at %+v", seq, prev, head)
	}
}
