package sqlite

import (
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
	})
}

// A control store made before subjects kept their registration time gets
// the column when opened; its subjects' time is unknown (zero).
func TestControlUpgradeSubjectsCreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.db")
	db, err := openDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE subjects (id TEXT PRIMARY KEY, country TEXT NOT NULL) WITHOUT ROWID;
		INSERT INTO subjects VALUES ('old', 'CN')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for range 2 { // and again, once it has the column
		c, err := OpenControl(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.FindSubject(t.Context(), "old")
		c.Close()
		if err != nil || s.Country != "CN" || !s.Created.IsZero() {
			t.Fatalf("FindSubject after the upgrade = %+v, %v; want country CN, no time", s, err)
		}
	}
}
