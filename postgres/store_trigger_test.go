package postgres

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// triggerStore opens a store with one installed table t of dataset ds and
// subjects in every state, and a pool of its own for plain SQL.
func triggerStore(t *testing.T, ddl string) (*Store, *domicile.Dataset, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	s, url := openTestStore(t, "us-east")
	t.Cleanup(func() { s.Close() })
	if ddl == "" {
		ddl = `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text)`
	}
	if _, err := s.Pool().Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	ds := tableDataset(t, s, "t")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwnership(ctx, []domicile.Ownership{
		{Subject: "o", Dataset: "ds", State: domicile.Owned},
		{Subject: "f", Dataset: "ds", State: domicile.Fenced, MoveID: "m"},
		{Subject: "i", Dataset: "ds", State: domicile.Incoming, MoveID: "m"},
		{Subject: "m", Dataset: "ds", State: domicile.Moved, Region: "ap-singapore", Epoch: 3, MoveID: "m"},
	}); err != nil {
		t.Fatal(err)
	}
	app, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close(context.Background()) })
	return s, ds, app
}

// TestRefusalSQLSTATE checks that each refusal carries domicile's SQLSTATE
// and exactly the fixed message of its sentinel, and that the store maps
// them back.
func TestRefusalSQLSTATE(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	for _, c := range []struct {
		subject, code string
		sentinel      error
	}{
		{"f", "DM001", domicile.ErrFenced},
		{"i", "DM002", domicile.ErrIncoming},
		{"m", "DM003", domicile.ErrMoved},
		{"nobody", "DM004", domicile.ErrUnknown},
	} {
		_, err := app.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (1, $1)`, c.subject)
		e, ok := errors.AsType[*pgconn.PgError](err)
		if !ok || e.Code != c.code || e.Message != c.sentinel.Error() {
			t.Errorf("insert for %s: %v; want SQLSTATE %s with message %q", c.subject, err, c.code, c.sentinel)
		}
		if r := refusal(err); r != c.sentinel {
			t.Errorf("refusal(%v) = %v, want %v", err, r, c.sentinel)
		}
		err = s.PutRow(ctx, ds.Tables[0], c.subject, []string{"id", "user_id"}, []any{int64(1), c.subject})
		if !errors.Is(err, c.sentinel) {
			t.Errorf("PutRow for %s: %v; want %v", c.subject, err, c.sentinel)
		}
	}
	err := s.PutRow(ctx, ds.Tables[0], "m", []string{"id", "user_id"}, []any{int64(1), "m"})
	if e, ok := errors.AsType[*domicile.Error](err); !ok || e.Region != "ap-singapore" || e.Epoch != 3 {
		t.Errorf("PutRow of a moved subject: %#v; want the tombstone's region and epoch", err)
	}
}

// TestFenceWaitsForWriters checks that a fence waits for a write in flight
// (the trigger's FOR SHARE lock on the ownership row), and that the writer
// that held it is kept while a write after the fence is refused.
func TestFenceWaitsForWriters(t *testing.T) {
	ctx := context.Background()
	s, _, app := triggerStore(t, "")
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (1, 'o')`); err != nil {
		t.Fatal(err)
	}
	fenced := make(chan error, 1)
	go func() {
		fenced <- s.SetOwnership(ctx, []domicile.Ownership{{Subject: "o", Dataset: "ds", State: domicile.Fenced, MoveID: "m2"}})
	}()
	// Wait until the fence's backend waits for a lock held by the writer.
	var blocked bool
	for range 3000 {
		err := app.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity a, unnest(pg_blocking_pids(a.pid)) AS b(pid)
			WHERE a.datname = current_database() AND b.pid = pg_backend_pid())`).Scan(&blocked)
		if err != nil {
			t.Fatal(err)
		}
		if blocked {
			break
		}
		select {
		case err := <-fenced:
			t.Fatalf("the fence finished (%v) while a write of the subject was in flight", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !blocked {
		t.Fatal("the fence never waited for the writer's transaction")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit of the write in flight: %v", err)
	}
	if err := <-fenced; err != nil {
		t.Fatalf("fence: %v", err)
	}
	var n int
	if err := app.QueryRow(ctx, `SELECT count(*) FROM t WHERE id = 1`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the write in flight: %d rows, %v", n, err)
	}
	_, err = app.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (2, 'o')`)
	if pgCode(err) != stateFenced {
		t.Fatalf("write after the fence: %v; want SQLSTATE %s", err, stateFenced)
	}
}

// TestBypassIsLocal checks that the bypass lets only its own transaction
// through, and nothing after it on the same connection.
func TestBypassIsLocal(t *testing.T) {
	ctx := context.Background()
	_, _, app := triggerStore(t, "")
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('domicile.bypass', pg_current_xact_id()::text, true)`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (1, 'f')`); err != nil {
		t.Fatalf("write of a fenced subject under the bypass: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`INSERT INTO t (id, user_id) VALUES (2, 'f')`, `DELETE FROM t WHERE id = 1`, `UPDATE t SET v = 'x' WHERE id = 1`} {
		if _, err := app.Exec(ctx, q); pgCode(err) != stateFenced {
			t.Errorf("%s on the connection after the bypass ended: %v; want SQLSTATE %s", q, err, stateFenced)
		}
	}
}

