package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/domicile/domicile"
)

// The path fixture: a small rental shop in the shape of the pagila sample.
// customer has the subject column; rental reaches it in one hop
// (rental.customer_id), payment in two (payment.rental_id, then the
// rental's customer_id); address is owned by the customer row that points
// to it (customer.address_id); film is a global table that rentals refer
// to.
const pathDataset = "rentals"

// pathDDL returns the fixture's tables, with their foreign keys.
func (h Harness) pathDDL() []string {
	ty := h.Type
	if ty == nil {
		ty = func(s string) string { return s }
	}
	return []string{
		fmt.Sprintf(`CREATE TABLE film (film_id %s NOT NULL PRIMARY KEY, title %s)`, ty("INTEGER"), ty("TEXT")),
		fmt.Sprintf(`CREATE TABLE address (address_id %s NOT NULL PRIMARY KEY, line %s)`, ty("INTEGER"), ty("TEXT")),
		fmt.Sprintf(`CREATE TABLE customer (customer_id %s NOT NULL PRIMARY KEY, user_id %s NOT NULL,
			address_id %s REFERENCES address (address_id), name %s)`, ty("INTEGER"), ty("TEXT"), ty("INTEGER"), ty("TEXT")),
		fmt.Sprintf(`CREATE TABLE rental (rental_id %s NOT NULL PRIMARY KEY,
			customer_id %s NOT NULL REFERENCES customer (customer_id), film_id %s NOT NULL REFERENCES film (film_id))`,
			ty("INTEGER"), ty("INTEGER"), ty("INTEGER")),
		fmt.Sprintf(`CREATE TABLE payment (payment_id %s NOT NULL PRIMARY KEY,
			rental_id %s NOT NULL REFERENCES rental (rental_id), amount %s)`, ty("INTEGER"), ty("INTEGER"), ty("REAL")),
	}
}

// pathFixture is a store with the path fixture installed.
type pathFixture struct {
	fixture
}

// setupPaths opens a store, creates the fixture's tables with plain SQL,
// fills film unless films is false, and installs the dataset with film as
// a global table.
func (h Harness) setupPaths(t *testing.T, region string, films bool, opts domicile.InstallOptions) *pathFixture {
	t.Helper()
	return h.setupPathTables(t, region, h.pathDDL(), films, opts)
}

