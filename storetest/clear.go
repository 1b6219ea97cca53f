package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/domicile/domicile"
)

// nullsIn returns, for a batch table, how many rows of subject have a NULL
// in column; subjectCol is the column naming the subject.
func nullsIn(t *testing.T, b *domicile.Batch, table, column, subjectCol, subject string) (nulls, rows int) {
	t.Helper()
	for _, tr := range b.Tables {
		if tr.Table != table {
			continue
		}
		ci, si := -1, -1
		for i, c := range tr.Columns {
			switch c {
			case column:
				ci = i
			case subjectCol:
				si = i
			}
		}
		if ci < 0 {
			t.Fatalf("batch table %s has no column %s", table, column)
		}
		for _, r := range tr.Rows {
			if si >= 0 && r[si] != subject {
				continue
			}
			rows++
			if r[ci] == nil {
				nulls++
			}
		}
	}
	return nulls, rows
}

func testClearColumns(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.owners(t)
	f.own(t, "u-2", "u-empty")
	subjects := []string{owned, fenced, incoming, moved, unknown, "u-2"}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, sample(subjects, 1)); err != nil {
		t.Fatal(err)
	}
	orders := f.table("orders")
	n, err := f.s.ClearColumns(ctx, orders, owned, []string{"note", "total"})
	if err != nil || n != 4 {
		t.Fatalf("ClearColumns(orders, owned, note total) = %d, %v; want 4 values (2 orders × 2 columns)", n, err)
	}
	rows, err := f.s.FindRows(ctx, orders, owned, domicile.RowQuery{})
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows after clearing = %v, %v", rows, err)
	}
	for _, r := range rows {
		if r[0] == nil || r[1] != owned || r[2] != nil || r[3] != nil {
			t.Fatalf("row after clearing total and note = %v; want key and subject kept, the rest NULL", r)
		}
	}
	// Another subject's rows are left alone.
	if rows, _ := f.s.FindRows(ctx, orders, "u-2", domicile.RowQuery{}); len(rows) != 2 || rows[0][3] == nil {
		t.Fatalf("another subject's orders after clearing = %v; want their notes", rows)
	}
	if n, err := f.s.ClearColumns(ctx, orders, owned, []string{"note"}); err != nil || n != 0 {
		t.Fatalf("ClearColumns again = %d, %v; want 0", n, err)
	}
	// owned has orders, but no note any more.
	if got := valueSubjects(t, f.s, orders, "note"); !slices.Equal(got, []string{"u-2", fenced, incoming, moved, unknown}) {
		t.Fatalf("ListValueSubjects(orders, note) = %q; want every subject but %s", got, owned)
	}
	if got := valueSubjects(t, f.s, orders, "order_id"); !slices.Equal(got, []string{"u-2", fenced, incoming, moved, owned, unknown}) {
		t.Fatalf("ListValueSubjects(orders, order_id) = %q; want every subject", got)
	}
	// An owned subject without rows: nothing to erase, no refusal.
	if n, err := f.s.ClearColumns(ctx, orders, "u-empty", []string{"note"}); err != nil || n != 0 {
		t.Fatalf("ClearColumns of a subject without rows = %d, %v; want 0", n, err)
	}

	// Refused as PutRow is, with nothing erased.
	_, err = f.s.ClearColumns(ctx, orders, fenced, []string{"note"})
	wantError(t, "clear of a fenced subject", err, domicile.CodeFenced, domicile.ErrFenced)
	_, err = f.s.ClearColumns(ctx, orders, incoming, []string{"note"})
	wantError(t, "clear of an incoming subject", err, domicile.CodeFenced, domicile.ErrIncoming)
	_, err = f.s.ClearColumns(ctx, orders, moved, []string{"note"})
	e := wantError(t, "clear of a moved subject", err, domicile.CodeMoved, domicile.ErrMoved)
	if e.Region != movedRegion || e.Epoch != movedEpoch {
		t.Fatalf("moved error says region %q epoch %d; want %q %d", e.Region, e.Epoch, movedRegion, movedEpoch)
	}
	_, err = f.s.ClearColumns(ctx, orders, unknown, []string{"note"})
	wantError(t, "clear of an unknown subject", err, domicile.CodeForbidden, domicile.ErrUnknown)
	_, err = f.s.ClearColumns(ctx, orders, "u-nobody", []string{"note"})
	wantError(t, "clear of an unknown subject without rows", err, domicile.CodeForbidden, domicile.ErrUnknown)
	b, err := f.s.ReadSubjects(ctx, f.ds, []string{fenced, incoming, moved, unknown})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fenced, incoming, moved, unknown} {
		if nulls, rows := nullsIn(t, b, "orders", "note", "user_id", s); nulls != 0 || rows != 2 {
			t.Fatalf("%s's orders after a refused clear: %d of %d notes NULL; want 0 of 2", s, nulls, rows)
		}
	}

	// Columns that cannot be NULL are refused.
	for _, cols := range [][]string{{"order_id"}, {"user_id"}, {"nope"}, {"note", "note"}, {}} {
		_, err := f.s.ClearColumns(ctx, orders, owned, cols)
		wantError(t, "clear of "+fmtCols(cols), err, domicile.CodeInvalid, nil)
	}
	_, err = f.s.ClearColumns(ctx, f.table("items"), owned, []string{"sku"})
	wantError(t, "clear of a NOT NULL column", err, domicile.CodeInvalid, nil)

	// The stale copy of a moved subject is cleared past the triggers.
	if n, err := f.s.ClearStaleColumns(ctx, orders, moved, []string{"note"}); err != nil || n != 2 {
		t.Fatalf("ClearStaleColumns(orders, moved, note) = %d, %v; want 2", n, err)
	}
	b, err = f.s.ReadSubjects(ctx, f.ds, []string{moved, fenced})
	if err != nil {
		t.Fatal(err)
	}
	if nulls, _ := nullsIn(t, b, "orders", "note", "user_id", moved); nulls != 2 {
		t.Fatalf("moved subject's notes after ClearStaleColumns: %d NULL; want 2", nulls)
	}
	if nulls, _ := nullsIn(t, b, "orders", "note", "user_id", fenced); nulls != 0 {
		t.Fatalf("another subject's notes after ClearStaleColumns: %d NULL; want 0", nulls)
	}
	// Where the store holds the subject, its rows are not stale: left alone.
	for _, s := range []string{"u-2", fenced, incoming} {
		if n, err := f.s.ClearStaleColumns(ctx, orders, s, []string{"note"}); err != nil || n != 0 {
			t.Fatalf("ClearStaleColumns(orders, %s) = %d, %v; want 0: the store holds the subject", s, n, err)
		}
	}
	b, err = f.s.ReadSubjects(ctx, f.ds, []string{"u-2", fenced, incoming, unknown})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"u-2", fenced, incoming} {
		if nulls, _ := nullsIn(t, b, "orders", "note", "user_id", s); nulls != 0 {
			t.Fatalf("%s's notes after ClearStaleColumns: %d NULL; want 0", s, nulls)
		}
	}
	// Rows of a subject without an ownership row are stale.
	if n, err := f.s.ClearStaleColumns(ctx, orders, unknown, []string{"note"}); err != nil || n != 2 {
		t.Fatalf("ClearStaleColumns(orders, unknown) = %d, %v; want 2", n, err)
	}

	// A store that accepts unknown subjects clears their rows.
	g := h.setup(t, regionB, domicile.InstallOptions{AcceptUnknown: true})
	if err := g.s.WriteSubjects(ctx, g.ds, []string{unknown}, sample([]string{unknown}, 1)); err != nil {
		t.Fatal(err)
	}
	if n, err := g.s.ClearColumns(ctx, g.table("profiles"), unknown, []string{"name", "avatar", "age"}); err != nil || n != 3 {
		t.Fatalf("ClearColumns of an unknown subject where accepted = %d, %v; want 3", n, err)
	}
}