// TestSessionBypassRefused checks that a bypass set for the whole session,
// as a careless script or a pooled connection might carry it, lets nothing
// through: the setting must name the writing transaction.
func TestSessionBypassRefused(t *testing.T) {
	ctx := context.Background()
	_, _, app := triggerStore(t, "")
	// A row of the fenced subject, written as the mover writes.
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('domicile.bypass', pg_current_xact_id()::text, true)`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (1, 'f')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, set := range []string{`SET domicile.bypass = 'on'`, `SELECT set_config('domicile.bypass', pg_current_xact_id()::text, false)`} {
		if _, err := app.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`INSERT INTO t (id, user_id) VALUES (3, 'f')`, `UPDATE t SET v = 'x' WHERE id = 1`, `DELETE FROM t WHERE id = 1`} {
			if _, err := app.Exec(ctx, q); pgCode(err) != stateFenced {
				t.Errorf("%s after %s: %v; want SQLSTATE %s", q, set, err, stateFenced)
			}
		}
	}
}

// TestCheckInstallFindsTampering checks that CheckInstall reports a
// replaced trigger function and a disabled trigger, and that Install
// repairs both.
func TestCheckInstallFindsTampering(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	dss := []*domicile.Dataset{ds}
	for _, c := range []struct{ tamper, want string }{
		{`CREATE OR REPLACE FUNCTION domicile_t_guard() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN RETURN NEW; END $$`, "trigger function of t is out of date"},
		{`ALTER TABLE t DISABLE TRIGGER domicile_t_upd`, "trigger domicile_t_upd on t is disabled"},
		{`ALTER TABLE t ENABLE REPLICA TRIGGER domicile_t_del`, "trigger domicile_t_del on t is disabled"},
		{`DROP FUNCTION domicile_refuse(text, text, text) CASCADE`, "domicile_refuse(text, text, text) is missing"},
	} {
		if _, err := app.Exec(ctx, c.tamper); err != nil {
			t.Fatal(err)
		}
		problems, err := s.CheckInstall(ctx, dss)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(problems, "\n"), c.want) {
			t.Errorf("after %s: problems %q; want %q", c.tamper, problems, c.want)
		}
		if err := s.Install(ctx, dss, domicile.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		if problems, err := s.CheckInstall(ctx, dss); err != nil || len(problems) > 0 {
			t.Fatalf("after reinstall: %q, %v", problems, err)
		}
		if _, err := app.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (9, 'f')`); pgCode(err) != stateFenced {
			t.Fatalf("after reinstall a write of a fenced subject: %v", err)
		}
	}
}

// TestLongTableName checks a table whose name leaves no room for
// domicile's suffixes within PostgreSQL's 63 bytes.
func TestLongTableName(t *testing.T) {
	ctx := context.Background()
	s, url := openTestStore(t, "us-east")
	defer s.Close()
	long := strings.Repeat("ü", 30) // 60 bytes
	tables := []string{long + "a", long + "b"}
	ds := &domicile.Dataset{Name: "ds"}
	for _, name := range tables {
		if _, err := s.Pool().Exec(ctx, `CREATE TABLE `+quoteIdent(name)+` (id bigint PRIMARY KEY, user_id text)`); err != nil {
			t.Fatal(err)
		}
		ds.Tables = append(ds.Tables, &domicile.Table{Name: name, SubjectColumn: "user_id"})
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) > 0 {
		t.Fatalf("CheckInstall = %q, %v", problems, err)
	}
	app, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	for _, name := range tables {
		if n := guardName(name); len(n) > maxIdent {
			t.Errorf("guard name %q is %d bytes", n, len(n))
		}
		_, err := app.Exec(ctx, `INSERT INTO `+quoteIdent(name)+` (id, user_id) VALUES (1, 'nobody')`)
		if pgCode(err) != stateUnknown {
			t.Errorf("insert into %s: %v; want SQLSTATE %s", name, err, stateUnknown)
		}
	}
}

