package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/storetest"
)

// harness opens stores in t.TempDir() and runs plain SQL on a pool of its
// own per store, as an application bypassing domicile would.
type harness struct {
	mu    sync.Mutex
	paths map[domicile.Store]string
	apps  map[domicile.Store]*sql.DB
}

func newHarness() *harness {
	return &harness{paths: map[domicile.Store]string{}, apps: map[domicile.Store]*sql.DB{}}
}

func (h *harness) open(t *testing.T, region string) domicile.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), region+".db")
	s, err := OpenStore(path, region)
	if err != nil {
		t.Fatal(err)
	}
	app, err := openDB(path)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.paths[s], h.apps[s] = path, app
	h.mu.Unlock()
	t.Cleanup(func() {
		h.mu.Lock()
		delete(h.paths, s)
		delete(h.apps, s)
		h.mu.Unlock()
		app.Close()
	})
	return s
}

func (h *harness) exec(t *testing.T, s domicile.Store, query string, args ...any) error {
	h.mu.Lock()
	app := h.apps[s]
	h.mu.Unlock()
	if app == nil {
		return errors.New("harness: store not opened by the harness")
	}
	_, err := app.ExecContext(context.Background(), query, args...)
	return err
}

func (h *harness) Harness() storetest.Harness {
	return storetest.Harness{Open: h.open, Exec: h.exec, Replace: true}
}

func TestStore(t *testing.T) {
	storetest.Run(t, newHarness().Harness())
}

// testStore opens a store with the suite's kind of tables: one table t with
// a BLOB-declared column, which keeps every value's type as given.
func testStore(t *testing.T, region string, ddl ...string) (*Store, *domicile.Dataset, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), region+".db")
	s, err := OpenStore(path, region)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if ddl == nil {
		ddl = []string{`CREATE TABLE t (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, v BLOB, at DATETIME, d DATE, ts TIMESTAMP)`}
	}
	ctx := context.Background()
	for _, q := range ddl {
		if _, err := s.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := s.DescribeTable(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	tb.SubjectColumn = "user_id"
	ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{tb}}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	return s, ds, path
}