func fmtCols(cols []string) string {
	if len(cols) == 0 {
		return "no columns"
	}
	s := cols[0]
	for _, c := range cols[1:] {
		s += ", " + c
	}
	return s
}

func testPathClearColumns(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setupPaths(t, regionA, true, domicile.InstallOptions{})
	f.owners(t)
	f.own(t, domicile.Owned, "", "other")
	subjects := []string{owned, "other", fenced}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, pathSample(subjects, 1)); err != nil {
		t.Fatal(err)
	}
	payment := f.table("payment")
	if n, err := f.s.ClearColumns(ctx, payment, owned, []string{"amount"}); err != nil || n != 2 {
		t.Fatalf("ClearColumns(payment, owned, amount) = %d, %v; want its 2 payments", n, err)
	}
	if rows, _ := f.s.FindRows(ctx, payment, owned, domicile.RowQuery{}); len(rows) != 2 || rows[0][2] != nil || rows[1][2] != nil {
		t.Fatalf("owned's payments after clearing = %v", rows)
	}
	if rows, _ := f.s.FindRows(ctx, payment, "other", domicile.RowQuery{}); len(rows) != 2 || rows[0][2] == nil {
		t.Fatalf("other's payments after clearing owned's = %v; want their amounts", rows)
	}
	if got := valueSubjects(t, f.s, payment, "amount"); !slices.Equal(got, []string{"other", fenced}) {
		t.Fatalf("ListValueSubjects(payment, amount) = %q; want [other %s]", got, fenced)
	}
	_, err := f.s.ClearColumns(ctx, payment, fenced, []string{"amount"})
	wantError(t, "clear of a fenced subject's payments", err, domicile.CodeFenced, domicile.ErrFenced)
	if n, err := f.s.ClearColumns(ctx, f.table("address"), owned, []string{"line"}); err != nil || n != 1 {
		t.Fatalf("ClearColumns(address, owned, line) = %d, %v; want its one address", n, err)
	}
}

// valueSubjects returns what ListValueSubjects lists.
func valueSubjects(t *testing.T, s domicile.Store, tb *domicile.Table, column string) []string {
	t.Helper()
	var out []string
	if err := s.ListValueSubjects(context.Background(), tb, column, func(id string) error { out = append(out, id); return nil }); err != nil {
		t.Fatalf("ListValueSubjects(%s, %s): %v", tb.Name, column, err)
	}
	return out
}