// TestPostgresTypes checks the values of types SQLite lacks: numeric reads
// as its exact text, a timestamp with time zone as UTC, a boolean as bool,
// and that a copy between PostgreSQL stores keeps them.
func TestPostgresTypes(t *testing.T) {
	ctx := context.Background()
	ddl := `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, amount numeric(30,5), at timestamptz, ok boolean,
		r real, j jsonb, u uuid, iv interval)`
	a, ds, app := triggerStore(t, ddl)
	b, _, _ := triggerStore(t, ddl)
	if _, err := app.Exec(ctx, `SET TIME ZONE 'Asia/Kolkata'`); err != nil {
		t.Fatal(err)
	}
	if err := a.PutRow(ctx, ds.Tables[0], "o", []string{"id", "user_id", "amount", "at", "ok", "r", "j", "u", "iv"},
		[]any{int64(1), "o", "12345678901234567890.12345", "2024-01-02 08:34:05+05:30", true, 0.5, `{"a": [1, 2]}`,
			"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "1 day 02:03:04"}); err != nil {
		t.Fatal(err)
	}
	// A plain writer in another time zone writes the same instant.
	if _, err := app.Exec(ctx, `INSERT INTO t (id, user_id, at, ok) VALUES (2, 'o', '2024-01-02 08:34:05', 1::boolean)`); err != nil {
		t.Fatal(err)
	}
	rows, err := a.FindRows(ctx, ds.Tables[0], "o", domicile.RowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{
		{int64(1), "o", "12345678901234567890.12345", "2024-01-02 03:04:05", true, 0.5, `{"a": [1, 2]}`, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "1 day 02:03:04"},
		{int64(2), "o", nil, "2024-01-02 03:04:05", true, nil, nil, nil, nil},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows = %#v\nwant %#v", rows, want)
	}
	batch, err := a.ReadSubjects(ctx, ds, []string{"o"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteSubjects(ctx, ds, []string{"o"}, batch); err != nil {
		t.Fatal(err)
	}
	da, _ := a.DigestSubjects(ctx, ds, []string{"o"})
	db, _ := b.DigestSubjects(ctx, ds, []string{"o"})
	if !da["o"].Equal(db["o"]) {
		t.Fatal("digests differ after a copy")
	}
	n, bytes, err := a.MeasureSubjects(ctx, ds, []string{"o"})
	if err != nil || n != 2 || bytes != batch.Bytes() {
		t.Fatalf("MeasureSubjects = %d, %d, %v; want 2, %d", n, bytes, err, batch.Bytes())
	}
}

// TestInstallFromSQLiteTemplate creates PostgreSQL tables from a SQLite
// region's description and indexes.
func TestInstallFromSQLiteTemplate(t *testing.T) {
	ctx := context.Background()
	ls, err := sqlite.OpenStore(filepath.Join(t.TempDir(), "a.db"), "cn-beijing")
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	for _, q := range []string{
		`CREATE TABLE t (id INTEGER NOT NULL, line INT NOT NULL, user_id TEXT NOT NULL, name VARCHAR(10), f REAL, b BLOB, at DATETIME, d DATE, x, PRIMARY KEY (id, line))`,
		`CREATE INDEX t_name ON t (name, d)`,
	} {
		if _, err := ls.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tmpl, err := ls.DescribeTable(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ls.Indexes(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := openTestStore(t, "us-east")
	defer s.Close()
	ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{{Name: "t", SubjectColumn: "user_id"}}}
	opts := domicile.InstallOptions{Templates: map[string]*domicile.Table{"t": tmpl}, TemplateIndexes: map[string][]string{"t": idx}}
	for range 2 {
		if err := s.Install(ctx, []*domicile.Dataset{ds}, opts); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DescribeTable(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, c := range got.Columns {
		types = append(types, c.Name+" "+c.Type)
	}
	if want := "id bigint,line bigint,user_id text,name text,f double precision,b bytea,at text,d date,x text"; strings.Join(types, ",") != want {
		t.Errorf("columns %s\nwant %s", strings.Join(types, ","), want)
	}
	if !reflect.DeepEqual(got.PrimaryKey, []string{"id", "line"}) {
		t.Errorf("primary key %q", got.PrimaryKey)
	}
	pidx, err := s.Indexes(ctx, "t")
	if err != nil || len(pidx) != 1 || !strings.Contains(pidx[0], "(name, d)") {
		t.Fatalf("indexes %q, %v; want the one on (name, d)", pidx, err)
	}
	// And back: SQLite creates a table from PostgreSQL's description.
	ds2 := &domicile.Dataset{Name: "ds2", Tables: []*domicile.Table{{Name: "t2", SubjectColumn: "user_id"}}}
	got.Name = "t2"
	pidx[0] = strings.Replace(strings.Replace(pidx[0], "t_name", "t2_name", 1), " ON public.t ", " ON public.t2 ", 1)
	if err := ls.Install(ctx, []*domicile.Dataset{ds2}, domicile.InstallOptions{Templates: map[string]*domicile.Table{"t2": got},
		TemplateIndexes: map[string][]string{"t2": pidx}}); err != nil {
		t.Fatalf("SQLite install from PostgreSQL's description: %v", err)
	}
}

func TestPGType(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"INTEGER", "bigint"}, {"integer", "bigint"}, {"REAL", "double precision"}, {"BLOB", "bytea"},
		{"", "text"}, {"DATETIME", "text"}, {"VARCHAR(20)", "text"}, {"character varying(20)", "character varying(20)"},
		{"numeric(10,2)", "numeric(10,2)"}, {"timestamp(3) with time zone", "timestamp(3) with time zone"},
		{"date", "date"}, {"text[]", "text[]"}, {"x; DROP TABLE t", "text"},
	} {
		if got := pgType(c.in); got != c.want {
			t.Errorf("pgType(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRetargetIndex(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`CREATE INDEX items_sku ON items (sku)`, `CREATE INDEX IF NOT EXISTS items_sku ON items (sku)`},
		{`CREATE UNIQUE INDEX x ON public.items USING btree (a, b)`, `CREATE UNIQUE INDEX IF NOT EXISTS x ON items USING btree (a, b)`},
		{`CREATE INDEX x ON ONLY "my schema".items USING btree (a)`, `CREATE INDEX IF NOT EXISTS x ON ONLY items USING btree (a)`},
		{`create index if not exists "x" on "t"("a")`, `CREATE INDEX IF NOT EXISTS "x" on "t"("a")`},
	} {
		if got := retargetIndex(c.in); got != c.want {
			t.Errorf("retargetIndex(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestAcceptUnknownWriterHoldsTheFence checks the writers a store accepts
// for a subject without an ownership row: a fence made after the subject is
// discovered waits for such a writer still in flight, so that the copy
// after the fence sees its row; and such a writer arriving while a
// transition holds the subject is refused as fenced, without waiting.
func TestAcceptUnknownWriterHoldsTheFence(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	// A writer of u1, unknown here, accepted and still in flight.
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1, 'u1', 'early')`); err != nil {
		t.Fatalf("write of an unknown subject in a store that accepts them: %v", err)
	}
	// Discovery registers u1; a move fences it.
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u1", Dataset: "ds", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	fenced := async(func() error {
		return s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: "m1", Subjects: []string{"u1"},
			From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced})
	})
	stillWaiting(t, fenced) // the fence waits for the writer in flight
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-fenced; err != nil {
		t.Fatal(err)
	}
	b, err := s.ReadSubjects(ctx, ds, []string{"u1"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Rows() != 1 {
		t.Fatalf("after the fence the source holds %d rows of u1, want the early writer's 1", b.Rows())
	}
	var pe *pgconn.PgError
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (2, 'u1', 'late')`); !errors.As(err, &pe) || pe.Code != stateFenced {
		t.Fatalf("write after the fence: %v, want SQLSTATE %s", err, stateFenced)
	}

	// While a transition holds u2 (here: its lock, taken by hand), a writer
	// of u2, still unknown, is refused as fenced at once.
	holder, err := pgx.Connect(ctx, app.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	htx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer htx.Rollback(ctx)
	if _, err := htx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+subjectLock("'ds'", "'u2'")+`)`); err != nil {
		t.Fatal(err)
	}
	// A writer that waited for the lock would fail with lock_timeout's
	// error instead.
	if _, err := app.Exec(ctx, `SET lock_timeout = '5s'`); err != nil {
		t.Fatal(err)
	}
	_, err = app.Exec(ctx, `INSERT INTO t VALUES (3, 'u2', 'during')`)
	if !errors.As(err, &pe) || pe.Code != stateFenced {
		t.Fatalf("write of an unknown subject under a transition: %v, want SQLSTATE %s", err, stateFenced)
	}
	htx.Rollback(ctx)
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (3, 'u2', 'after')`); err != nil {
		t.Fatalf("write of an unknown subject once the transition is over: %v", err)
	}
}

// TestRepeatableReadWriterOfAPointedRow: a writer under REPEATABLE READ
// whose snapshot predates a customer's pointer to an address, made and
// fenced since, does not see that the address is the fenced subject's. It
// must not take the address for no one's: its update is refused.
func TestRepeatableReadWriterOfAPointedRow(t *testing.T) {
	ctx := context.Background()
	s, url := openTestStore(t, "us-east")
	t.Cleanup(func() { s.Close() })
	for _, q := range []string{
		`CREATE TABLE address (address_id bigint PRIMARY KEY, line text)`,
		`CREATE TABLE customer (customer_id bigint PRIMARY KEY, user_id text NOT NULL, address_id bigint REFERENCES address (address_id))`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ds := &domicile.Dataset{Name: "ds"}
	for _, name := range []string{"customer", "address"} {
		tb, err := s.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "address" {
			tb.Via = &domicile.Path{Hops: []domicile.Hop{{Column: "address_id", Table: "customer", Match: "address_id", Reverse: true}}}
		} else {
			tb.SubjectColumn = "user_id"
		}
		ds.Tables = append(ds.Tables, tb)
	}
	if err := ds.ResolvePaths(); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "x", Dataset: "ds", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	app, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	for _, q := range []string{
		`INSERT INTO address VALUES (1, 'old'), (2, 'new')`,
		`INSERT INTO customer VALUES (10, 'x', 1)`,
	} {
		if _, err := app.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// The writer's snapshot: address 2 is no one's.
	rr, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close(ctx)
	tx, err := rr.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM customer WHERE address_id = 2`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("snapshot: %d customers at address 2, %v", n, err)
	}
	// Since: x moves to address 2, and a move fences x.
	if _, err := app.Exec(ctx, `UPDATE customer SET address_id = 2 WHERE customer_id = 10`); err != nil {
		t.Fatal(err)
	}
	if err := s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: "m1", Subjects: []string{"x"},
		From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced}); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `UPDATE address SET line = 'changed' WHERE address_id = 2`)
	if err == nil {
		t.Fatal("a REPEATABLE READ writer changed the address of a fenced subject")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "DM") && pe.Code != "40001" {
		t.Fatalf("refusal: %v, want one of domicile's SQLSTATEs or a serialization failure", err)
	}
}

// TestInstallUpgradesOwnerTable installs over an ownership table as an
// older domicile made it (no capture column, full pages): Install adds
// the column, marks the subjects a capture lists, and leaves room on the
// table's pages.
func TestInstallUpgradesOwnerTable(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestStore(t, "us-east")
	t.Cleanup(func() { s.Close() })
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text);
		CREATE TABLE domicile_owner (subject text NOT NULL, dataset text NOT NULL, state text NOT NULL,
			region text NOT NULL DEFAULT '', epoch bigint NOT NULL DEFAULT 0, move_id text NOT NULL DEFAULT '',
			PRIMARY KEY (subject, dataset));
		INSERT INTO domicile_owner (subject, dataset, state) VALUES ('o', 'ds', 'owned'), ('c', 'ds', 'owned');
		CREATE TABLE domicile_capture (subject text NOT NULL, dataset text NOT NULL, move_id text NOT NULL,
			PRIMARY KEY (subject, dataset, move_id));
		INSERT INTO domicile_capture VALUES ('c', 'ds', 'mv')`); err != nil {
		t.Fatal(err)
	}
	ds := tableDataset(t, s, "t")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	var options []string
	var capture bool
	if err := s.Pool().QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = 'domicile_owner'::regclass`).Scan(&options); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(options, "fillfactor=70") {
		t.Fatalf("domicile_owner's options after install: %v", options)
	}
	if err := s.Pool().QueryRow(ctx, `SELECT capture FROM domicile_owner WHERE subject = 'o'`).Scan(&capture); err != nil || capture {
		t.Fatalf("capture mark of an existing row: %v %v", capture, err)
	}
	// A subject captured before the upgrade is marked.
	if err := s.Pool().QueryRow(ctx, `SELECT capture FROM domicile_owner WHERE subject = 'c'`).Scan(&capture); err != nil || !capture {
		t.Fatalf("capture mark of a subject captured before the upgrade: %v %v", capture, err)
	}
	if _, err := s.Pool().Exec(ctx, `INSERT INTO t VALUES (1, 'o', 'v')`); err != nil {
		t.Fatalf("write after the upgrade: %v", err)
	}
}

// TestInstallAgainLocksNothing installs over a current installation while
// a writer's transaction holds a row of a dataset table and a change it
// recorded for a live copy: the install must
// neither wait for it (dropping and creating triggers would lock the table
// until the writer ends, and every writer after it behind that) nor leave
// it unable to write again; and an installation that was changed (a
// trigger dropped) is repaired.
func TestInstallAgainLocksNothing(t *testing.T) {
	ctx := context.Background()
	// The writer's subject is captured, so that its write also records a
	// change (a lock on domicile_changes).
	s, ds, app := triggerCaptureStore(t)
	startCapture(t, s, ds, "mv", "o")
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1, 'o', 'v')`); err != nil {
		t.Fatal(err)
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Install(ictx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatalf("install while a writer holds a row: %v", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE t SET v = 'w' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `DROP TRIGGER `+quoteIdent(triggerNames("t")[1])+` ON t`); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) != 1 {
		t.Fatalf("check after a trigger was dropped: %v %v", problems, err)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) != 0 {
		t.Fatalf("check after install: %v %v", problems, err)
	}
	// A renamed subject column is a problem of a current installation too,
	// and install says so rather than keep a guard that reads it.
	if _, err := s.Pool().Exec(ctx, `ALTER TABLE t RENAME COLUMN user_id TO uid`); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), `no subject column "user_id"`) {
		t.Fatalf("check after the subject column was renamed: %v %v", problems, err)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err == nil || !strings.Contains(err.Error(), `no subject column "user_id"`) {
		t.Fatalf("install after the subject column was renamed: %v", err)
	}
}

// TestForeignKeysOfPartitions copies into a partitioned table whose
// foreign key is declared on its partitions only (as pg_dump writes
// pagila's payment), listed before the table it points to: the copy must
// still insert the rows pointed to first.
func TestForeignKeysOfPartitions(t *testing.T) {
	ctx := context.Background()
	s, _, _ := triggerStore(t, `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text);
		CREATE TABLE rental (id bigint PRIMARY KEY, user_id text NOT NULL);
		CREATE TABLE pay (id bigint, rental_id bigint NOT NULL, user_id text NOT NULL, PRIMARY KEY (id, user_id)) PARTITION BY LIST (user_id);
		CREATE TABLE pay_i PARTITION OF pay FOR VALUES IN ('i');
		CREATE TABLE pay_rest PARTITION OF pay DEFAULT;
		ALTER TABLE pay_i ADD FOREIGN KEY (rental_id) REFERENCES rental (id);
		ALTER TABLE pay_rest ADD FOREIGN KEY (rental_id) REFERENCES rental (id);
		CREATE TABLE fee (id bigint, rental_id bigint NOT NULL REFERENCES rental (id), user_id text NOT NULL, PRIMARY KEY (id, user_id)) PARTITION BY LIST (user_id);
		CREATE TABLE fee_i PARTITION OF fee FOR VALUES IN ('i')`)
	// A key declared on a partitioned table is the key of its partitions
	// too.
	for _, name := range []string{"fee", "fee_i"} {
		tb, err := s.DescribeTable(ctx, name)
		if err != nil || !slices.Equal(tb.References, []string{"rental"}) {
			t.Fatalf("references of %s: %v %v", name, tb, err)
		}
	}
	var tables []*domicile.Table
	for _, name := range []string{"pay", "rental"} {
		tb, err := s.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = "user_id"
		tables = append(tables, tb)
	}
	if !slices.Equal(tables[0].References, []string{"rental"}) {
		t.Fatalf("references of pay: %v, want [rental]", tables[0].References)
	}
	ds := &domicile.Dataset{Name: "ds", Tables: tables}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &domicile.Batch{MoveID: "m", Tables: []domicile.TableRows{
		{Table: "pay", Columns: []string{"id", "rental_id", "user_id"}, Rows: [][]any{{int64(1), int64(7), "i"}}},
		{Table: "rental", Columns: []string{"id", "user_id"}, Rows: [][]any{{int64(7), "i"}}},
	}}
	if err := s.WriteSubjects(ctx, ds, []string{"i"}, b); err != nil {
		t.Fatalf("copy into a partitioned table before the table it points to: %v", err)
	}
}

// TestInstallMissingTableOfOwnType installs a dataset table this store
// lacks, from a template whose column has a type of the source database's
// own: the error says to create the table here, and nothing is left.
func TestInstallMissingTableOfOwnType(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestStore(t, "us-east")
	t.Cleanup(func() { s.Close() })
	tmpl := &domicile.Table{Name: "film", PrimaryKey: []string{"id"}, Columns: []domicile.Column{
		{Name: "id", Type: "bigint", NotNull: true}, {Name: "user_id", Type: "text"}, {Name: "release_year", Type: "year"}}}
	tb := &domicile.Table{Name: "film", SubjectColumn: "user_id"}
	ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{tb}}
	err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{Templates: map[string]*domicile.Table{"film": tmpl}})
	if err == nil || !strings.Contains(err.Error(), `type "year" does not exist`) || !strings.Contains(err.Error(), "create it here yourself") ||
		strings.Count(err.Error(), "region us-east") != 1 {
		t.Fatalf("install of a table of an own type: %v", err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname IN ('film', 'domicile_owner')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d tables left after the failed install (%v)", n, err)
	}
}

// tableDataset returns dataset ds of the store's table name, whose subject
// column is user_id.
func tableDataset(t *testing.T, s *Store, name string) *domicile.Dataset {
	t.Helper()
	tb, err := s.DescribeTable(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	tb.SubjectColumn = "user_id"
	return &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{tb}}
}

// The guards are AFTER triggers: a row is written before its guard checks
// it. A fence that commits between the two (here, while the statement
// sleeps after its write) does not wait for the writer, which holds no
// lock on the ownership row yet; the writer's check then finds the fence
// and refuses, undoing the write, or, under REPEATABLE READ, fails with a
// serialization error. Either way nothing of the write is left, and the
// fence's copy, which reads after its commit, never saw it uncommitted.
func TestFenceBetweenWriteAndCheck(t *testing.T) {
	ctx := context.Background()
	s, _, app := triggerStore(t, "")
	ownRows(t, s, "a")
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (1, 'a', 'before')`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		iso  pgx.TxIsoLevel
		want string
	}{{pgx.ReadCommitted, stateFenced}, {pgx.RepeatableRead, "40001"}} {
		ownRows(t, s, "a")
		tx, err := app.BeginTx(ctx, pgx.TxOptions{IsoLevel: c.iso})
		if err != nil {
			t.Fatal(err)
		}
		write := async(func() error {
			_, err := tx.Exec(ctx, `WITH w AS (UPDATE t SET v = 'during' WHERE id = 1 RETURNING 1) SELECT pg_sleep(0.6) FROM w`)
			return err
		})
		time.Sleep(150 * time.Millisecond)
		if err := s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: "m1", Subjects: []string{"a"},
			From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-write:
			t.Fatalf("%s: the statement ended before the fence committed (%v): the test shows nothing", c.iso, err)
		default:
		}
		if err := <-write; pgCode(err) != c.want {
			t.Errorf("%s: write checked after the fence: %v, want SQLSTATE %s", c.iso, err, c.want)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		var v string
		if err := s.Pool().QueryRow(ctx, `SELECT v FROM t WHERE id = 1`).Scan(&v); err != nil || v != "before" {
			t.Fatalf("%s: the row reads %q after the refused write (%v)", c.iso, v, err)
		}
	}
}

// A capture that begins between a row's write and its guard's check (the
// statement sleeps after its write) records the change: the guard reads
// the mark after the capture committed. The capture's snapshot, taken
// then, does not hold the row, which was not committed yet; the record is
// what brings it.
func TestCaptureBetweenWriteAndCheck(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerCaptureStore(t)
	write := async(func() error {
		_, err := app.Exec(ctx, `WITH w AS (INSERT INTO t VALUES (7, 'o', 'x') RETURNING 1) SELECT pg_sleep(0.6) FROM w`)
		return err
	})
	time.Sleep(150 * time.Millisecond)
	startCapture(t, s, ds, "mv", "o")
	select {
	case err := <-write:
		t.Fatalf("the statement ended before the capture began (%v): the test shows nothing", err)
	default:
	}
	if err := <-write; err != nil {
		t.Fatal(err)
	}
	changes, err := s.ReadChanges(ctx, ds, "mv", 0, 0)
	if err != nil || len(changes) != 1 || changes[0].Subject != "o" || changes[0].Key[0] != int64(7) {
		t.Fatalf("changes: %+v %v, want the row written before the capture and checked after", changes, err)
	}
}

// A write that also breaks a constraint meets the constraint before the
// guard (an AFTER trigger) sees it; the store still answers with the
// subject's refusal, so that a client of a moved subject learns where it
// went, and a subject it holds gets the constraint's error.
func TestRefusalBeforeConstraint(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text CHECK (v <> 'bad'))`)
	tb := ds.Tables[0]
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (1, 'o', 'x')`); err != nil {
		t.Fatal(err)
	}
	cols := []string{"id", "user_id", "v"}
	for _, c := range []struct {
		subject string
		id      int64
		v       string
		code    domicile.Code
	}{
		{"m", 1, "y", domicile.CodeMoved},    // the key is o's
		{"f", 1, "y", domicile.CodeFenced},   // the key is o's
		{"m", 2, "bad", domicile.CodeMoved},  // a CHECK
		{"i", 2, "bad", domicile.CodeFenced}, // a CHECK, incoming
		{"nobody", 2, "bad", domicile.CodeForbidden},
		{"o", 2, "bad", domicile.CodeInvalid}, // held here: the CHECK's error
		{"o", 1, "y", ""},
	} {
		err := s.PutRow(ctx, tb, c.subject, cols, []any{c.id, c.subject, c.v})
		if domicile.ErrorCode(err) != c.code {
			t.Errorf("put %s's row %d %q: %v, want code %q", c.subject, c.id, c.v, err, c.code)
		}
		if e, ok := errors.AsType[*domicile.Error](err); c.code == domicile.CodeMoved && (!ok || e.Region != "ap-singapore") {
			t.Errorf("put %s's row %d: %v, want the region it moved to", c.subject, c.id, err)
		}
	}
}

