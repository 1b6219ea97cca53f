// Package storetest is the conformance suite that every implementation of
// domicile.Store passes: installation, the triggers' refusals of writers that
// bypass domicile, row access, bulk copies, digests and purges.
//
// A backend's test calls Run with a Harness that opens fresh stores and runs
// plain SQL beside them, as an application with its own connection would.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// Harness connects the suite to a backend.
type Harness struct {
	// Open returns a new, empty store of region. The suite closes it.
	Open func(t *testing.T, region string) domicile.Store

	// Exec runs plain SQL against the store's database on a connection of
	// its own, as an application bypassing domicile would. The suite writes
	// placeholders as ?; a backend with another syntax rewrites them. Exec
	// is called from several goroutines and must not call t.Fatal.
	Exec func(t *testing.T, s domicile.Store, query string, args ...any) error

	// Type maps the suite's portable column types (TEXT, INTEGER, REAL,
	// BLOB, DATETIME) to the backend's. Nil keeps them.
	Type func(portable string) string

	// DropTrigger returns the SQL that drops one of domicile's triggers on
	// table. Nil: DROP TRIGGER "domicile_<table>_ins", as on SQLite.
	DropTrigger func(table string) string

	// Replace is set for an engine with SQLite's REPLACE conflict
	// resolution (INSERT OR REPLACE, UPDATE OR REPLACE), which deletes the
	// rows a write conflicts with without their DELETE triggers.
	Replace bool
}

// Names of the suite's fixtures.
const (
	Dataset     = "shop"
	regionA     = "cn-beijing"
	regionB     = "ap-singapore"
	movedRegion = "us-east"
	movedEpoch  = 7
)

// The subjects of the refusal tests, one per ownership state.
const (
	owned    = "u-owned"
	fenced   = "u-fenced"
	incoming = "u-incoming"
	moved    = "u-moved"
	unknown  = "u-unknown"
)

// tableDDL returns the suite's tables in portable SQL.
func (h Harness) tableDDL() []string {
	ty := h.Type
	if ty == nil {
		ty = func(s string) string { return s }
	}
	return []string{
		fmt.Sprintf(`CREATE TABLE profiles (user_id %s NOT NULL PRIMARY KEY, name %s, age %s, score %s, avatar %s, born %s)`,
			ty("TEXT"), ty("TEXT"), ty("INTEGER"), ty("REAL"), ty("BLOB"), ty("DATETIME")),
		fmt.Sprintf(`CREATE TABLE orders (order_id %s NOT NULL PRIMARY KEY, user_id %s NOT NULL, total %s, note %s)`,
			ty("INTEGER"), ty("TEXT"), ty("REAL"), ty("TEXT")),
		fmt.Sprintf(`CREATE TABLE items (order_id %s NOT NULL, line %s NOT NULL, user_id %s NOT NULL, sku %s NOT NULL, qty %s, PRIMARY KEY (order_id, line))`,
			ty("INTEGER"), ty("INTEGER"), ty("TEXT"), ty("TEXT"), ty("INTEGER")),
		`CREATE INDEX items_sku ON items (sku)`,
	}
}

// fixture is a store of the suite with its dataset installed.
type fixture struct {
	h  Harness
	s  domicile.Store
	ds *domicile.Dataset
}

func (f *fixture) table(name string) *domicile.Table { return f.ds.Table(name) }

