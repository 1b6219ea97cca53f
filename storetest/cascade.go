package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/domicile/domicile"
)

// testPathCascade: a path table whose rows go with their parent's by an ON
// DELETE CASCADE foreign key, as an order's items go with the order. The
// application deletes an owned subject's parent row and its children go
// with it; deleting a parent row of a subject that is not owned here is
// refused, the children's deletion with it.
func testPathCascade(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setupPathTables(t, regionA, h.pathDDLCascade(), true, domicile.InstallOptions{})
	f.owners(t)
	subjects := []string{owned, fenced, incoming, moved}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, pathSample(subjects, 1)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	count := func(s string) map[string]int64 { return rowsOf(t, f.s, f.ds, s) }
	// subject i (1-based) has customer i, rentals 10i and 10i+1, payments
	// 100i and 100i+10.
	for i, s := range subjects {
		n := int64(i + 1)
		err := h.Exec(t, f.s, `DELETE FROM rental WHERE rental_id = ?`, n*10)
		if s != owned {
			wantRefusal(t, err, refusalOf(s))
			if got := count(s); got["rental"] != 2 || got["payment"] != 2 {
				t.Fatalf("%s: a refused delete of a rental left %v", s, got)
			}
			err = h.Exec(t, f.s, `DELETE FROM customer WHERE customer_id = ?`, n)
			wantRefusal(t, err, refusalOf(s))
			if got := count(s); got["customer"] != 1 || got["rental"] != 2 || got["payment"] != 2 {
				t.Fatalf("%s: a refused delete of a customer left %v", s, got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("delete of an owned subject's rental, cascading to its payment: %v", err)
		}
		if got := count(s); got["rental"] != 1 || got["payment"] != 1 {
			t.Fatalf("after deleting a rental of %s: %v, want one rental and one payment", s, got)
		}
		if err := h.Exec(t, f.s, `DELETE FROM customer WHERE customer_id = ?`, n); err != nil {
			t.Fatalf("delete of an owned subject's customer, cascading two levels: %v", err)
		}
		if got := count(s); got["customer"] != 0 || got["rental"] != 0 || got["payment"] != 0 {
			t.Fatalf("after deleting the customer of %s: %v, want none", s, got)
		}
	}
}

// testPathUpdateCascade: a change of a parent's key that ON UPDATE CASCADE
// carries to its path rows passes for an owned subject, and the rows still
// reach it; a fenced subject's is refused, its rows left.
func testPathUpdateCascade(t *testing.T, h Harness) {
	ctx := context.Background()
	ty := h.Type
	if ty == nil {
		ty = func(s string) string { return s }
	}
	ddl := h.pathDDLCascade()
	ddl[3] = fmt.Sprintf(`CREATE TABLE rental (rental_id %s NOT NULL PRIMARY KEY,
			customer_id %s NOT NULL REFERENCES customer (customer_id) ON UPDATE CASCADE ON DELETE CASCADE,
			film_id %s NOT NULL REFERENCES film (film_id))`, ty("INTEGER"), ty("INTEGER"), ty("INTEGER"))
	f := h.setupPathTables(t, regionA, ddl, true, domicile.InstallOptions{})
	f.owners(t)
	subjects := []string{owned, fenced}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, pathSample(subjects, 1)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if err := h.Exec(t, f.s, `UPDATE customer SET customer_id = ? WHERE customer_id = ?`, 91, 1); err != nil {
		t.Fatalf("an owned subject's customer key changed, carried to its rentals: %v", err)
	}
	if got := rowsOf(t, f.s, f.ds, owned); got["customer"] != 1 || got["rental"] != 2 || got["payment"] != 2 {
		t.Fatalf("the owned subject's rows after its key changed: %v", got)
	}
	wantRefusal(t, h.Exec(t, f.s, `UPDATE customer SET customer_id = ? WHERE customer_id = ?`, 92, 2), domicile.ErrFenced)
	if got := rowsOf(t, f.s, f.ds, fenced); got["customer"] != 1 || got["rental"] != 2 || got["payment"] != 2 {
		t.Fatalf("the fenced subject's rows after a refused key change: %v", got)
	}
}

// testPathOrphan: without a foreign key on the path's column, a row whose
// parent is gone is an orphan that reaches no subject, and stays refused
// as a subject without an ownership row: nothing says this transaction
// deleted its parent.
func testPathOrphan(t *testing.T, h Harness) {
	ctx := context.Background()
	ddl := h.pathDDLCascade()
	ty := h.Type
	if ty == nil {
		ty = func(s string) string { return s }
	}
	ddl[4] = fmt.Sprintf(`CREATE TABLE payment (payment_id %s NOT NULL PRIMARY KEY, rental_id %s NOT NULL, amount %s)`,
		ty("INTEGER"), ty("INTEGER"), ty("REAL"))
	f := h.setupPathTables(t, regionA, ddl, true, domicile.InstallOptions{})
	f.owners(t)
	if err := f.s.WriteSubjects(ctx, f.ds, []string{owned}, pathSample([]string{owned}, 1)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	// The rental goes; its payments, which no key ties to it, stay behind.
	if err := h.Exec(t, f.s, `DELETE FROM rental WHERE rental_id = ?`, 10); err != nil {
		t.Fatalf("delete of an owned subject's rental: %v", err)
	}
	wantRefusal(t, h.Exec(t, f.s, `DELETE FROM payment WHERE payment_id = ?`, 100), domicile.ErrUnknown)
	wantRefusal(t, h.Exec(t, f.s, `UPDATE payment SET amount = ? WHERE payment_id = ?`, 1.5, 100), domicile.ErrUnknown)
	// The other payment's rental is there: its deletion passes.
	if err := h.Exec(t, f.s, `DELETE FROM payment WHERE payment_id = ?`, 110); err != nil {
		t.Fatalf("delete of a payment whose rental is there: %v", err)
	}
}

// testReplace: SQLite's REPLACE deletes the rows a write conflicts with on
// a unique key without their DELETE triggers. The INSERT and UPDATE
// triggers therefore check those rows' subjects too: a REPLACE of an owned
// subject's write that would take away a fenced subject's row, directly or
// by the ON DELETE CASCADE of its keys, is refused and leaves every row;
// one that replaces the owned subject's own row passes.
func testReplace(t *testing.T, h Harness) {
	if !h.Replace {
		t.Skip("the engine has no REPLACE conflict resolution: its upserts update the row, which the UPDATE trigger checks")
	}
	ctx := context.Background()
	ty := h.Type
	if ty == nil {
		ty = func(s string) string { return s }
	}
	cascade := h.pathDDLCascade()
	unique := h.pathDDL()
	unique[2] = fmt.Sprintf(`CREATE TABLE customer (customer_id %s NOT NULL PRIMARY KEY, user_id %s NOT NULL,
			address_id %s REFERENCES address (address_id), name %s UNIQUE)`, ty("INTEGER"), ty("TEXT"), ty("INTEGER"), ty("TEXT"))
	// The owned subject's customer is 1, with rentals 10 and 11; the fenced
	// subject's is 2, "customer u-fenced", with rentals 20 and 21, payments
	// 200 and 210.
	for _, c := range []struct {
		name   string
		ddl    []string
		before []string
		q      string
		ok     bool
		alone  bool // the fenced subject has no rentals
	}{
		{"insert or replace a customer", h.pathDDL(), nil,
			`INSERT OR REPLACE INTO customer (customer_id, user_id, address_id, name) VALUES (2, 'u-owned', 2, 'x')`, false, false},
		{"insert or replace on a unique column", unique, nil,
			`INSERT OR REPLACE INTO customer (customer_id, user_id, address_id, name) VALUES (50, 'u-owned', NULL, 'customer u-fenced')`, false, true},
		{"insert or replace a customer with no rentals", h.pathDDL(), nil,
			`INSERT OR REPLACE INTO customer (customer_id, user_id, address_id, name) VALUES (2, 'u-owned', NULL, 'x')`, false, true},
		{"update or replace a key", h.pathDDL(), []string{`DELETE FROM payment WHERE rental_id IN (10, 11)`, `DELETE FROM rental WHERE customer_id = 1`},
			`UPDATE OR REPLACE customer SET customer_id = 2 WHERE customer_id = 1`, false, false},
		{"insert or replace a rental", h.pathDDL(), nil,
			`INSERT OR REPLACE INTO rental (rental_id, customer_id, film_id) VALUES (20, 1, 1)`, false, false},
		{"insert or replace a rental, cascading", cascade, nil,
			`INSERT OR REPLACE INTO rental (rental_id, customer_id, film_id) VALUES (20, 1, 1)`, false, false},
		{"update or replace a rental, cascading", cascade, []string{`INSERT INTO rental (rental_id, customer_id, film_id) VALUES (12, 1, 1)`},
			`UPDATE OR REPLACE rental SET rental_id = 20 WHERE rental_id = 12`, false, false},
		{"insert or replace the owned subject's own row", h.pathDDL(), nil,
			`INSERT OR REPLACE INTO customer (customer_id, user_id, address_id, name) VALUES (1, 'u-owned', 1, 'renamed')`, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := h.setupPathTables(t, regionA, c.ddl, true, domicile.InstallOptions{})
			f.owners(t)
			subjects := []string{owned, fenced}
			seed := pathSample(subjects, 1)
			if c.alone {
				// The fenced subject has its customer row alone: no key of
				// another row holds the REPLACE back.
				for i := range seed.Tables {
					if name := seed.Tables[i].Table; name == "rental" || name == "payment" {
						seed.Tables[i].Rows = slices.DeleteFunc(seed.Tables[i].Rows, func(r []any) bool {
							return r[0].(int64) >= 20 && r[0].(int64) < 30 || r[0].(int64) >= 200
						})
					}
				}
			}
			if err := f.s.WriteSubjects(ctx, f.ds, subjects, seed); err != nil {
				t.Fatalf("seed: %v", err)
			}
			for _, q := range c.before {
				if err := h.Exec(t, f.s, q); err != nil {
					t.Fatal(err)
				}
			}
			before, err := f.s.DigestSubjects(ctx, f.ds, []string{fenced})
			if err != nil {
				t.Fatal(err)
			}
			err = h.Exec(t, f.s, c.q)
			if c.ok {
				if err != nil {
					t.Fatalf("%s: %v", c.q, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s: accepted; want a refusal", c.q)
			}
			after, err := f.s.DigestSubjects(ctx, f.ds, []string{fenced})
			if err != nil {
				t.Fatal(err)
			}
			if !after[fenced].Equal(before[fenced]) {
				t.Fatalf("the fenced subject's rows changed by a refused REPLACE: %v, were %v", after[fenced].Rows, before[fenced].Rows)
			}
		})
	}
}

// refusalOf is the refusal of a write of the refusal tests' subjects.
func refusalOf(subject string) error {
	switch subject {
	case fenced:
		return domicile.ErrFenced
	case incoming:
		return domicile.ErrIncoming
	case moved:
		return domicile.ErrMoved
	}
	return domicile.ErrUnknown
}

// pathDDLCascade is pathDDL with the path's foreign keys ON DELETE CASCADE;
// payment's names rental's key by the table alone.
func (h Harness) pathDDLCascade() []string {
	ty := h.Type
	if ty == nil {
		ty = func(s string) string { return s }
	}
	ddl := h.pathDDL()
	ddl[3] = fmt.Sprintf(`CREATE TABLE rental (rental_id %s NOT NULL PRIMARY KEY,
			customer_id %s NOT NULL REFERENCES customer (customer_id) ON DELETE CASCADE, film_id %s NOT NULL REFERENCES film (film_id))`,
		ty("INTEGER"), ty("INTEGER"), ty("INTEGER"))
	ddl[4] = fmt.Sprintf(`CREATE TABLE payment (payment_id %s NOT NULL PRIMARY KEY,
			rental_id %s NOT NULL REFERENCES rental ON DELETE CASCADE, amount %s)`, ty("INTEGER"), ty("INTEGER"), ty("REAL"))
	return ddl
}