// A capture whose functions are missing is refused before it marks
// anything (the subject then moves inside the fence), rather than making
// every write of a captured subject fail.
func TestCaptureWithoutItsFunctions(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerCaptureStore(t)
	if _, err := s.Pool().Exec(ctx, `DROP FUNCTION `+captureFuncSignature("public", "t")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartCapture(ctx, ds, "mv", []string{"o"}); !errors.Is(err, domicile.ErrNotSupported) {
		t.Fatalf("capture without the capture function: %v, want not supported", err)
	}
	if got := markedSubjects(t, s); len(got) != 0 {
		t.Fatalf("marked after the refused capture: %v", got)
	}
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (1, 'o', 'v')`); err != nil {
		t.Fatalf("a write after the refused capture: %v", err)
	}
}

// In a store that accepts unknown subjects, a writer whose snapshot was
// taken before a fence made the subject's ownership row cannot see that
// row: a REPEATABLE READ or SERIALIZABLE writer of the subject fails with a
// serialization error (the refusal's probe meets the row), whether the
// fence made the row or discovery registered the subject before it; a
// writer of another unknown subject goes through and leaves no ownership
// row behind.
// Before the probe, such a write was accepted after the fence, and the
// fence's copy never saw it.
func TestUnknownSubjectFencedAfterSnapshot(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		iso      pgx.TxIsoLevel
		register bool // discovery registers the subject before the fence, as before a move
	}{{pgx.RepeatableRead, false}, {pgx.Serializable, false}, {pgx.RepeatableRead, true}} {
		iso := c.iso
		u := fmt.Sprintf("u%d", i)
		tx, err := app.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1`); err != nil { // the snapshot
			t.Fatal(err)
		}
		from := domicile.OwnerState("")
		if c.register {
			ownRows(t, s, u)
			from = domicile.Owned
		}
		if err := s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: "m" + u, Subjects: []string{u},
			From: []domicile.OwnerState{from}, To: domicile.Fenced}); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO t VALUES ($1, 'other', 'x')`, 10+i); err != nil {
			t.Fatalf("%s: write of another unknown subject: %v", iso, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO t VALUES ($1, $2, 'late')`, 20+i, u)
		if pgCode(err) != "40001" {
			t.Errorf("%s: write of %s after its fence, on an older snapshot: %v, want SQLSTATE 40001", iso, u, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		var rows, owners int
		if err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM t WHERE user_id = $1), (SELECT count(*) FROM domicile_owner WHERE subject = 'other')`, u).Scan(&rows, &owners); err != nil {
			t.Fatal(err)
		}
		if rows != 0 || owners != 0 {
			t.Fatalf("%s: %d rows of the fenced %s, %d ownership rows of the unknown subject written", iso, rows, u, owners)
		}
	}
	// Committed, the unknown subject's write stands, with no ownership row.
	tx, err := app.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (30, 'other', 'x')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var owners int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM domicile_owner WHERE subject = 'other'`).Scan(&owners); err != nil || owners != 0 {
		t.Fatalf("ownership rows of the unknown subject after its write: %d %v", owners, err)
	}
}