// open opens a store and closes it when the test ends.
func (h Harness) open(t *testing.T, region string) domicile.Store {
	t.Helper()
	s := h.Open(t, region)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// setup opens a store, creates the suite's tables with plain SQL and
// installs the dataset.
func (h Harness) setup(t *testing.T, region string, opts domicile.InstallOptions) *fixture {
	t.Helper()
	s := h.open(t, region)
	for _, q := range h.tableDDL() {
		if err := h.Exec(t, s, q); err != nil {
			t.Fatalf("create tables: %s: %v", q, err)
		}
	}
	f := &fixture{h: h, s: s, ds: describe(t, s)}
	if err := s.Install(context.Background(), []*domicile.Dataset{f.ds}, opts); err != nil {
		t.Fatalf("install: %v", err)
	}
	return f
}

// describe reads the suite's dataset from a store that has its tables.
func describe(t *testing.T, s domicile.Store) *domicile.Dataset {
	t.Helper()
	ds := &domicile.Dataset{Name: Dataset}
	for _, name := range []string{"profiles", "orders", "items"} {
		tb, err := s.DescribeTable(context.Background(), name)
		if err != nil {
			t.Fatalf("describe %s: %v", name, err)
		}
		tb.SubjectColumn = "user_id"
		ds.Tables = append(ds.Tables, tb)
	}
	return ds
}

// owners sets the ownership rows of the refusal tests' subjects.
func (f *fixture) owners(t *testing.T) {
	t.Helper()
	err := f.s.SetOwnership(context.Background(), []domicile.Ownership{
		{Subject: owned, Dataset: Dataset, State: domicile.Owned, Epoch: 1},
		{Subject: fenced, Dataset: Dataset, State: domicile.Fenced, Epoch: 1, MoveID: "m1"},
		{Subject: incoming, Dataset: Dataset, State: domicile.Incoming, Epoch: 1, MoveID: "m1"},
		{Subject: moved, Dataset: Dataset, State: domicile.Moved, Region: movedRegion, Epoch: movedEpoch, MoveID: "m0"},
	})
	if err != nil {
		t.Fatalf("set ownership: %v", err)
	}
}

// own marks subjects owned.
func (f *fixture) own(t *testing.T, subjects ...string) {
	t.Helper()
	rows := make([]domicile.Ownership, len(subjects))
	for i, s := range subjects {
		rows[i] = domicile.Ownership{Subject: s, Dataset: Dataset, State: domicile.Owned, Epoch: 1}
	}
	if err := f.s.SetOwnership(context.Background(), rows); err != nil {
		t.Fatalf("set ownership: %v", err)
	}
}

// sample returns a batch of rows of the subjects: per subject one profile,
// two orders and three items. Keys are derived from n, the subject's index
// plus base.
func sample(subjects []string, base int64) *domicile.Batch {
	b := &domicile.Batch{Tables: []domicile.TableRows{
		{Table: "profiles", Columns: []string{"user_id", "name", "age", "score", "avatar", "born"}},
		{Table: "orders", Columns: []string{"order_id", "user_id", "total", "note"}},
		{Table: "items", Columns: []string{"order_id", "line", "user_id", "sku", "qty"}},
	}}
	for i, s := range subjects {
		n := base + int64(i)
		b.Tables[0].Rows = append(b.Tables[0].Rows, []any{s, "name of " + s, n, float64(n) / 4, []byte{byte(n), 0, 1}, "2024-01-02 03:04:05"})
		for o := range int64(2) {
			id := n*10 + o
			b.Tables[1].Rows = append(b.Tables[1].Rows, []any{id, s, float64(id) + 0.5, fmt.Sprintf("order %d", id)})
			if o == 0 {
				for l := range int64(3) {
					b.Tables[2].Rows = append(b.Tables[2].Rows, []any{id, l + 1, s, fmt.Sprintf("sku-%d", l), l + 2})
				}
			}
		}
	}
	return b
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Install", testInstall},
		{"InstallFromTemplate", testInstallFromTemplate},
		{"Ownership", testOwnership},
		{"PlainWritersRefused", testPlainWriters},
		{"PlainWritersAcceptUnknown", testAcceptUnknown},
		{"PutRow", testPutRow},
		{"FindRows", testFindRows},
		{"FindRowsRefused", testFindRowsRefused},
		{"DeleteRow", testDeleteRow},
		{"WriteSubjects", testWriteSubjects},
		{"WriteSubjectsConflict", testWriteSubjectsConflict},
		{"Digest", testDigest},
		{"PurgeSubjects", testPurge},
		{"CountRowsAndDiscover", testCountDiscover},
		{"RoundTrip", testRoundTrip},
		{"ConcurrentFence", testConcurrentFence},
		{"Transition", testTransition},
		{"TransitionAgainstWrites", testTransitionAgainstWrites},
		{"PathRefusals", testPathRefusals},
		{"PathCopyDigestPurge", testPathCopy},
		{"PathRows", testPathRows},
		{"PathCascade", testPathCascade},
		{"PathOrphan", testPathOrphan},
		{"PathUpdateCascade", testPathUpdateCascade},
		{"Replace", testReplace},
		{"ClearColumns", testClearColumns},
		{"PathClearColumns", testPathClearColumns},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func testInstall(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	dss := []*domicile.Dataset{f.ds}
	for range 2 {
		if err := f.s.Install(ctx, dss, domicile.InstallOptions{}); err != nil {
			t.Fatalf("install again: %v", err)
		}
	}
	if problems, err := f.s.CheckInstall(ctx, dss); err != nil || len(problems) > 0 {
		t.Fatalf("CheckInstall after install = %q, %v; want none", problems, err)
	}
	drop := fmt.Sprintf(`DROP TRIGGER %q`, "domicile_orders_ins")
	if h.DropTrigger != nil {
		drop = h.DropTrigger("orders")
	}
	if err := h.Exec(t, f.s, drop); err != nil {
		t.Fatalf("drop trigger: %v", err)
	}
	problems, err := f.s.CheckInstall(ctx, dss)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), "orders") {
		t.Fatalf("CheckInstall after dropping a trigger of orders = %q; want a problem naming orders", problems)
	}
	// A dataset that changed (another table) is out of date too.
	more := &domicile.Dataset{Name: Dataset, Tables: append(slices.Clone(f.ds.Tables), &domicile.Table{Name: "extra", SubjectColumn: "user_id"})}
	if problems, _ := f.s.CheckInstall(ctx, []*domicile.Dataset{more}); len(problems) == 0 {
		t.Fatal("CheckInstall with a table not installed reports nothing")
	}
	if err := f.s.Install(ctx, dss, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if problems, err := f.s.CheckInstall(ctx, dss); err != nil || len(problems) > 0 {
		t.Fatalf("CheckInstall after reinstall = %q, %v; want none", problems, err)
	}
	// The reinstalled triggers refuse again.
	f.owners(t)
	err = h.Exec(t, f.s, `INSERT INTO orders (order_id, user_id) VALUES (?, ?)`, 1, fenced)
	wantRefusal(t, err, domicile.ErrFenced)
}

func testInstallFromTemplate(t *testing.T, h Harness) {
	ctx := context.Background()
	a := h.setup(t, regionA, domicile.InstallOptions{})
	b := h.open(t, regionB)
	opts := domicile.InstallOptions{Templates: map[string]*domicile.Table{}, TemplateIndexes: map[string][]string{}}
	bare := &domicile.Dataset{Name: Dataset}
	for _, tb := range a.ds.Tables {
		opts.Templates[tb.Name] = tb
		idx, err := a.s.Indexes(ctx, tb.Name)
		if err != nil {
			t.Fatalf("indexes of %s: %v", tb.Name, err)
		}
		opts.TemplateIndexes[tb.Name] = idx
		bare.Tables = append(bare.Tables, &domicile.Table{Name: tb.Name, SubjectColumn: tb.SubjectColumn})
	}
	if len(opts.TemplateIndexes["items"]) != 1 {
		t.Fatalf("indexes of items = %q; want the one on sku", opts.TemplateIndexes["items"])
	}
	if err := b.Install(ctx, []*domicile.Dataset{bare}, opts); err != nil {
		t.Fatalf("install from templates: %v", err)
	}
	for _, want := range a.ds.Tables {
		got, err := b.DescribeTable(ctx, want.Name)
		if err != nil {
			t.Fatalf("describe %s at B: %v", want.Name, err)
		}
		if !slices.Equal(got.PrimaryKey, want.PrimaryKey) {
			t.Errorf("%s: primary key %q, want %q", want.Name, got.PrimaryKey, want.PrimaryKey)
		}
		if len(got.Columns) != len(want.Columns) {
			t.Fatalf("%s: columns %v, want %v", want.Name, got.Columns, want.Columns)
		}
		for i, c := range want.Columns {
			g := got.Columns[i]
			if g.Name != c.Name || !strings.EqualFold(g.Type, c.Type) || g.NotNull != c.NotNull {
				t.Errorf("%s column %d: %+v, want %+v", want.Name, i, g, c)
			}
		}
		idxA, _ := a.s.Indexes(ctx, want.Name)
		idxB, err := b.Indexes(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(idxA) != len(idxB) {
			t.Errorf("%s: indexes at B %q, at A %q", want.Name, idxB, idxA)
		}
	}
	if problems, err := b.CheckInstall(ctx, []*domicile.Dataset{describe(t, b)}); err != nil || len(problems) > 0 {
		t.Fatalf("CheckInstall at B = %q, %v", problems, err)
	}
	// The created tables carry triggers.
	err := h.Exec(t, b, `INSERT INTO items (order_id, line, user_id, sku) VALUES (?, ?, ?, ?)`, 1, 1, unknown, "x")
	wantRefusal(t, err, domicile.ErrUnknown)
}

func testOwnership(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.owners(t)
	f.owners(t) // idempotent
	o, err := f.s.FindOwnership(ctx, Dataset, moved)
	if err != nil {
		t.Fatal(err)
	}
	want := domicile.Ownership{Subject: moved, Dataset: Dataset, State: domicile.Moved, Region: movedRegion, Epoch: movedEpoch, MoveID: "m0"}
	if o != want {
		t.Fatalf("FindOwnership = %+v, want %+v", o, want)
	}
	if _, err := f.s.FindOwnership(ctx, Dataset, unknown); !errors.Is(err, domicile.ErrNotFound) || domicile.ErrorCode(err) != domicile.CodeNotFound {
		t.Fatalf("FindOwnership of an unknown subject: %v; want not found", err)
	}
	if _, err := f.s.FindOwnership(ctx, "other", owned); !errors.Is(err, domicile.ErrNotFound) {
		t.Fatalf("FindOwnership in another dataset: %v; want not found", err)
	}
	var got []string
	err = f.s.ListOwnership(ctx, Dataset, func(o domicile.Ownership) error {
		got = append(got, o.Subject+"="+string(o.State))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if w := []string{"u-fenced=fenced", "u-incoming=incoming", "u-moved=moved", "u-owned=owned"}; !slices.Equal(got, w) {
		t.Fatalf("ListOwnership = %q, want %q", got, w)
	}
	if err := f.s.SetOwnership(ctx, []domicile.Ownership{{Subject: owned, Dataset: Dataset, State: "bogus"}}); domicile.ErrorCode(err) != domicile.CodeInvalid {
		t.Fatalf("SetOwnership with a bogus state: %v; want invalid", err)
	}
	if err := f.s.DeleteOwnership(ctx, Dataset, []string{fenced, incoming}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.FindOwnership(ctx, Dataset, fenced); !errors.Is(err, domicile.ErrNotFound) {
		t.Fatalf("ownership of %s after delete: %v", fenced, err)
	}
	if _, err := f.s.FindOwnership(ctx, Dataset, owned); err != nil {
		t.Fatalf("ownership of %s after deleting others: %v", owned, err)
	}
}

// wantRefusal fails the test unless err carries the fixed message of want.
func wantRefusal(t *testing.T, err error, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("write succeeded; want refusal %q", want)
	}
	if !strings.Contains(err.Error(), want.Error()) {
		t.Fatalf("write failed with %v; want refusal %q", err, want)
	}
}

// plainWrites are the writes an application might make, for a subject s
// whose orders row n exists; other is an owned subject.
func plainWrites(s string, n int64) []struct {
	name, query string
	args        []any
} {
	return []struct {
		name, query string
		args        []any
	}{
		{"insert", `INSERT INTO orders (order_id, user_id, total) VALUES (?, ?, ?)`, []any{n + 1000, s, 1.5}},
		{"update", `UPDATE orders SET total = ? WHERE order_id = ?`, []any{2.5, n}},
		{"update subject away", `UPDATE orders SET user_id = ? WHERE order_id = ?`, []any{"u-other", n}},
		{"update subject to", `UPDATE items SET user_id = ? WHERE user_id = ?`, []any{s, "u-other"}},
		{"delete", `DELETE FROM orders WHERE order_id = ?`, []any{n}},
	}
}

func testPlainWriters(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.owners(t)
	f.own(t, "u-other")
	subjects := []string{owned, fenced, incoming, moved, unknown}
	if err := f.s.WriteSubjects(ctx, f.ds, append(subjects, "u-other"), sample(append(subjects, "u-other"), 1)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	// The owned subject comes last: its writes succeed and change rows the
	// others' writes would otherwise find.
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
		n := (1 + int64(slices.Index(subjects, c.subject))) * 10 // the subject's first order
		for _, w := range plainWrites(c.subject, n) {
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
	// Nothing of the refused subjects changed.
	after, err := f.s.ReadSubjects(ctx, f.ds, []string{fenced, incoming, moved, unknown})
	if err != nil {
		t.Fatal(err)
	}
	before := sample(subjects, 1)
	for ti, tr := range after.Tables {
		var want int
		for _, r := range before.Tables[ti].Rows {
			if s := fmt.Sprint(r[slices.Index(before.Tables[ti].Columns, "user_id")]); s != owned {
				want++
			}
		}
		if len(tr.Rows) != want {
			t.Errorf("%s: %d rows of refused subjects after refused writes, want %d", tr.Table, len(tr.Rows), want)
		}
	}
}

func testAcceptUnknown(t *testing.T, h Harness) {
	f := h.setup(t, regionA, domicile.InstallOptions{AcceptUnknown: true})
	f.owners(t)
	if err := h.Exec(t, f.s, `INSERT INTO orders (order_id, user_id) VALUES (?, ?)`, 1, unknown); err != nil {
		t.Fatalf("insert of an unknown subject in a store accepting them: %v", err)
	}
	if err := h.Exec(t, f.s, `UPDATE orders SET note = ? WHERE order_id = ?`, "x", 1); err != nil {
		t.Fatalf("update of an unknown subject in a store accepting them: %v", err)
	}
	// Known subjects are still fenced.
	err := h.Exec(t, f.s, `INSERT INTO orders (order_id, user_id) VALUES (?, ?)`, 2, fenced)
	wantRefusal(t, err, domicile.ErrFenced)
	err = h.Exec(t, f.s, `UPDATE orders SET user_id = ? WHERE order_id = ?`, moved, 1)
	wantRefusal(t, err, domicile.ErrMoved)
	// Reinstalling without AcceptUnknown refuses them.
	if err := f.s.Install(context.Background(), []*domicile.Dataset{f.ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	err = h.Exec(t, f.s, `DELETE FROM orders WHERE order_id = ?`, 1)
	wantRefusal(t, err, domicile.ErrUnknown)
}

// wantError fails the test unless err is an *domicile.Error with code and,
// if sentinel is set, wrapping it.
func wantError(t *testing.T, what string, err error, code domicile.Code, sentinel error) *domicile.Error {
	t.Helper()
	e, ok := errors.AsType[*domicile.Error](err)
	if !ok || e.Code != code {
		t.Fatalf("%s: %v (code %q); want code %q", what, err, domicile.ErrorCode(err), code)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("%s: %v; want it to wrap %q", what, err, sentinel)
	}
	return e
}

func testPutRow(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.owners(t)
	f.own(t, "u-2")
	orders := f.table("orders")
	cols := []string{"order_id", "user_id", "total", "note"}
	if err := f.s.PutRow(ctx, orders, owned, cols, []any{int64(1), owned, 9.5, "first"}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if err := f.s.PutRow(ctx, orders, owned, cols, []any{int64(1), owned, 10.5, "replaced"}); err != nil {
		t.Fatalf("put again: %v", err)
	}
	rows, err := f.s.FindRows(ctx, orders, owned, domicile.RowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]any{{int64(1), owned, 10.5, "replaced"}}; !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows after replace = %v, want %v", rows, want)
	}
	// The key belongs to another subject.
	err = f.s.PutRow(ctx, orders, "u-2", cols, []any{int64(1), "u-2", 1.0, "steal"})
	wantError(t, "put of another subject's key", err, domicile.CodeConflict, nil)
	if rows, _ := f.s.FindRows(ctx, orders, owned, domicile.RowQuery{}); len(rows) != 1 || rows[0][3] != "replaced" {
		t.Fatalf("the other subject's put changed the row: %v", rows)
	}
	// The subject column must name the subject.
	err = f.s.PutRow(ctx, orders, owned, cols, []any{int64(2), "u-2", 1.0, nil})
	wantError(t, "put with a wrong subject column", err, domicile.CodeInvalid, nil)
	err = f.s.PutRow(ctx, orders, owned, []string{"order_id", "total"}, []any{int64(2), 1.0})
	wantError(t, "put without the subject column", err, domicile.CodeInvalid, nil)
	err = f.s.PutRow(ctx, orders, owned, []string{"order_id", "user_id", "nope"}, []any{int64(2), owned, 1})
	wantError(t, "put of an unknown column", err, domicile.CodeInvalid, nil)
	// Refusals.
	for _, c := range []struct {
		subject  string
		code     domicile.Code
		sentinel error
	}{
		{fenced, domicile.CodeFenced, domicile.ErrFenced},
		{incoming, domicile.CodeFenced, domicile.ErrIncoming},
		{moved, domicile.CodeMoved, domicile.ErrMoved},
		{unknown, domicile.CodeForbidden, domicile.ErrUnknown},
	} {
		err := f.s.PutRow(ctx, orders, c.subject, cols, []any{int64(100), c.subject, 1.0, nil})
		e := wantError(t, "put of "+c.subject, err, c.code, c.sentinel)
		if c.code == domicile.CodeMoved && (e.Region != movedRegion || e.Epoch != movedEpoch) {
			t.Fatalf("moved refusal says region %q epoch %d; want %q %d", e.Region, e.Epoch, movedRegion, movedEpoch)
		}
	}
}

func testFindRows(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.own(t, owned, "u-2")
	items := f.table("items")
	cols := []string{"order_id", "line", "user_id", "sku", "qty"}
	var want [][]any
	for o := int64(1); o <= 3; o++ {
		for l := int64(1); l <= 4; l++ {
			row := []any{o, l, owned, fmt.Sprintf("sku-%d", l), o * l}
			want = append(want, row)
			if err := f.s.PutRow(ctx, items, owned, cols, row); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.s.PutRow(ctx, items, "u-2", cols, []any{int64(9), int64(1), "u-2", "x", nil}); err != nil {
		t.Fatal(err)
	}
	all, err := f.s.FindRows(ctx, items, owned, domicile.RowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(all, want) {
		t.Fatalf("all rows = %v\nwant %v", all, want)
	}
	// Pages of 5, keyed by the last row's primary key.
	var paged [][]any
	q := domicile.RowQuery{Limit: 5}
	for range 10 {
		page, err := f.s.FindRows(ctx, items, owned, q)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.After = []any{last[0], last[1]}
	}
	if !reflect.DeepEqual(paged, want) {
		t.Fatalf("paged rows = %v\nwant %v", paged, want)
	}
	// Filters on key columns.
	got, err := f.s.FindRows(ctx, items, owned, domicile.RowQuery{Filter: map[string]any{"order_id": int64(2)}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want[4:8]) {
		t.Fatalf("rows of order 2 = %v, want %v", got, want[4:8])
	}
	got, err = f.s.FindRows(ctx, items, owned, domicile.RowQuery{Filter: map[string]any{"order_id": int64(2), "line": int64(3)}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want[6:7]) {
		t.Fatalf("row 2/3 = %v, want %v", got, want[6:7])
	}
	// Another subject's key is not found through this subject.
	got, err = f.s.FindRows(ctx, items, owned, domicile.RowQuery{Filter: map[string]any{"order_id": int64(9)}})
	if err != nil || len(got) != 0 {
		t.Fatalf("rows of another subject's order = %v, %v; want none", got, err)
	}
	_, err = f.s.FindRows(ctx, items, owned, domicile.RowQuery{Filter: map[string]any{"sku": "sku-1"}})
	wantError(t, "filter on a non-key column", err, domicile.CodeInvalid, nil)
}

func testFindRowsRefused(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.owners(t)
	subjects := []string{owned, fenced, incoming, moved, unknown}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, sample(subjects, 1)); err != nil {
		t.Fatal(err)
	}
	orders := f.table("orders")
	for _, s := range []string{owned, fenced} {
		rows, err := f.s.FindRows(ctx, orders, s, domicile.RowQuery{})
		if err != nil || len(rows) != 2 {
			t.Fatalf("rows of %s = %v, %v; want 2 rows (reads continue during a fence)", s, rows, err)
		}
	}
	_, err := f.s.FindRows(ctx, orders, moved, domicile.RowQuery{})
	e := wantError(t, "read of a moved subject", err, domicile.CodeMoved, domicile.ErrMoved)
	if e.Region != movedRegion || e.Epoch != movedEpoch {
		t.Fatalf("moved error says region %q epoch %d; want %q %d", e.Region, e.Epoch, movedRegion, movedEpoch)
	}
	_, err = f.s.FindRows(ctx, orders, incoming, domicile.RowQuery{})
	wantError(t, "read of an incoming subject", err, domicile.CodeFenced, domicile.ErrIncoming)
	_, err = f.s.FindRows(ctx, orders, unknown, domicile.RowQuery{})
	wantError(t, "read of an unknown subject", err, domicile.CodeForbidden, domicile.ErrUnknown)

	g := h.setup(t, regionB, domicile.InstallOptions{AcceptUnknown: true})
	if rows, err := g.s.FindRows(ctx, g.table("orders"), unknown, domicile.RowQuery{}); err != nil || len(rows) != 0 {
		t.Fatalf("read of an unknown subject in a store accepting them = %v, %v; want no rows", rows, err)
	}
}

func testDeleteRow(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.owners(t)
	f.own(t, "u-2")
	subjects := []string{owned, fenced, moved, "u-2"}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, sample(subjects, 1)); err != nil {
		t.Fatal(err)
	}
	items := f.table("items")
	if ok, err := f.s.DeleteRow(ctx, items, owned, []any{int64(10), int64(2)}); err != nil || !ok {
		t.Fatalf("delete = %v, %v; want true", ok, err)
	}
	if ok, err := f.s.DeleteRow(ctx, items, owned, []any{int64(10), int64(2)}); err != nil || ok {
		t.Fatalf("delete again = %v, %v; want false", ok, err)
	}
	// u-2's order 40 is not owned's to delete.
	if ok, err := f.s.DeleteRow(ctx, items, owned, []any{int64(40), int64(1)}); err != nil || ok {
		t.Fatalf("delete of another subject's row = %v, %v; want false", ok, err)
	}
	if rows, _ := f.s.FindRows(ctx, items, "u-2", domicile.RowQuery{}); len(rows) != 3 {
		t.Fatalf("u-2 has %d items, want 3", len(rows))
	}
	_, err := f.s.DeleteRow(ctx, items, owned, []any{int64(10)})
	wantError(t, "delete with half a key", err, domicile.CodeInvalid, nil)
	_, err = f.s.DeleteRow(ctx, items, fenced, []any{int64(20), int64(1)})
	wantError(t, "delete of a fenced subject's row", err, domicile.CodeFenced, domicile.ErrFenced)
	_, err = f.s.DeleteRow(ctx, items, moved, []any{int64(30), int64(1)})
	e := wantError(t, "delete of a moved subject's row", err, domicile.CodeMoved, domicile.ErrMoved)
	if e.Region != movedRegion || e.Epoch != movedEpoch {
		t.Fatalf("moved error says region %q epoch %d", e.Region, e.Epoch)
	}
}

func testWriteSubjects(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionB, domicile.InstallOptions{})
	subjects := []string{"s1", "s2", "s3"}
	// Incoming subjects: plain writers are refused, the store's own writes
	// pass.
	rows := make([]domicile.Ownership, len(subjects))
	for i, s := range subjects {
		rows[i] = domicile.Ownership{Subject: s, Dataset: Dataset, State: domicile.Incoming, MoveID: "m1"}
	}
	if err := f.s.SetOwnership(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// Leftovers of an earlier attempt, including a row the source no longer
	// has.
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, sample(subjects, 1)); err != nil {
		t.Fatalf("first attempt: %v", err)
	}
	b := sample(subjects, 1)
	b.Tables[1].Rows = b.Tables[1].Rows[:5] // s3's second order is gone
	b.Tables[0].Rows[0][1] = "renamed"
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, b); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	got, err := f.s.ReadSubjects(ctx, f.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range got.Tables {
		if len(tr.Rows) != len(b.Tables[i].Rows) {
			t.Fatalf("%s: %d rows after the second attempt, want %d", tr.Table, len(tr.Rows), len(b.Tables[i].Rows))
		}
	}
	want, _ := domicile.DigestBatch(f.ds, subjects, b)
	have, err := f.s.DigestSubjects(ctx, f.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subjects {
		if !have[s].Equal(want[s]) {
			t.Errorf("digest of %s after rewrite differs from the batch's", s)
		}
	}
	// A row outside the subjects is refused.
	err = f.s.WriteSubjects(ctx, f.ds, subjects[:1], sample(subjects[:2], 1))
	wantError(t, "write of a row of a subject outside the batch", err, domicile.CodeInvalid, nil)
	// An empty batch clears the subjects.
	if err := f.s.WriteSubjects(ctx, f.ds, subjects[2:], &domicile.Batch{}); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.s.CountRows(ctx, f.ds, "s3"); n["orders"]+n["items"]+n["profiles"] != 0 {
		t.Fatalf("s3 has rows %v after an empty write", n)
	}
}

func testWriteSubjectsConflict(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionB, domicile.InstallOptions{})
	f.own(t, "holder")
	// holder owns order 10 (sample's key for index 1).
	if err := f.s.WriteSubjects(ctx, f.ds, []string{"holder"}, sample([]string{"holder"}, 1)); err != nil {
		t.Fatal(err)
	}
	newcomers := []string{"n0", "n1"}
	// Leftovers of n1 from an earlier attempt, under keys of their own.
	if err := f.s.WriteSubjects(ctx, f.ds, newcomers[1:], sample(newcomers[1:], 50)); err != nil {
		t.Fatal(err)
	}
	// n0 would get keys 10, 11: held by holder.
	err := f.s.WriteSubjects(ctx, f.ds, newcomers, sample(newcomers, 1))
	wantError(t, "write of keys held by another subject", err, domicile.CodeConflict, nil)
	// Nothing written, nothing deleted.
	if n, _ := f.s.CountRows(ctx, f.ds, "n0"); n["orders"] != 0 || n["profiles"] != 0 {
		t.Fatalf("n0 has rows %v after a failed write", n)
	}
	if n, _ := f.s.CountRows(ctx, f.ds, "n1"); n["orders"] != 2 || n["profiles"] != 1 {
		t.Fatalf("n1's earlier rows %v changed by a failed write", n)
	}
	if n, _ := f.s.CountRows(ctx, f.ds, "holder"); n["orders"] != 2 || n["items"] != 3 {
		t.Fatalf("holder's rows %v changed by a failed write", n)
	}
}

func testDigest(t *testing.T, h Harness) {
	ctx := context.Background()
	a := h.setup(t, regionA, domicile.InstallOptions{})
	b := h.setup(t, regionB, domicile.InstallOptions{})
	subjects := []string{"d1", "d2", "d3", "d-none"}
	a.own(t, subjects...)
	if err := a.s.WriteSubjects(ctx, a.ds, subjects, sample(subjects[:3], 1)); err != nil {
		t.Fatal(err)
	}
	copied, err := a.s.ReadSubjects(ctx, a.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	if copied.Rows() != 3*(1+2+3) {
		t.Fatalf("read %d rows, want %d", copied.Rows(), 3*(1+2+3))
	}
	if err := b.s.WriteSubjects(ctx, b.ds, subjects, copied); err != nil {
		t.Fatal(err)
	}
	da, err := a.s.DigestSubjects(ctx, a.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.s.DigestSubjects(ctx, b.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subjects {
		if !da[s].Equal(db[s]) {
			t.Errorf("digest of %s differs after a copy", s)
		}
		if !reflect.DeepEqual(da[s].Rows, db[s].Rows) {
			t.Errorf("row counts of %s differ: %v and %v", s, da[s].Rows, db[s].Rows)
		}
	}
	if da["d1"].Rows["items"] != 3 || da["d-none"].Rows["orders"] != 0 {
		t.Fatalf("row counts %v, %v", da["d1"].Rows, da["d-none"].Rows)
	}
	// One changed value changes the digest of its subject only.
	b.own(t, "d2")
	if err := b.s.PutRow(ctx, b.table("orders"), "d2", []string{"order_id", "user_id", "total", "note"}, []any{int64(20), "d2", 20.5, "order 20!"}); err != nil {
		t.Fatal(err)
	}
	db, _ = b.s.DigestSubjects(ctx, b.ds, subjects)
	if da["d2"].Equal(db["d2"]) {
		t.Error("digest of d2 unchanged after a value changed")
	}
	if !da["d1"].Equal(db["d1"]) {
		t.Error("digest of d1 changed after a value of d2 changed")
	}
	// A value of another type: the digests differ exactly when the values
	// read back differ (an engine may convert it to the column's type).
	for _, v := range []any{int64(1), "1"} {
		if err := b.s.PutRow(ctx, b.table("orders"), "d2", []string{"order_id", "user_id", "note"}, []any{int64(20), "d2", v}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.s.PutRow(ctx, a.table("orders"), "d2", []string{"order_id", "user_id", "total", "note"}, []any{int64(20), "d2", 20.5, int64(1)}); err != nil {
		t.Fatal(err)
	}
	ra, _ := a.s.FindRows(ctx, a.table("orders"), "d2", domicile.RowQuery{})
	rb, _ := b.s.FindRows(ctx, b.table("orders"), "d2", domicile.RowQuery{})
	da, _ = a.s.DigestSubjects(ctx, a.ds, subjects)
	db, _ = b.s.DigestSubjects(ctx, b.ds, subjects)
	if same := reflect.DeepEqual(ra, rb); same != da["d2"].Equal(db["d2"]) {
		t.Errorf("rows %v and %v equal: %v; digests equal: %v", ra, rb, same, !same)
	}
}

func testPurge(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	f.owners(t)
	subjects := []string{owned, fenced, moved, "keep"}
	f.own(t, "keep")
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, sample(subjects, 1)); err != nil {
		t.Fatal(err)
	}
	n, err := f.s.PurgeSubjects(ctx, f.ds, []string{fenced, moved, "absent"})
	if err != nil {
		t.Fatalf("purge of fenced and moved subjects: %v", err)
	}
	if n != 2*6 {
		t.Fatalf("purged %d rows, want %d", n, 2*6)
	}
	if n, _ := f.s.PurgeSubjects(ctx, f.ds, []string{fenced}); n != 0 {
		t.Fatalf("purge again deleted %d rows", n)
	}
	for _, s := range []string{fenced, moved} {
		if c, _ := f.s.CountRows(ctx, f.ds, s); c["profiles"]+c["orders"]+c["items"] != 0 {
			t.Fatalf("%s has rows %v after purge", s, c)
		}
	}
	if c, _ := f.s.CountRows(ctx, f.ds, "keep"); c["profiles"]+c["orders"]+c["items"] != 6 {
		t.Fatalf("keep has rows %v after the others' purge", c)
	}
	// The purge left the triggers in force.
	err = h.Exec(t, f.s, `INSERT INTO orders (order_id, user_id) VALUES (?, ?)`, 999, fenced)
	wantRefusal(t, err, domicile.ErrFenced)
}

func testCountDiscover(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{AcceptUnknown: true})
	subjects := []string{"c1", "c2"}
	if err := f.s.WriteSubjects(ctx, f.ds, subjects, sample(subjects, 1)); err != nil {
		t.Fatal(err)
	}
	n, err := f.s.CountRows(ctx, f.ds, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"profiles": 1, "orders": 2, "items": 3}; !reflect.DeepEqual(n, want) {
		t.Fatalf("CountRows = %v, want %v", n, want)
	}
	got := map[string]string{}
	err = f.s.Discover(ctx, `SELECT user_id, CASE WHEN age = 1 THEN 'CN' ELSE 'BR' END FROM profiles`, func(id, country string) error {
		got[id] = country
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"c1": "CN", "c2": "BR"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Discover = %v, want %v", got, want)
	}
	err = f.s.Discover(ctx, `SELECT user_id FROM profiles`, func(string, string) error { return nil })
	wantError(t, "discover of one column", err, domicile.CodeInvalid, nil)
}

func testRoundTrip(t *testing.T, h Harness) {
	ctx := context.Background()
	a := h.setup(t, regionA, domicile.InstallOptions{})
	b := h.setup(t, regionB, domicile.InstallOptions{})
	subjects := []string{"rt-1", "rt-2", "rt-ü"}
	a.own(t, subjects...)
	profiles := []string{"user_id", "name", "age", "score", "avatar", "born"}
	values := [][]any{
		{"rt-1", "Zoë 🚀 ẞ ئ", int64(math.MaxInt64), 0.1, []byte{0, 1, 2, 254, 255}, "2024-02-29 12:34:56"},
		{"rt-2", "", int64(math.MinInt64), 1e300, []byte{}, "2024-02-29T12:34:56.123456789Z"},
		{"rt-ü", nil, nil, nil, nil, nil},
	}
	for _, row := range values {
		if err := a.s.PutRow(ctx, a.table("profiles"), row[0].(string), profiles, row); err != nil {
			t.Fatalf("put %v: %v", row, err)
		}
	}
	orders := []string{"order_id", "user_id", "total", "note"}
	for i, id := range []int64{math.MaxInt64, math.MinInt64 + 1, 0} {
		if err := a.s.PutRow(ctx, a.table("orders"), subjects[i], orders, []any{id, subjects[i], -2.5e-300, strings.Repeat("x", 70000)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, row := range values {
		got, err := a.s.FindRows(ctx, a.table("profiles"), subjects[i], domicile.RowQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0], row) {
			t.Errorf("row read back = %#v\nwant %#v", got, row)
		}
	}
	batch, err := a.s.ReadSubjects(ctx, a.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.s.WriteSubjects(ctx, b.ds, subjects, batch); err != nil {
		t.Fatal(err)
	}
	again, err := b.s.ReadSubjects(ctx, b.ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	for i := range batch.Tables {
		x, y := batch.Tables[i], again.Tables[i]
		sortRows(x.Rows)
		sortRows(y.Rows)
		if !reflect.DeepEqual(x, y) {
			t.Errorf("%s differs after a copy:\n%#v\n%#v", x.Table, x.Rows, y.Rows)
		}
	}
	da, _ := a.s.DigestSubjects(ctx, a.ds, subjects)
	db, _ := b.s.DigestSubjects(ctx, b.ds, subjects)
	for _, s := range subjects {
		if !da[s].Equal(db[s]) {
			t.Errorf("digest of %s differs after a copy", s)
		}
	}
}

func sortRows(rows [][]any) {
	slices.SortFunc(rows, func(x, y []any) int { return strings.Compare(fmt.Sprint(x...), fmt.Sprint(y...)) })
}

// testConcurrentFence hammers a subject with plain-SQL writers while a fence
// is set: every write acknowledged is kept, none that began after the fence
// committed succeeds, and every refusal is the fence's.
func testConcurrentFence(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	const subject = "hot"
	f.own(t, subject)
	const writers = 4
	var (
		fenceDone atomic.Bool
		started   atomic.Int64
		mu        sync.Mutex
		acked     = map[int64]bool{}
		failures  []string
	)
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			refused := 0
			for i := int64(0); time.Now().Before(deadline); i++ {
				id := int64(g)*1_000_000 + i
				after := fenceDone.Load()
				err := h.Exec(t, f.s, `INSERT INTO orders (order_id, user_id, total) VALUES (?, ?, ?)`, id, subject, 1.0)
				started.Add(1)
				mu.Lock()
				switch {
				case err == nil && after:
					failures = append(failures, fmt.Sprintf("write %d began after the fence committed and succeeded", id))
				case err == nil:
					acked[id] = true
				case !strings.Contains(err.Error(), domicile.ErrFenced.Error()):
					failures = append(failures, fmt.Sprintf("write %d: %v", id, err))
				}
				mu.Unlock()
				if err != nil && after {
					if refused++; refused >= 20 {
						return
					}
				}
			}
		})
	}
	for started.Load() < 50 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	err := f.s.SetOwnership(ctx, []domicile.Ownership{{Subject: subject, Dataset: Dataset, State: domicile.Fenced, Epoch: 1, MoveID: "m"}})
	fenceDone.Store(true)
	if err != nil {
		t.Fatalf("fence: %v", err)
	}
	wg.Wait()
	for _, msg := range failures {
		t.Error(msg)
	}
	if len(acked) == 0 {
		t.Fatal("no write succeeded before the fence")
	}
	// Reads continue during the fence; the rows are exactly the
	// acknowledged writes.
	b, err := f.s.ReadSubjects(ctx, f.ds, []string{subject})
	if err != nil {
		t.Fatal(err)
	}
	var orders domicile.TableRows
	for _, tr := range b.Tables {
		if tr.Table == "orders" {
			orders = tr
		}
	}
	have := map[int64]bool{}
	for _, r := range orders.Rows {
		have[r[0].(int64)] = true
	}
	for id := range acked {
		if !have[id] {
			t.Errorf("acknowledged write %d is missing", id)
		}
	}
	for id := range have {
		if !acked[id] {
			t.Errorf("row %d is present but its write was not acknowledged", id)
		}
	}
	t.Logf("%d writes acknowledged before the fence", len(acked))
}

// transitioner is the part of a store that moves ownership rows through the
// move protocol's states.
type transitioner interface {
	Transition(ctx context.Context, t domicile.Transition) error
}

// transitionStore sets up a store for a test of Transition, which it
// skips where the store has none.
func transitionStore(t *testing.T, h Harness) (*fixture, transitioner) {
	t.Helper()
	f := h.setup(t, regionA, domicile.InstallOptions{})
	ts, ok := f.s.(transitioner)
	if !ok {
		t.Skip("the store has no Transition method")
	}
	return f, ts
}

func testTransition(t *testing.T, h Harness) {
	ctx := context.Background()
	f, ts := transitionStore(t, h)
	state := func(s string) string {
		t.Helper()
		o, err := f.s.FindOwnership(ctx, Dataset, s)
		if errors.Is(err, domicile.ErrNotFound) {
			return "none"
		}
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s/%s/%s/%d", o.State, o.MoveID, o.Region, o.Epoch)
	}
	run := func(tr domicile.Transition) error {
		t.Helper()
		tr.Dataset = Dataset
		if tr.MoveID == "" {
			tr.MoveID = "m1"
		}
		return ts.Transition(ctx, tr)
	}
	// Prepare: no row (or a tombstone) becomes incoming, twice alike.
	if err := f.s.SetOwnership(ctx, []domicile.Ownership{{Subject: "t2", Dataset: Dataset, State: domicile.Moved, Region: regionA, Epoch: 3, MoveID: "m0"}}); err != nil {
		t.Fatal(err)
	}
	prepare := domicile.Transition{Subjects: []string{"t1", "t2"}, From: []domicile.OwnerState{"", domicile.Moved}, To: domicile.Incoming,
		Region: regionB, Epochs: map[string]int64{"t1": 1, "t2": 4}}
	for range 2 {
		if err := run(prepare); err != nil {
			t.Fatalf("prepare: %v", err)
		}
	}
	if got := state("t1") + " " + state("t2"); got != "incoming/m1/ap-singapore/1 incoming/m1/ap-singapore/4" {
		t.Fatalf("after prepare: %s", got)
	}
	// Activate, then a stale prepare of the same move fails and changes
	// nothing.
	if err := run(domicile.Transition{Subjects: []string{"t1", "t2"}, From: []domicile.OwnerState{domicile.Incoming}, Own: true, To: domicile.Owned, Region: regionB}); err != nil {
		t.Fatalf("activate: %v", err)
	}
	if got := state("t1"); got != "owned/m1/ap-singapore/1" {
		t.Fatalf("after activate: %s", got)
	}
	f.own(t, "t3")
	err := run(domicile.Transition{Subjects: []string{"t3", "t1"}, From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced})
	wantError(t, "fence of a subject the move gave back", err, domicile.CodeConflict, domicile.ErrPrecondition)
	if got := state("t3"); got != "owned///1" {
		t.Fatalf("a failed transition changed t3: %s", got)
	}
	// Lenient skips what it may not change.
	if err := run(domicile.Transition{Subjects: []string{"t3", "t1"}, From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced, Lenient: true}); err != nil {
		t.Fatalf("lenient fence: %v", err)
	}
	if got := state("t3") + " " + state("t1"); got != "fenced/m1//1 owned/m1/ap-singapore/1" {
		t.Fatalf("after a lenient fence: %s", got)
	}
	// Another move cannot tombstone what m1 fenced.
	err = run(domicile.Transition{MoveID: "m2", Subjects: []string{"t3"}, From: []domicile.OwnerState{domicile.Fenced}, Own: true, To: domicile.Moved})
	wantError(t, "tombstone by another move", err, domicile.CodeConflict, domicile.ErrPrecondition)
	if err := run(domicile.Transition{Subjects: []string{"t3"}, From: []domicile.OwnerState{domicile.Fenced}, Own: true, To: domicile.Moved,
		Region: movedRegion, Epochs: map[string]int64{"t3": 2}}); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
	if got := state("t3"); got != "moved/m1/us-east/2" {
		t.Fatalf("after tombstone: %s", got)
	}
}

// testTransitionAgainstWrites runs random transitions over random ownership
// rows and checks each store's against domicile.Transition.Writes, which
// defines them: the rows written, or a precondition error and nothing
// changed. A store may take a shorter path when every subject meets the
// precondition (PostgreSQL's single UPDATE); the mixes here take it, miss
// it by one subject, or leave it for the read.
func testTransitionAgainstWrites(t *testing.T, h Harness) {
	ctx := context.Background()
	f, ts := transitionStore(t, h)
	rng := rand.New(rand.NewPCG(7, uint64(len(t.Name()))))
	subjects := []string{"w0", "w1", "w2", "w3", "w4"}
	states := []domicile.OwnerState{"", domicile.Owned, domicile.Incoming, domicile.Fenced, domicile.Moved}
	moves := []string{"", "m1", "m2"}
	pick := func(n int) int { return rng.IntN(n) }
	read := func() map[string]domicile.Ownership {
		t.Helper()
		have := map[string]domicile.Ownership{}
		err := f.s.ListOwnership(ctx, Dataset, func(o domicile.Ownership) error {
			have[o.Subject] = o
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return have
	}
	for i := range 150 {
		// The rows: all alike (so that a transition may meet its
		// precondition for every subject), or each its own.
		if err := f.s.DeleteOwnership(ctx, Dataset, subjects); err != nil {
			t.Fatal(err)
		}
		alike := pick(2) == 0
		var rows []domicile.Ownership
		base := domicile.Ownership{Dataset: Dataset, State: states[1+pick(4)], MoveID: moves[pick(3)], Epoch: int64(1 + pick(3)), Region: regionB}
		for _, id := range subjects {
			o := base
			if !alike || pick(8) == 0 {
				o = domicile.Ownership{Dataset: Dataset, State: states[pick(5)], MoveID: moves[pick(3)], Epoch: int64(1 + pick(3))}
			}
			o.Subject = id
			if o.State != "" {
				rows = append(rows, o)
			}
		}
		if err := f.s.SetOwnership(ctx, rows); err != nil {
			t.Fatal(err)
		}
		before := read()
		tr := domicile.Transition{
			Dataset: Dataset, MoveID: moves[1+pick(2)], To: states[1+pick(4)], Region: []string{"", movedRegion}[pick(2)],
			Own: pick(2) == 0, Lenient: pick(3) == 0, SkipLater: pick(3) == 0,
			From: []domicile.OwnerState{base.State},
		}
		if pick(3) == 0 {
			tr.From = append(tr.From, states[pick(5)])
		}
		if pick(4) == 0 {
			tr.Own = base.MoveID == tr.MoveID
		}
		tr.Subjects = append(tr.Subjects, subjects[:2+pick(4)]...)
		if pick(5) == 0 {
			tr.Subjects = append(tr.Subjects, tr.Subjects[0]) // named twice
		}
		if pick(2) == 0 {
			tr.Epochs = map[string]int64{}
			for _, id := range tr.Subjects {
				if pick(4) > 0 {
					tr.Epochs[id] = int64(1 + pick(4))
				}
			}
		}
		if pick(2) == 0 {
			tr.MaxEpoch = map[string]int64{}
			for _, id := range tr.Subjects {
				if pick(4) > 0 {
					tr.MaxEpoch[id] = int64(1 + pick(3))
				}
			}
		}
		want := maps.Clone(before)
		writes, werr := tr.Writes(before)
		if werr == nil {
			for _, w := range writes {
				want[w.Subject] = w
			}
		}
		err := ts.Transition(ctx, tr)
		if werr != nil {
			if !errors.Is(err, domicile.ErrPrecondition) {
				t.Fatalf("%d: %+v over %+v: err %v, want the precondition's (%v)", i, tr, before, err, werr)
			}
		} else if err != nil {
			t.Fatalf("%d: %+v over %+v: %v", i, tr, before, err)
		}
		if got := read(); !maps.Equal(got, want) {
			t.Fatalf("%d: %+v over %+v:\n got  %+v\n want %+v", i, tr, before, got, want)
		}
	}
}
