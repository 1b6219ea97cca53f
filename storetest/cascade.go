package storetest

import (
	"context"
	"fmt"
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

// testPathReplace: SQLite's REPLACE deletes the row a new one conflicts
// with without that row's DELETE trigger, so nothing checked the parent's
// deletion, and its rows must not go by its keys' ON DELETE CASCADE: each
// such REPLACE that would take a fenced subject's rows with it is refused,
// and leaves them.
func testPathReplace(t *testing.T, h Harness) {
	if !h.Replace {
		t.Skip("the engine has no REPLACE conflict resolution: its upserts update the row, which the UPDATE trigger checks")
	}
	ctx := context.Background()
	for _, c := range []struct{ name, before, q string }{
		{"insert or replace a rental", "", `INSERT OR REPLACE INTO rental (rental_id, customer_id, film_id) VALUES (20, 1, 1)`},
		{"update or replace a rental", `INSERT INTO rental (rental_id, customer_id, film_id) VALUES (12, 1, 1)`,
			`UPDATE OR REPLACE rental SET rental_id = 20 WHERE rental_id = 12`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := h.setupPathTables(t, regionA, h.pathDDLCascade(), true, domicile.InstallOptions{})
			f.owners(t)
			subjects := []string{owned, fenced}
			if err := f.s.WriteSubjects(ctx, f.ds, subjects, pathSample(subjects, 1)); err != nil {
				t.Fatalf("seed: %v", err)
			}
			if c.before != "" {
				if err := h.Exec(t, f.s, c.before); err != nil {
					t.Fatal(err)
				}
			}
			// Rental 20 is the fenced subject's, with payment 200.
			if err := h.Exec(t, f.s, c.q); err == nil {
				t.Fatalf("%s: accepted; want a refusal", c.q)
			}
			if got := rowsOf(t, f.s, f.ds, fenced); got["rental"] != 2 || got["payment"] != 2 {
				t.Fatalf("the fenced subject's rows after a refused REPLACE: %v", got)
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