// The probe of a REPEATABLE READ writer of a subject without an ownership
// row also meets a capture begun after its snapshot (which makes no
// ownership row): the write fails with a serialization error instead of
// escaping the capture. Run once per subject and transaction, it costs a
// writer of many rows of one subject one probe.
func TestUnknownSubjectProbe(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	useCapture(t, s, ds, CaptureTriggers)
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	tx, err := app.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1`); err != nil { // the snapshot
		t.Fatal(err)
	}
	startCapture(t, s, ds, "mv", "c1")
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1, 'c1', 'x')`); pgCode(err) != "40001" {
		t.Errorf("write of a subject captured after the snapshot: %v, want SQLSTATE 40001", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EndCapture(ctx, ds, "mv"); err != nil {
		t.Fatal(err)
	}

	// Transaction ids: a probe is a subtransaction that writes, so it
	// takes one; 200 rows of one subject take one probe, not 200.
	xid := func() int64 {
		t.Helper()
		var x int64
		if err := s.Pool().QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	before := xid()
	tx, err = app.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t SELECT i, 'many', 'x' FROM generate_series(100, 299) AS i`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if used := xid() - before; used > 10 {
		t.Fatalf("200 rows of one unknown subject took %d transaction ids: a probe per row", used)
	}
}

// Two SERIALIZABLE writers of different unknown subjects do not fail each
// other: the probes write domicile_known, which no guard reads, so they
// make no read/write conflict with the guards' reads of domicile_owner.
func TestUnknownSubjectProbeSerializable(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, app.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	for round := range 5 {
		a, err := app.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
		if err != nil {
			t.Fatal(err)
		}
		b, err := other.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
		if err != nil {
			t.Fatal(err)
		}
		id := 1000 + 10*round
		for _, w := range []struct {
			tx  pgx.Tx
			row []any
		}{{a, []any{id, fmt.Sprintf("ua%d", round)}}, {b, []any{id + 1, fmt.Sprintf("ub%d", round)}}, {a, []any{id + 2, fmt.Sprintf("ua%d-2", round)}}} {
			if _, err := w.tx.Exec(ctx, `INSERT INTO t VALUES ($1, $2, 'x')`, w.row...); err != nil {
				t.Fatalf("round %d: write %v: %v", round, w.row, err)
			}
		}
		if err := a.Commit(ctx); err != nil {
			t.Fatalf("round %d: commit A: %v", round, err)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatalf("round %d: commit B: %v", round, err)
		}
	}
}

// What keeps the probe of a REPEATABLE READ writer of an unknown subject
// sound: accepting unknown subjects turned off by a reinstall after the
// writer's snapshot (the writer still passes as unknown, so fences still
// touch domicile_known); a tombstone set by SetOwnership while the writer,
// which probed once, holds the subject (the tombstone waits for it); a
// value of domicile.probed left at session level.
func TestUnknownSubjectProbeHolds(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	begin := func() pgx.Tx {
		t.Helper()
		tx, err := app.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1`); err != nil { // the snapshot
			t.Fatal(err)
		}
		return tx
	}
	fence := func(u string) {
		t.Helper()
		if err := s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: "m" + u, Subjects: []string{u},
			From: []domicile.OwnerState{""}, To: domicile.Fenced}); err != nil {
			t.Fatal(err)
		}
	}

	// A reinstall stops accepting unknown subjects.
	tx := begin()
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	fence("a")
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1, 'a', 'x')`); pgCode(err) != "40001" {
		t.Errorf("write after the fence, accepting turned off since the snapshot: %v, want SQLSTATE 40001", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}

	// A tombstone waits for the writer that holds the subject.
	tx = begin()
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (2, 'b', 'x')`); err != nil {
		t.Fatal(err)
	}
	tomb := async(func() error {
		return s.SetOwnership(ctx, []domicile.Ownership{{Subject: "b", Dataset: "ds", State: domicile.Moved, Region: "eu", Epoch: 1}})
	})
	stillWaiting(t, tomb)
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (3, 'b', 'x')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-tomb; err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (4, 'b', 'x')`); pgCode(err) != stateMoved {
		t.Errorf("write after the tombstone: %v, want SQLSTATE %s", err, stateMoved)
	}

	// A session-level value of domicile.probed skips no probe.
	if _, err := app.Exec(ctx, `SET domicile.probed = 'ds/c'`); err != nil {
		t.Fatal(err)
	}
	tx = begin()
	fence("c")
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (5, 'c', 'x')`); pgCode(err) != "40001" {
		t.Errorf("write after the fence, domicile.probed set at session level: %v, want SQLSTATE 40001", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}
