package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/domicile/domicile"
)

// TestCascadeMarks: a customer's rentals go with it by ON DELETE CASCADE
// while the customer's deletion is marked, and the marks are gone after
// it. Rentals orphaned earlier, by a connection with foreign_keys off (the
// SQLite default), find no mark: once their subject has moved, writes to
// them are refused as before.
func TestCascadeMarks(t *testing.T) {
	s, keysOn, path := plainStore(t, []string{
		`CREATE TABLE customer (customer_id INTEGER NOT NULL PRIMARY KEY, user_id TEXT NOT NULL)`,
		`CREATE TABLE rental (rental_id INTEGER NOT NULL PRIMARY KEY,
			customer_id INTEGER NOT NULL REFERENCES customer (customer_id) ON DELETE CASCADE, note TEXT)`,
	}, [2]string{"customer", "subject:user_id"}, [2]string{"rental", "via:customer_id>customer.customer_id"})
	keysOff := openApp(t, path, false)
	own := func(subject string, st domicile.OwnerState) { setOwner(t, s, subject, st) }
	exec := func(db *sql.DB, q string) error {
		_, err := db.Exec(q)
		return err
	}
	count := func(q string) int {
		t.Helper()
		var n int
		if err := keysOn.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	own("u1", domicile.Owned)
	own("u2", domicile.Owned)
	for _, q := range []string{
		`INSERT INTO customer VALUES (1, 'u1'), (2, 'u2')`,
		`INSERT INTO rental VALUES (10, 1, 'a'), (11, 1, 'b'), (20, 2, 'c')`,
	} {
		if err := exec(keysOn, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The cascade of an owned subject's customer.
	if err := exec(keysOn, `DELETE FROM customer WHERE customer_id = 2`); err != nil {
		t.Fatalf("delete of an owned customer, cascading to its rental: %v", err)
	}
	if n := count(`SELECT count(*) FROM rental WHERE customer_id = 2`); n != 0 {
		t.Fatalf("%d rentals left after the cascade", n)
	}
	if n := count(`SELECT count(*) FROM domicile_deleting`); n != 0 {
		t.Fatalf("%d marks left after the deletion", n)
	}
	// Keys off: the customer goes alone, its rentals stay, orphaned.
	if err := exec(keysOff, `DELETE FROM customer WHERE customer_id = 1`); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT count(*) FROM rental WHERE customer_id = 1`); n != 2 {
		t.Fatalf("%d orphaned rentals, want 2", n)
	}
	own("u1", domicile.Moved)
	for _, q := range []string{
		`UPDATE rental SET note = 'after the move' WHERE rental_id = 10`,
		`DELETE FROM rental WHERE rental_id = 11`,
	} {
		for _, db := range []*sql.DB{keysOn, keysOff} {
			if err := exec(db, q); err == nil {
				t.Errorf("%s of a rental orphaned before its subject moved: accepted", q)
			}
		}
	}
}

// plainStore is a store on a new file with one application connection
// (foreign keys on), tables made by ddl and installed as the dataset "d"
// of tables: each a name and either "subject:<column>" or
// "via:<column>><table>.<column>".
func plainStore(t *testing.T, ddl []string, tables ...[2]string) (*Store, *sql.DB, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	s, err := OpenStore(path, "cn-beijing")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	app := openApp(t, path, true)
	for _, q := range ddl {
		if _, err := app.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ds := &domicile.Dataset{Name: "d"}
	for _, tc := range tables {
		tb, err := s.DescribeTable(ctx, tc[0])
		if err != nil {
			t.Fatal(err)
		}
		kind, spec, _ := strings.Cut(tc[1], ":")
		if kind == "subject" {
			tb.SubjectColumn = spec
		} else {
			col, rest, _ := strings.Cut(spec, ">")
			table, match, _ := strings.Cut(rest, ".")
			tb.Via = &domicile.Path{Hops: []domicile.Hop{{Column: col, Table: table, Match: match}}}
		}
		ds.Tables = append(ds.Tables, tb)
	}
	if err := ds.ResolvePaths(); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) > 0 {
		t.Fatalf("CheckInstall = %q, %v", problems, err)
	}
	return s, app, path
}

// openApp opens an application's connection to the database at path, with
// foreign keys on if keys.
func openApp(t *testing.T, path string, keys bool) *sql.DB {
	t.Helper()
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)"
	if keys {
		dsn += "&_pragma=foreign_keys(1)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func setOwner(t *testing.T, s *Store, subject string, st domicile.OwnerState) {
	t.Helper()
	err := s.SetOwnership(context.Background(), []domicile.Ownership{{Subject: subject, Dataset: "d", State: st, Epoch: 1, MoveID: "m1", Region: "us-east"}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplaceKeys: a REPLACE of an owned subject's write is checked against
// the rows it conflicts with through the rowid of a table whose key is not
// the rowid, through a unique index with a collation, as the index
// compares, and through a partial unique index whose columns it leaves
// alone; the fenced subject's row stays.
func TestReplaceKeys(t *testing.T) {
	const seed = `INSERT INTO t VALUES ('a', 'A', 'a@x', 0), ('b', 'B', 'Bob@x', 1)`
	for _, c := range []struct {
		index, seed, q string
	}{
		{"", seed, `INSERT OR REPLACE INTO t (rowid, id, user_id) VALUES ((SELECT rowid FROM t WHERE id = 'b'), 'n', 'A')`},
		{"", seed, `UPDATE OR REPLACE t SET rowid = (SELECT rowid FROM t WHERE id = 'b') WHERE id = 'a'`},
		{`CREATE UNIQUE INDEX t_email ON t (email COLLATE NOCASE)`, seed, `INSERT OR REPLACE INTO t (id, user_id, email) VALUES ('n', 'A', 'bob@x')`},
		{`CREATE UNIQUE INDEX t_email ON t (email COLLATE NOCASE)`, seed, `UPDATE OR REPLACE t SET email = 'BOB@X' WHERE id = 'a'`},
		// a's row, outside the partial index, has b's email: taking it in
		// changes no column of the key.
		{`CREATE UNIQUE INDEX t_email ON t (email) WHERE active = 1`, `INSERT INTO t VALUES ('a', 'A', 'Bob@x', 0), ('b', 'B', 'Bob@x', 1)`,
			`UPDATE OR REPLACE t SET active = 1 WHERE id = 'a'`},
	} {
		ddl := []string{`CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, user_id TEXT NOT NULL, email TEXT, active INTEGER)`}
		if c.index != "" {
			ddl = append(ddl, c.index)
		}
		s, app, _ := plainStore(t, ddl, [2]string{"t", "subject:user_id"})
		setOwner(t, s, "A", domicile.Owned)
		setOwner(t, s, "B", domicile.Owned)
		if _, err := app.Exec(c.seed); err != nil {
			t.Fatal(err)
		}
		setOwner(t, s, "B", domicile.Fenced)
		_, err := app.Exec(c.q)
		var n int
		if err := app.QueryRow(`SELECT count(*) FROM t WHERE id = 'b' AND user_id = 'B'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err == nil || n != 1 {
			t.Errorf("%s (%s): %v, the fenced subject's rows left: %d; want a refusal and its row", c.q, c.index, err, n)
		}
	}
}

// TestCascadeMarkAffinity: a child's key value goes with its parent by ON
// DELETE CASCADE whatever the child's column declares, as SQLite's key
// matches it (the parent's affinity applied).
func TestCascadeMarkAffinity(t *testing.T) {
	for _, c := range []struct{ childType, value string }{{"", "'1'"}, {"TEXT", "'01'"}, {"TEXT", "'1'"}, {"REAL", "1"}, {"", "1.0"}} {
		s, app, _ := plainStore(t, []string{
			`CREATE TABLE customer (customer_id INTEGER NOT NULL PRIMARY KEY, user_id TEXT NOT NULL)`,
			`CREATE TABLE rental (rental_id INTEGER NOT NULL PRIMARY KEY, customer_id ` + c.childType + ` REFERENCES customer (customer_id) ON DELETE CASCADE)`,
		}, [2]string{"customer", "subject:user_id"}, [2]string{"rental", "via:customer_id>customer.customer_id"})
		setOwner(t, s, "A", domicile.Owned)
		for _, q := range []string{`INSERT INTO customer VALUES (1, 'A')`, `INSERT INTO rental VALUES (10, ` + c.value + `)`} {
			if _, err := app.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := app.Exec(`DELETE FROM customer WHERE customer_id = 1`); err != nil {
			t.Errorf("child column %q holding %s: the owned subject's cascade: %v", c.childType, c.value, err)
		}
	}
}

// TestMarksLeftBehind: marks that a statement leaves (a key change through
// the rowid, an UPDATE OR IGNORE that skips its row after its mark) never
// let an orphan of a subject moved away pass: the first is taken away by
// the trigger after every UPDATE, the second when a REPLACE takes the
// parent away without its DELETE trigger.
func TestMarksLeftBehind(t *testing.T) {
	ddl := []string{
		`CREATE TABLE customer (customer_id INTEGER NOT NULL PRIMARY KEY, user_id TEXT NOT NULL, email TEXT UNIQUE)`,
		`CREATE TABLE rental (rental_id INTEGER NOT NULL PRIMARY KEY,
			customer_id INTEGER NOT NULL REFERENCES customer (customer_id) ON UPDATE CASCADE ON DELETE CASCADE, note TEXT)`,
	}
	tables := [][2]string{{"customer", "subject:user_id"}, {"rental", "via:customer_id>customer.customer_id"}}
	for _, c := range []struct {
		name  string
		steps func(keysOn, keysOff *sql.DB) error
	}{
		{"key changed through the rowid, keys off", func(_, keysOff *sql.DB) error {
			_, err := keysOff.Exec(`UPDATE customer SET rowid = 99 WHERE customer_id = 1`)
			return err
		}},
		{"update or ignore, then a replace with keys off", func(keysOn, keysOff *sql.DB) error {
			if _, err := keysOn.Exec(`UPDATE OR IGNORE customer SET customer_id = 2 WHERE customer_id = 1`); err != nil {
				return err
			}
			_, err := keysOff.Exec(`INSERT OR REPLACE INTO customer VALUES (5, 'u1', 'e1')`)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, keysOn, path := plainStore(t, ddl, tables...)
			keysOff := openApp(t, path, false)
			setOwner(t, s, "u1", domicile.Owned)
			setOwner(t, s, "u2", domicile.Owned)
			for _, q := range []string{
				`INSERT INTO customer VALUES (1, 'u1', 'e1'), (2, 'u2', 'e2')`,
				`INSERT INTO rental VALUES (10, 1, 'a'), (11, 1, 'b')`,
			} {
				if _, err := keysOn.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.steps(keysOn, keysOff); err != nil {
				t.Fatal(err)
			}
			var orphans int
			if err := keysOn.QueryRow(`SELECT count(*) FROM rental WHERE customer_id = 1`).Scan(&orphans); err != nil {
				t.Fatal(err)
			}
			if orphans != 2 {
				t.Fatalf("%d rentals left pointing to customer 1, want 2 orphans", orphans)
			}
			setOwner(t, s, "u1", domicile.Moved)
			for _, q := range []string{`UPDATE rental SET note = 'after the move' WHERE rental_id = 10`, `DELETE FROM rental WHERE rental_id = 11`} {
				for _, db := range []*sql.DB{keysOn, keysOff} {
					if _, err := db.Exec(q); err == nil {
						t.Errorf("%s of an orphan of a subject moved away: accepted", q)
					}
				}
			}
		})
	}
}

// TestCascadeMarkCollation: a parent key compared without case carries its
// rows whatever case they hold it in, as the foreign key matches them.
func TestCascadeMarkCollation(t *testing.T) {
	s, app, _ := plainStore(t, []string{
		`CREATE TABLE customer (customer_id TEXT COLLATE NOCASE NOT NULL PRIMARY KEY, user_id TEXT NOT NULL)`,
		`CREATE TABLE rental (rental_id INTEGER NOT NULL PRIMARY KEY,
			customer_id TEXT NOT NULL REFERENCES customer (customer_id) ON UPDATE CASCADE ON DELETE CASCADE)`,
	}, [2]string{"customer", "subject:user_id"}, [2]string{"rental", "via:customer_id>customer.customer_id"})
	setOwner(t, s, "u1", domicile.Owned)
	for _, q := range []string{
		`INSERT INTO customer VALUES ('ABC', 'u1'), ('DEF', 'u1')`,
		`INSERT INTO rental VALUES (10, 'abc'), (20, 'def')`,
		`UPDATE customer SET customer_id = 'XYZ' WHERE customer_id = 'ABC'`,
		`DELETE FROM customer WHERE customer_id = 'DEF'`,
	} {
		if _, err := app.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := app.QueryRow(`SELECT count(*) FROM rental WHERE customer_id = 'XYZ'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rentals carried to XYZ: %d, %v; want 1", n, err)
	}
}

// TestPutRowConflictWithAnother: an owned subject's PutRow whose key or
// unique column is another subject's row fails as a conflict, whatever
// that subject's state here (the triggers refuse the row it would replace
// with that subject's refusal, which is not the writer's).
func TestPutRowConflictWithAnother(t *testing.T) {
	ctx := context.Background()
	for _, other := range []domicile.OwnerState{domicile.Owned, domicile.Fenced, domicile.Moved, ""} {
		s, app, _ := plainStore(t, []string{`CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, user_id TEXT NOT NULL, email TEXT UNIQUE)`},
			[2]string{"t", "subject:user_id"})
		setOwner(t, s, "A", domicile.Owned)
		setOwner(t, s, "B", domicile.Owned)
		if _, err := app.Exec(`INSERT INTO t VALUES ('b', 'B', 'b@x')`); err != nil {
			t.Fatal(err)
		}
		if other == "" {
			if err := s.DeleteOwnership(ctx, "d", []string{"B"}); err != nil {
				t.Fatal(err)
			}
		} else {
			setOwner(t, s, "B", other)
		}
		tb, err := s.DescribeTable(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = "user_id"
		for _, w := range []struct {
			cols []string
			row  []any
		}{
			{[]string{"id", "user_id"}, []any{"b", "A"}},
			{[]string{"id", "user_id", "email"}, []any{"a", "A", "b@x"}},
		} {
			err := s.PutRow(ctx, tb, "A", w.cols, w.row)
			if domicile.ErrorCode(err) != domicile.CodeConflict {
				t.Errorf("B %q: PutRow of A's row %v: %v (code %q); want a conflict", other, w.row, err, domicile.ErrorCode(err))
			}
		}
	}
}

// TestInsertWithRowidLeftToSQLite: an INSERT that leaves the rowid (or the
// INTEGER PRIMARY KEY) to SQLite conflicts with no row, even one at -1 of
// a subject not owned here (a BEFORE trigger sees -1 for such a rowid).
func TestInsertWithRowidLeftToSQLite(t *testing.T) {
	for _, c := range []struct{ ddl, seed, q string }{
		{`CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, user_id TEXT NOT NULL)`,
			`INSERT INTO t (rowid, id, user_id) VALUES (-1, 'b', 'B')`, `INSERT INTO t (id, user_id) VALUES ('a', 'A')`},
		{`CREATE TABLE t (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL)`,
			`INSERT INTO t (id, user_id) VALUES (-1, 'B')`, `INSERT INTO t (user_id) VALUES ('A')`},
	} {
		s, app, _ := plainStore(t, []string{c.ddl}, [2]string{"t", "subject:user_id"})
		setOwner(t, s, "A", domicile.Owned)
		setOwner(t, s, "B", domicile.Owned)
		if _, err := app.Exec(c.seed); err != nil {
			t.Fatal(err)
		}
		setOwner(t, s, "B", domicile.Fenced)
		if _, err := app.Exec(c.q); err != nil {
			t.Errorf("%s beside a fenced subject's row at -1: %v", c.q, err)
		}
	}
}
