package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/domicile/domicile"
)

// TestRowStamps: a subject's stamp changes with every committed write to
// its rows (an UPDATE that changes nothing included) and with nothing
// else: not with another subject's writes, nor with a write rolled back;
// the stamped read returns the rows ReadSubjects returns.
func TestRowStamps(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	subjects := []string{"a", "b", "c", "d", "e"} // e has no rows
	var own []domicile.Ownership
	for _, id := range subjects {
		own = append(own, domicile.Ownership{Subject: id, Dataset: "ds", State: domicile.Owned})
	}
	if err := s.SetOwnership(ctx, own); err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := app.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i, id := range subjects[:4] {
		for j := range 3 {
			exec(`INSERT INTO t (id, user_id, v) VALUES ($1, $2, $3)`, i*10+j, id, fmt.Sprintf("%s%d", id, j))
		}
	}

	b, before, err := s.ReadSubjectsStamped(ctx, ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.ReadSubjects(ctx, ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	sortRows(b.Tables[0].Rows)
	sortRows(plain.Tables[0].Rows)
	if !reflect.DeepEqual(b, plain) {
		t.Fatalf("stamped read %+v, ReadSubjects %+v", b, plain)
	}
	if len(before) != len(subjects) {
		t.Fatalf("%d stamps for %d subjects", len(before), len(subjects))
	}
	stamps := func() map[string]domicile.RowStamp {
		t.Helper()
		st, err := s.RowStamps(ctx, ds, subjects)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	check := func(what string, changed ...string) {
		t.Helper()
		now := stamps()
		for _, id := range subjects {
			want := false
			for _, c := range changed {
				want = want || c == id
			}
			if got := now[id] != before[id]; got != want {
				t.Errorf("after %s: subject %s changed %v, want %v", what, id, got, want)
			}
		}
		before = now
	}
	check("nothing")
	exec(`UPDATE t SET v = v WHERE id = 1`) // a's, the same value
	check("an UPDATE of a's row to the same value", "a")
	exec(`INSERT INTO t (id, user_id, v) VALUES (100, 'b', 'new')`)
	exec(`DELETE FROM t WHERE id = 20`) // c's
	check("an INSERT for b and a DELETE of c's row", "b", "c")
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE t SET v = 'rolled back' WHERE user_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	check("an UPDATE of d's rows rolled back")
	exec(`UPDATE t SET user_id = 'e' WHERE id = 30`) // d's row becomes e's
	check("a row passed from d to e", "d", "e")
	if _, err := s.Pool().Exec(ctx, `VACUUM t`); err != nil {
		t.Fatal(err)
	}
	check("VACUUM")
}

// TestRowStampsNotSupported: a dataset with a path table, and rows whose
// subject column reads back as another spelling of the id, cannot be stamped: the store
// says so rather than stamp rows it cannot attribute.
func TestRowStampsNotSupported(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := triggerStore(t, "")
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE c (cid bigint PRIMARY KEY, parent bigint REFERENCES t (id), x text)`); err != nil {
		t.Fatal(err)
	}
	child := &domicile.Table{Name: "c", Via: &domicile.Path{Hops: []domicile.Hop{{Column: "parent", Table: "t", Match: "id"}}, Subject: "user_id"}}
	withPath := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{ds.Tables[0], child}}
	if _, _, err := s.ReadSubjectsStamped(ctx, withPath, []string{"o"}); !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("stamped read of a dataset with a path table: %v", err)
	}
	if _, err := s.RowStamps(ctx, withPath, []string{"o"}); !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("stamps of a dataset with a path table: %v", err)
	}

	// An integer subject column: the id "007" finds the row of 7, whose
	// subject reads back as "7".
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE p (id bigint PRIMARY KEY, user_id bigint NOT NULL);
		INSERT INTO p VALUES (1, 7)`); err != nil {
		t.Fatal(err)
	}
	tb, err := s.DescribeTable(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	tb.SubjectColumn = "user_id"
	padded := &domicile.Dataset{Name: "pd", Tables: []*domicile.Table{tb}}
	if b, err := s.ReadSubjects(ctx, padded, []string{"007"}); err != nil || len(b.Tables[0].Rows) != 1 {
		t.Fatalf("ReadSubjects of 007: %+v %v", b, err)
	}
	if _, err := s.RowStamps(ctx, padded, []string{"007"}); !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("stamps of rows whose subject reads back otherwise: %v", err)
	}
}