// TestValueTypes checks that values keep their SQLite storage class through
// a copy, and that the digest tells 1 from "1" in a column without affinity,
// and that DATE, DATETIME and TIMESTAMP columns come back as stored, not as
// time.Time.
func TestValueTypes(t *testing.T) {
	ctx := context.Background()
	a, ds, _ := testStore(t, "a")
	b, _, _ := testStore(t, "b")
	for _, s := range []*Store{a, b} {
		if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u", Dataset: "ds", State: domicile.Owned}}); err != nil {
			t.Fatal(err)
		}
	}
	cols := []string{"id", "user_id", "v", "at", "d", "ts"}
	rows := [][]any{
		{int64(1), "u", int64(1), "2024-01-02 03:04:05", "2024-01-02", "2024-01-02T03:04:05.5+02:00"},
		{int64(2), "u", "1", int64(1700000000), int64(1700000000000), 1.5},
		{int64(3), "u", 1.0, "not a time", []byte("2024-01-02"), nil},
		{int64(4), "u", []byte{}, "", []byte{0}, "2006-01-02 15:04:05.999999999 -0700 MST"},
	}
	for _, r := range rows {
		if err := a.PutRow(ctx, ds.Tables[0], "u", cols, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.FindRows(ctx, ds.Tables[0], "u", domicile.RowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		for j := range cols {
			if !valueEqual(got[i][j], rows[i][j]) {
				t.Errorf("row %d %s = %#v (%T), want %#v (%T)", i, cols[j], got[i][j], got[i][j], rows[i][j], rows[i][j])
			}
		}
	}
	batch, err := a.ReadSubjects(ctx, ds, []string{"u"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteSubjects(ctx, ds, []string{"u"}, batch); err != nil {
		t.Fatal(err)
	}
	// The storage classes at b are those at a.
	typesOf := func(s *Store) string {
		var out []string
		rs, err := s.DB().QueryContext(ctx, `SELECT typeof(v)||typeof(at)||typeof(d)||typeof(ts) FROM t ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		for rs.Next() {
			var x string
			rs.Scan(&x)
			out = append(out, x)
		}
		return strings.Join(out, ",")
	}
	if ta, tb := typesOf(a), typesOf(b); ta != tb {
		t.Fatalf("storage classes at a %s, at b %s", ta, tb)
	}
	da, _ := a.DigestSubjects(ctx, ds, []string{"u"})
	db, _ := b.DigestSubjects(ctx, ds, []string{"u"})
	if !da["u"].Equal(db["u"]) {
		t.Fatal("digests differ after a copy")
	}
	// 1 and "1" differ.
	if err := b.PutRow(ctx, ds.Tables[0], "u", []string{"id", "user_id", "v"}, []any{int64(1), "u", "1"}); err != nil {
		t.Fatal(err)
	}
	db, _ = b.DigestSubjects(ctx, ds, []string{"u"})
	if da["u"].Equal(db["u"]) {
		t.Fatal(`digests equal after 1 became "1"`)
	}
}

func valueEqual(a, b any) bool {
	if x, ok := a.([]byte); ok {
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	}
	return a == b
}

// TestTriggersSQLite340 opens an installed store with Debian 12's sqlite3
// (3.40), which must read the trigger SQL, and checks that a write of a
// fenced subject through it fails with the fixed message.
func TestTriggersSQLite340(t *testing.T) {
	const cli = "/usr/bin/sqlite3"
	if _, err := os.Stat(cli); err != nil {
		t.Skipf("%s is not installed (Debian 12's sqlite3 package provides SQLite 3.40): %v", cli, err)
	}
	ctx := context.Background()
	s, _, path := testStore(t, "a")
	err := s.SetOwnership(ctx, []domicile.Ownership{
		{Subject: "f", Dataset: "ds", State: domicile.Fenced},
		{Subject: "o", Dataset: "ds", State: domicile.Owned},
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(q string) (string, error) {
		out, err := exec.Command(cli, "-bail", path, q).CombinedOutput()
		return string(out), err
	}
	if out, err := run(`SELECT sqlite_version(); SELECT count(*) FROM sqlite_schema WHERE type = 'trigger';`); err != nil {
		t.Fatalf("sqlite3: %v: %s", err, out)
	} else {
		t.Logf("sqlite3 CLI: %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", ", triggers: "))
	}
	if out, err := run(`INSERT INTO t (id, user_id) VALUES (1, 'o');`); err != nil {
		t.Fatalf("write of an owned subject through the CLI: %v: %s", err, out)
	}
	for _, q := range []string{
		`INSERT INTO t (id, user_id) VALUES (2, 'f');`,
		`UPDATE t SET user_id = 'f' WHERE id = 1;`,
	} {
		out, err := run(q)
		if err == nil || !strings.Contains(out, domicile.ErrFenced.Error()) {
			t.Errorf("%s through the CLI: %v: %q; want %q", q, err, out, domicile.ErrFenced)
		}
	}
	if out, err := run(`INSERT INTO t (id, user_id) VALUES (3, 'nobody');`); err == nil || !strings.Contains(out, domicile.ErrUnknown.Error()) {
		t.Errorf("write of an unknown subject through the CLI: %v: %q", err, out)
	}
}

// TestDescribeTable checks primary keys in key order and the refusal of a
// table without one.
func TestDescribeTable(t *testing.T) {
	ctx := context.Background()
	s, _, _ := testStore(t, "a",
		`CREATE TABLE t (user_id TEXT NOT NULL, b INTEGER NOT NULL, a TEXT, PRIMARY KEY (a, b))`,
		`CREATE TABLE nokey (user_id TEXT)`)
	tb, err := s.DescribeTable(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tb.PrimaryKey, ","); got != "a,b" {
		t.Fatalf("primary key %s, want a,b", got)
	}
	if !tb.Columns[1].NotNull || tb.Columns[2].NotNull || tb.Columns[1].Type != "INTEGER" {
		t.Fatalf("columns %+v", tb.Columns)
	}
	if _, err := s.DescribeTable(ctx, "nokey"); domicile.ErrorCode(err) != domicile.CodeInvalid {
		t.Fatalf("describe a table without a primary key: %v", err)
	}
	if _, err := s.DescribeTable(ctx, "missing"); !errors.Is(err, domicile.ErrNotFound) {
		t.Fatalf("describe a missing table: %v", err)
	}
}

func TestRetargetIndex(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`CREATE INDEX items_sku ON items (sku)`, `CREATE INDEX IF NOT EXISTS items_sku ON items (sku)`},
		{`CREATE UNIQUE INDEX x ON public.items USING btree (a, b)`, `CREATE UNIQUE INDEX IF NOT EXISTS x ON items (a, b)`},
		{`create index if not exists "x" on "t"("a")`, `CREATE INDEX IF NOT EXISTS "x" ON "t"("a")`},
	} {
		if got := retargetIndex(c.in); got != c.want {
			t.Errorf("retargetIndex(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
