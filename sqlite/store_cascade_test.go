package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/domicile/domicile"
)

// TestCascadeMarks: a customer's rentals go with it by ON DELETE CASCADE
// while the customer's deletion is marked, and the marks are gone after
// it. Rentals orphaned earlier, by a connection with foreign_keys off (the
// SQLite default), find no mark: once their subject has moved, writes to
// them are refused as before.
func TestCascadeMarks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	s, err := OpenStore(path, "cn-beijing")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	open := func(keys bool) *sql.DB {
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
	keysOff, keysOn := open(false), open(true)
	for _, q := range []string{
		`CREATE TABLE customer (customer_id INTEGER NOT NULL PRIMARY KEY, user_id TEXT NOT NULL)`,
		`CREATE TABLE rental (rental_id INTEGER NOT NULL PRIMARY KEY,
			customer_id INTEGER NOT NULL REFERENCES customer (customer_id) ON DELETE CASCADE, note TEXT)`,
	} {
		if _, err := keysOn.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ds := &domicile.Dataset{Name: "rentals"}
	for _, n := range []string{"customer", "rental"} {
		tb, err := s.DescribeTable(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "customer" {
			tb.SubjectColumn = "user_id"
		} else {
			tb.Via = &domicile.Path{Hops: []domicile.Hop{{Column: "customer_id", Table: "customer", Match: "customer_id"}}}
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
	own := func(subject string, st domicile.OwnerState) {
		t.Helper()
		if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: subject, Dataset: "rentals", State: st, Epoch: 1, MoveID: "m1", Region: "us-east"}}); err != nil {
			t.Fatal(err)
		}
	}
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