// setupPathTables is setupPaths, creating the tables with ddl.
func (h Harness) setupPathTables(t *testing.T, region string, ddl []string, films bool, opts domicile.InstallOptions) *pathFixture {
	t.Helper()
	s := h.open(t, region)
	for _, q := range ddl {
		if err := h.Exec(t, s, q); err != nil {
			t.Fatalf("create tables: %s: %v", q, err)
		}
	}
	if films {
		for id := range int64(2) {
			if err := h.Exec(t, s, `INSERT INTO film (film_id, title) VALUES (?, ?)`, id+1, fmt.Sprintf("film %d", id+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := &pathFixture{fixture{h: h, s: s, ds: describePaths(t, s)}}
	opts.Global = append(opts.Global, "film")
	if err := s.Install(context.Background(), []*domicile.Dataset{f.ds}, opts); err != nil {
		t.Fatalf("install: %v", err)
	}
	return f
}

// describePaths reads the fixture's dataset from a store that has its
// tables, and resolves its paths.
func describePaths(t *testing.T, s domicile.Store) *domicile.Dataset {
	t.Helper()
	ds := &domicile.Dataset{Name: pathDataset}
	via := map[string]*domicile.Path{
		"address": {Hops: []domicile.Hop{{Column: "address_id", Table: "customer", Match: "address_id", Reverse: true}}},
		"rental":  {Hops: []domicile.Hop{{Column: "customer_id", Table: "customer", Match: "customer_id"}}},
		"payment": {Hops: []domicile.Hop{{Column: "rental_id", Table: "rental", Match: "rental_id"}}}, // then rental's path
	}
	for _, name := range []string{"customer", "address", "rental", "payment"} {
		tb, err := s.DescribeTable(context.Background(), name)
		if err != nil {
			t.Fatalf("describe %s: %v", name, err)
		}
		if tb.Via = via[name]; tb.Via == nil {
			tb.SubjectColumn = "user_id"
		}
		ds.Tables = append(ds.Tables, tb)
	}
	if err := ds.ResolvePaths(); err != nil {
		t.Fatal(err)
	}
	if p := ds.Table("payment").Via; len(p.Hops) != 2 || p.End() != "customer" || p.Subject != "user_id" {
		t.Fatalf("payment's path resolved to %+v", p)
	}
	return ds
}

// owners sets the ownership rows of the refusal tests' subjects.
func (f *pathFixture) owners(t *testing.T) {
	t.Helper()
	err := f.s.SetOwnership(context.Background(), []domicile.Ownership{
		{Subject: owned, Dataset: pathDataset, State: domicile.Owned, Epoch: 1},
		{Subject: fenced, Dataset: pathDataset, State: domicile.Fenced, Epoch: 1, MoveID: "m1"},
		{Subject: incoming, Dataset: pathDataset, State: domicile.Incoming, Epoch: 1, MoveID: "m1"},
		{Subject: moved, Dataset: pathDataset, State: domicile.Moved, Region: movedRegion, Epoch: movedEpoch, MoveID: "m0"},
	})
	if err != nil {
		t.Fatalf("set ownership: %v", err)
	}
}

func (f *pathFixture) own(t *testing.T, state domicile.OwnerState, move string, subjects ...string) {
	t.Helper()
	rows := make([]domicile.Ownership, len(subjects))
	for i, s := range subjects {
		rows[i] = domicile.Ownership{Subject: s, Dataset: pathDataset, State: state, Epoch: 1, MoveID: move}
	}
	if err := f.s.SetOwnership(context.Background(), rows); err != nil {
		t.Fatalf("set ownership: %v", err)
	}
}

// pathRowsPerSubject is how many rows pathSample gives each subject: a
// customer, its address, two rentals and a payment for each.
const pathRowsPerSubject = 6

// pathSample returns the rows of the subjects: subject i gets customer
// base+i, address base+i, rentals 10(base+i) and 10(base+i)+1, and a
// payment for each rental.
func pathSample(subjects []string, base int64) *domicile.Batch {
	b := &domicile.Batch{Tables: []domicile.TableRows{
		{Table: "customer", Columns: []string{"customer_id", "user_id", "address_id", "name"}},
		{Table: "address", Columns: []string{"address_id", "line"}},
		{Table: "rental", Columns: []string{"rental_id", "customer_id", "film_id"}},
		{Table: "payment", Columns: []string{"payment_id", "rental_id", "amount"}},
	}}
	for i, s := range subjects {
		n := base + int64(i)
		b.Tables[0].Rows = append(b.Tables[0].Rows, []any{n, s, n, "customer " + s})
		b.Tables[1].Rows = append(b.Tables[1].Rows, []any{n, fmt.Sprintf("%d Main Street", n)})
		for k := range int64(2) {
			r := n*10 + k
			b.Tables[2].Rows = append(b.Tables[2].Rows, []any{r, n, k + 1})
			b.Tables[3].Rows = append(b.Tables[3].Rows, []any{r * 10, r, float64(r) + 0.25})
		}
	}
	return b
}

// rowsOf counts the rows CountRows finds for subject, over every table.
func rowsOf(t *testing.T, s domicile.Store, ds *domicile.Dataset, subject string) map[string]int64 {
	t.Helper()
	n, err := s.CountRows(context.Background(), ds, subject)
	if err != nil {
		t.Fatalf("count rows of %s: %v", subject, err)
	}
	return n
}

func testPathRefusals(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setupPaths(t, regionA, true, domicile.InstallOptions{})
	if problems, err := f.s.CheckInstall(ctx, []*domicile.Dataset{f.ds}); err != nil || len(problems) > 0 {
		t.Fatalf("CheckInstall = %q, %v; want none", problems, err)
	}
	f.owners(t)
	subjects := []string{owned, fenced, incoming, moved, unknown}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, pathSample(subjects, 1)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	for _, c := range []struct {
		subject string
		refusal error
	}{
		{fenced, domicile.ErrFenced},
		{incoming, domicile.ErrIncoming},
		{moved, domicile.ErrMoved},
		{unknown, domicile.ErrUnknown},
		{owned, nil},
	} {
		n := 1 + int64(slices.Index(subjects, c.subject)) // the subject's customer and address
		r := n * 10                                       // its first rental
		for _, w := range []struct {
			name, query string
			args        []any
		}{
			{"rental insert (one hop)", `INSERT INTO rental (rental_id, customer_id, film_id) VALUES (?, ?, ?)`, []any{r + 5, n, 1}},
			{"rental update", `UPDATE rental SET film_id = ? WHERE rental_id = ?`, []any{2, r}},
			{"payment insert (two hops)", `INSERT INTO payment (payment_id, rental_id, amount) VALUES (?, ?, ?)`, []any{r*10 + 5, r, 1.5}},
			{"payment update", `UPDATE payment SET amount = ? WHERE payment_id = ?`, []any{9.5, r * 10}},
			{"payment delete", `DELETE FROM payment WHERE payment_id = ?`, []any{(r + 1) * 10}},
			{"address update (owned by)", `UPDATE address SET line = ? WHERE address_id = ?`, []any{"elsewhere", n}},
		} {
			t.Run(c.subject+"/"+w.name, func(t *testing.T) {
				err := h.Exec(t, f.s, w.query, w.args...)
				if c.refusal == nil {
					if err != nil {
						t.Fatalf("%s of an owned subject: %v", w.name, err)
					}
					return
				}
				wantRefusal(t, err, c.refusal)
			})
		}
	}
	// Moving a rental of the owned subject to a fenced subject's customer
	// is refused: the new row reaches the fenced subject.
	err := h.Exec(t, f.s, `UPDATE rental SET customer_id = ? WHERE rental_id = ?`, 2, 10)
	wantRefusal(t, err, domicile.ErrFenced)
	// An address no customer points to belongs to no one yet: accepted, as
	// an application inserts the address before the customer row.
	if err := h.Exec(t, f.s, `INSERT INTO address (address_id, line) VALUES (?, ?)`, 900, "new"); err != nil {
		t.Fatalf("insert of an address no one points to: %v", err)
	}
	// But an address no one points to may not be changed, as a subject
	// without an ownership row may not: a writer whose snapshot predates a
	// pointer to it, from a subject fenced since, must not take it for
	// no one's.
	if err := h.Exec(t, f.s, `INSERT INTO address (address_id, line) VALUES (?, ?)`, 901, "orphan"); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, h.Exec(t, f.s, `UPDATE address SET line = ? WHERE address_id = ?`, "changed", 901), domicile.ErrUnknown)
	wantRefusal(t, h.Exec(t, f.s, `DELETE FROM address WHERE address_id = ?`, 901), domicile.ErrUnknown)
	// Pointing an owned customer at it passes; pointing a fenced one does not.
	if err := h.Exec(t, f.s, `UPDATE customer SET address_id = ? WHERE customer_id = ?`, 900, 1); err != nil {
		t.Fatal(err)
	}
	err = h.Exec(t, f.s, `UPDATE customer SET address_id = ? WHERE customer_id = ?`, 900, 2)
	wantRefusal(t, err, domicile.ErrFenced)
	// Nothing of the refused subjects changed.
	after, err := f.s.ReadSubjects(ctx, f.ds, []string{fenced, incoming, moved, unknown})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := after.Rows(), int64(4*pathRowsPerSubject); got != want {
		t.Fatalf("refused subjects have %d rows after refused writes, want %d", got, want)
	}
	before := pathSample(subjects, 1)
	da, err := domicile.DigestBatch(f.ds, subjects[1:], before)
	if err != nil {
		t.Fatal(err)
	}
	db, err := f.s.DigestSubjects(ctx, f.ds, subjects[1:])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subjects[1:] {
		if !da[s].Equal(db[s]) {
			t.Errorf("rows of refused subject %s changed", s)
		}
	}
}

func testPathCopy(t *testing.T, h Harness) {
	ctx := context.Background()
	a := h.setupPaths(t, regionA, true, domicile.InstallOptions{})
	subjects := []string{"p1", "p2", "p3"}
	a.own(t, domicile.Owned, "", append(subjects, "keep")...)
	if err := a.s.WriteSubjects(ctx, a.ds, append(subjects, "keep"), pathSample(append(subjects, "keep"), 1)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if n := rowsOf(t, a.s, a.ds, "p2"); !reflect.DeepEqual(n, map[string]int64{"customer": 1, "address": 1, "rental": 2, "payment": 2}) {
		t.Fatalf("CountRows(p2) = %v", n)
	}
	if rows, bytes, err := a.s.MeasureSubjects(ctx, a.ds, subjects); err != nil || rows != 3*pathRowsPerSubject || bytes == 0 {
		t.Fatalf("MeasureSubjects = %d rows, %d bytes, %v; want %d rows", rows, bytes, err, 3*pathRowsPerSubject)
	}
	for _, name := range []string{"address", "rental", "payment"} {
		var listed []string
		if err := a.s.ListRowSubjects(ctx, a.table(name), func(s string) error { listed = append(listed, s); return nil }); err != nil {
			t.Fatal(err)
		}
		if want := []string{"keep", "p1", "p2", "p3"}; !reflect.DeepEqual(listed, want) {
			t.Errorf("ListRowSubjects(%s) = %v, want %v", name, listed, want)
		}
	}
	batch, err := a.s.ReadSubjects(ctx, a.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	if batch.Rows() != 3*pathRowsPerSubject {
		t.Fatalf("read %d rows, want %d", batch.Rows(), 3*pathRowsPerSubject)
	}
	films, err := a.s.ReadTable(ctx, "film")
	if err != nil {
		t.Fatal(err)
	}
	if len(films.Rows) != 2 {
		t.Fatalf("ReadTable(film) = %d rows, want 2", len(films.Rows))
	}

	// A store without the films refuses the rows that refer to them: the
	// foreign keys hold at the destination.
	bare := h.setupPaths(t, regionB, false, domicile.InstallOptions{})
	bare.own(t, domicile.Incoming, "mv", subjects...)
	batch.MoveID = "mv"
	if err := bare.s.WriteSubjects(ctx, bare.ds, subjects, batch); err == nil {
		t.Fatal("copy into a store without the global film rows succeeded; want a foreign key failure")
	}
	// Installed with the films as global rows, the copy succeeds.
	b := h.setupPaths(t, regionB, false, domicile.InstallOptions{GlobalRows: []domicile.TableRows{*films}})
	if got, err := b.s.ReadTable(ctx, "film"); err != nil || len(got.Rows) != 2 {
		t.Fatalf("film at the destination: %v, %v; want 2 rows", got, err)
	}
	b.own(t, domicile.Incoming, "mv", subjects...)
	if err := b.s.WriteSubjects(ctx, b.ds, subjects, batch); err != nil {
		t.Fatalf("copy: %v", err)
	}
	// Again, as a retried step: the rows of the first attempt are replaced.
	if err := b.s.WriteSubjects(ctx, b.ds, subjects, batch); err != nil {
		t.Fatalf("copy again: %v", err)
	}
	da, err := a.s.DigestSubjects(ctx, a.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.s.DigestSubjects(ctx, b.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	want, err := domicile.DigestBatch(a.ds, subjects, pathSample(append(subjects, "keep"), 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subjects {
		if !da[s].Equal(db[s]) || !da[s].Equal(want[s]) {
			t.Errorf("digest of %s differs between the stores or from the sample", s)
		}
		if da[s].Rows["payment"] != 2 || da[s].Rows["address"] != 1 {
			t.Errorf("digest of %s counts %v", s, da[s].Rows)
		}
	}
	// The same copy through the store's own copier, where it has one.
	if cp, ok := b.s.(domicile.SubjectCopier); ok {
		n, err := cp.CopySubjectsFrom(ctx, a.s, b.ds, "mv", subjects)
		switch {
		case errors.Is(err, domicile.ErrNotSupported):
		case err != nil:
			t.Fatalf("CopySubjectsFrom: %v", err)
		case n != 3*pathRowsPerSubject:
			t.Fatalf("CopySubjectsFrom copied %d rows, want %d", n, 3*pathRowsPerSubject)
		default:
			if db, _ = b.s.DigestSubjects(ctx, b.ds, subjects); !da["p1"].Equal(db["p1"]) {
				t.Error("digest of p1 differs after CopySubjectsFrom")
			}
		}
	}
	// A row whose path reaches no subject of the batch is refused.
	stray := pathSample([]string{"p1"}, 1)
	stray.Tables[2].Rows = append(stray.Tables[2].Rows, []any{int64(77), int64(2), int64(1)}) // customer 2 is p2's
	stray.MoveID = "mv"
	if err := b.s.WriteSubjects(ctx, b.ds, []string{"p1"}, stray); err == nil {
		t.Fatal("a batch with a rental of a customer outside it was written")
	}

	// Purge at the source: every table of the moved subjects, through
	// their paths, and nothing of the others or of film.
	a.own(t, domicile.Moved, "mv", subjects[:2]...)
	n, err := a.s.PurgeMoved(ctx, a.ds, "mv", subjects)
	if err != nil {
		t.Fatalf("PurgeMoved: %v", err)
	}
	if n != 2*pathRowsPerSubject {
		t.Fatalf("PurgeMoved deleted %d rows, want %d", n, 2*pathRowsPerSubject)
	}
	if n, err = a.s.PurgeSubjects(ctx, a.ds, subjects[2:]); err != nil || n != pathRowsPerSubject {
		t.Fatalf("PurgeSubjects = %d, %v; want %d", n, err, pathRowsPerSubject)
	}
	for _, s := range subjects {
		for table, k := range rowsOf(t, a.s, a.ds, s) {
			if k != 0 {
				t.Errorf("%s keeps %d rows of %s after the purge", s, k, table)
			}
		}
	}
	if got := rowsOf(t, a.s, a.ds, "keep"); got["payment"] != 2 || got["address"] != 1 {
		t.Errorf("keep has %v after the others' purge", got)
	}
	if got, _ := a.s.ReadTable(ctx, "film"); got == nil || len(got.Rows) != 2 {
		t.Errorf("film after the purge: %v", got)
	}
	// Plain SQL finds no orphan at either end.
	for _, st := range []domicile.Store{a.s, b.s} {
		if err := h.Exec(t, st, `DELETE FROM film WHERE film_id = ?`, 1); err == nil {
			t.Errorf("region %s: deleting a film that rentals refer to succeeded", st.Region())
		}
	}
}

func testPathRows(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setupPaths(t, regionA, true, domicile.InstallOptions{})
	f.owners(t)
	f.own(t, domicile.Owned, "", "other")
	if err := f.s.WriteSubjects(ctx, f.ds, []string{owned, "other", fenced}, pathSample([]string{owned, "other", fenced}, 1)); err != nil {
		t.Fatal(err)
	}
	// Rows per subject, as batching and live copy count them, take in the
	// rows each subject reaches through a path.
	if lc, ok := f.s.(domicile.LiveCopier); ok {
		counts, err := lc.CountSubjects(ctx, f.ds, []string{owned, "other"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{owned, "other"} {
			rows, _, err := f.s.MeasureSubjects(ctx, f.ds, []string{sub})
			if err != nil {
				t.Fatal(err)
			}
			if counts[sub] != rows {
				t.Errorf("CountSubjects gives %s %d rows; MeasureSubjects %d", sub, counts[sub], rows)
			}
		}
	}
	rental := f.table("rental")
	cols := []string{"rental_id", "customer_id", "film_id"}
	if err := f.s.PutRow(ctx, rental, owned, cols, []any{int64(500), int64(1), int64(2)}); err != nil {
		t.Fatalf("put a rental of the owned subject: %v", err)
	}
	rows, err := f.s.FindRows(ctx, rental, owned, domicile.RowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || !reflect.DeepEqual(rows[2], []any{int64(500), int64(1), int64(2)}) {
		t.Fatalf("FindRows(rental, owned) = %v", rows)
	}
	if rows, _ := f.s.FindRows(ctx, f.table("payment"), "other", domicile.RowQuery{}); len(rows) != 2 {
		t.Fatalf("FindRows(payment, other) = %v; want its two payments", rows)
	}
	// A rental of another subject's customer does not belong to this one.
	err = f.s.PutRow(ctx, rental, owned, cols, []any{int64(501), int64(2), int64(1)})
	wantError(t, "put of a rental reaching another subject", err, domicile.CodeInvalid, nil)
	// A key held by another subject's row is a conflict.
	err = f.s.PutRow(ctx, rental, owned, cols, []any{int64(20), int64(1), int64(1)})
	wantError(t, "put over another subject's rental", err, domicile.CodeConflict, nil)
	// The fenced subject's rows are refused as for a subject column.
	err = f.s.PutRow(ctx, rental, fenced, cols, []any{int64(502), int64(3), int64(1)})
	wantError(t, "put of a fenced subject's rental", err, domicile.CodeFenced, domicile.ErrFenced)
	if ok, err := f.s.DeleteRow(ctx, rental, owned, []any{int64(20)}); err != nil || ok {
		t.Fatalf("delete of another subject's rental by key = %v, %v; want nothing deleted", ok, err)
	}
	if ok, err := f.s.DeleteRow(ctx, rental, owned, []any{int64(500)}); err != nil || !ok {
		t.Fatalf("delete of the owned subject's rental = %v, %v", ok, err)
	}
	// An address put for its subject, then pointed to by the customer.
	addr := f.table("address")
	if err := f.s.PutRow(ctx, addr, owned, []string{"address_id", "line"}, []any{int64(600), "new line"}); err != nil {
		t.Fatalf("put of a new address: %v", err)
	}
	if err := f.s.PutRow(ctx, f.table("customer"), owned, []string{"customer_id", "user_id", "address_id", "name"}, []any{int64(1), owned, int64(600), "moved house"}); err != nil {
		t.Fatal(err)
	}
	if rows, err := f.s.FindRows(ctx, addr, owned, domicile.RowQuery{}); err != nil || len(rows) != 1 || rows[0][1] != "new line" {
		t.Fatalf("FindRows(address, owned) = %v, %v", rows, err)
	}
	// Another subject's address is not this one's to change.
	err = f.s.PutRow(ctx, addr, owned, []string{"address_id", "line"}, []any{int64(2), "taken"})
	wantError(t, "put over another subject's address", err, domicile.CodeConflict, nil)
}
