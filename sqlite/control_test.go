package sqlite

import (
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/controltest"
)

func TestControl(t *testing.T) {
	var paths sync.Map // *Control → its file
	controltest.Run(t, controltest.Harness{
		Open: func(t *testing.T, now func() time.Time) domicile.Control {
			path := filepath.Join(t.TempDir(), "control.db")
			c, err := OpenControl(path, now)
			if err != nil {
				t.Fatal(err)
			}
			paths.Store(c, path)
			return c
		},
		Tamper: func(t *testing.T, c domicile.Control, seq int64) {
			path, ok := paths.Load(c)
			if !ok {
				t.Fatal("tamper: not a store of this harness")
			}
			// A pool of its own, as anyone with the file could open.
			db, err := openDB(path.(string))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			res, err := db.Exec(`UPDATE ledger SET body = '{"tampered":true}' WHERE seq = ?`, seq)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("tamper: no ledger entry %d", seq)
			}
		},
		Entries: func(t *testing.T, c domicile.Control) []controltest.Entry {
			rows, err := c.(*Control).DB().Query(`SELECT kind, ref, body FROM ledger ORDER BY seq`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var es []controltest.Entry
			for rows.Next() {
				var e controltest.Entry
				if err := rows.Scan(&e.Kind, &e.Ref, &e.Body); err != nil {
					t.Fatal(err)
				}
				es = append(es, e)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return es
		},
	})
}

// The ledger's hash is pinned: the PostgreSQL control store computes the
// same (its TestControlEntryHash holds the same value), so that either
// verifies a chain the other wrote.
func TestControlEntryHash(t *testing.T) {
	e := LedgerEntry{Seq: 7, At: time.UnixMilli(1740830400123), Kind: "move.committed", Ref: "m-1",
		Body: json.RawMessage(`{"from":"cn-beijing","to":"us-east"}`), Prev: "abc"}
	const want = "51236e2a5115a0a9ee4968e720e2392b3b9d7dd895b8bcf355e37e681e638c25"
	if got := entryHash(e); got != want {
		t.Fatalf("entry hash = %s; want %s", got, want)
	}
}
