package postgres

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/sqlite"
	"github.com/domicile/domicile/storetest"
)

// crossColumns are the columns of the cross-engine test's table t.
var crossColumns = []string{"id", "user_id", "n", "f", "s", "b", "at", "d", "tz", "ok"}

// crossRows are rows as a SQLite store holds them: timestamps and dates as
// the text SQLite's date functions write, and integers for booleans. No
// -0.0: SQLite stores an integral REAL as an integer and reads it back as
// 0.0, while PostgreSQL keeps the sign, so the digests would (rightly)
// differ.
var crossRows = [][]any{
	{int64(1), "u", int64(math.MaxInt32), 0.1, "Zoë 🚀\ttab\nline\\slash", []byte{0, 1, '\t', '\n', '\\', 255},
		"2024-01-02 03:04:05", "2024-01-02", "2024-01-02 03:04:05.5", int64(1)},
	{int64(2), "u", int64(math.MinInt32), 1e300, "", []byte{}, "2024-02-29 12:34:56.123456", "1999-12-31", "2000-01-01 00:00:00", int64(0)},
	{int64(math.MaxInt64), "u", nil, 0.0, nil, nil, nil, nil, nil, nil},
	{int64(4), "v", int64(-1), -2.5e-300, "'quoted' \"double\"", []byte("x"), "1970-01-01 00:00:00", "2024-12-31", "2024-06-30 23:59:59.999999", int64(1)},
}

// crossStores opens a SQLite store and a PostgreSQL store holding table t
// of dataset ds, declared with each engine's own types for the same data.
func crossStores(t *testing.T) (*sqlite.Store, *Store, *domicile.Dataset, *domicile.Dataset) {
	t.Helper()
	ctx := context.Background()
	ls, err := sqlite.OpenStore(filepath.Join(t.TempDir(), "a.db"), "cn-beijing")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ls.Close() })
	if _, err := ls.DB().ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, n INTEGER, f REAL,
		s TEXT, b BLOB, at DATETIME, d DATE, tz TIMESTAMP, ok INTEGER)`); err != nil {
		t.Fatal(err)
	}
	ps, _ := openTestStore(t, "us-east")
	t.Cleanup(func() { ps.Close() })
	// PostgreSQL's own types: the values must read back in SQLite's form.
	if _, err := ps.Pool().Exec(ctx, `CREATE TABLE t (id bigint PRIMARY KEY, user_id varchar(20) NOT NULL, n integer,
		f double precision, s text, b bytea, at timestamp, d date, tz timestamptz, ok smallint)`); err != nil {
		t.Fatal(err)
	}
	var dss [2]*domicile.Dataset
	for i, s := range []domicile.Store{ls, ps} {
		tb, err := s.DescribeTable(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = "user_id"
		dss[i] = &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{tb}}
		if err := s.Install(ctx, []*domicile.Dataset{dss[i]}, domicile.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetOwnership(ctx, []domicile.Ownership{
			{Subject: "u", Dataset: "ds", State: domicile.Owned},
			{Subject: "v", Dataset: "ds", State: domicile.Owned},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return ls, ps, dss[0], dss[1]
}

// TestDigestAcrossEngines writes the same logical rows to a SQLite and a
// PostgreSQL store, the latter with timestamp, date, timestamptz, integer
// and varchar columns, and checks that both digest them alike and that the
// PostgreSQL store reads them back as SQLite holds them.
func TestDigestAcrossEngines(t *testing.T) {
	ctx := context.Background()
	ls, ps, lds, pds := crossStores(t)
	subjects := []string{"u", "v", "w"} // w has no rows
	batch := &domicile.Batch{Tables: []domicile.TableRows{{Table: "t", Columns: crossColumns, Rows: crossRows}}}
	for _, w := range []struct {
		s  domicile.Store
		ds *domicile.Dataset
	}{{ls, lds}, {ps, pds}} {
		if err := w.s.WriteSubjects(ctx, w.ds, subjects, batch); err != nil {
			t.Fatalf("write to %s: %v", w.s.Region(), err)
		}
	}
	got, err := ps.ReadSubjects(ctx, pds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	sortRows(got.Tables[0].Rows)
	want := append([][]any(nil), crossRows...)
	sortRows(want)
	if !reflect.DeepEqual(got.Tables[0].Rows, want) {
		t.Errorf("rows read back from PostgreSQL:\n%#v\nwant\n%#v", got.Tables[0].Rows, want)
	}
	dl, err := ls.DigestSubjects(ctx, lds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := ps.DigestSubjects(ctx, pds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subjects {
		if !dl[s].Equal(dp[s]) {
			t.Errorf("digest of %s: SQLite %s, PostgreSQL %s", s, dl[s], dp[s])
		}
		if !reflect.DeepEqual(dl[s].Rows, dp[s].Rows) || dl[s].Bytes != dp[s].Bytes {
			t.Errorf("%s: SQLite counts %v rows, %d bytes; PostgreSQL %v, %d", s, dl[s].Rows, dl[s].Bytes, dp[s].Rows, dp[s].Bytes)
		}
	}
	if domicile.BatchDigest(dl, "") != domicile.BatchDigest(dp, "") {
		t.Error("batch digests differ")
	}
	rows, bytes, err := ps.MeasureSubjects(ctx, pds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	if rows != batch.Rows() || bytes != batch.Bytes() {
		t.Errorf("MeasureSubjects = %d rows, %d bytes; the batch has %d, %d", rows, bytes, batch.Rows(), batch.Bytes())
	}
	// One changed value shows.
	if err := ps.PutRow(ctx, pds.Tables[0], "v", []string{"id", "user_id", "tz"}, []any{int64(4), "v", "2024-06-30 23:59:59.999998"}); err != nil {
		t.Fatal(err)
	}
	dp, _ = ps.DigestSubjects(ctx, pds, subjects)
	if dl["v"].Equal(dp["v"]) || !dl["u"].Equal(dp["u"]) {
		t.Error("a changed timestamp of v: digests of v and u do not tell")
	}
}

// TestCopyBetweenEngines copies subjects from SQLite to PostgreSQL and back
// through ReadSubjects and WriteSubjects, as the mover does.
func TestCopyBetweenEngines(t *testing.T) {
	ctx := context.Background()
	ls, ps, lds, pds := crossStores(t)
	subjects := []string{"u", "v"}
	if err := ls.WriteSubjects(ctx, lds, subjects, &domicile.Batch{Tables: []domicile.TableRows{{Table: "t", Columns: crossColumns, Rows: crossRows}}}); err != nil {
		t.Fatal(err)
	}
	b, err := ls.ReadSubjects(ctx, lds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.WriteSubjects(ctx, pds, subjects, b); err != nil {
		t.Fatalf("copy to PostgreSQL: %v", err)
	}
	back, err := ps.ReadSubjects(ctx, pds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.PurgeSubjects(ctx, lds, subjects); err != nil {
		t.Fatal(err)
	}
	if err := ls.WriteSubjects(ctx, lds, subjects, back); err != nil {
		t.Fatalf("copy back to SQLite: %v", err)
	}
	dl, _ := ls.DigestSubjects(ctx, lds, subjects)
	dp, _ := ps.DigestSubjects(ctx, pds, subjects)
	for _, s := range subjects {
		if !dl[s].Equal(dp[s]) {
			t.Errorf("digest of %s differs after a round trip", s)
		}
	}
	after, _ := ls.ReadSubjects(ctx, lds, subjects)
	x, y := b.Tables[0].Rows, after.Tables[0].Rows
	sortRows(x)
	sortRows(y)
	if !reflect.DeepEqual(x, y) {
		t.Errorf("SQLite rows after a round trip through PostgreSQL:\n%#v\nwant\n%#v", y, x)
	}
}

// sortRows orders rows by their printed values.
func sortRows(rows [][]any) {
	slices.SortFunc(rows, func(x, y []any) int { return strings.Compare(fmt.Sprint(x...), fmt.Sprint(y...)) })
}

// TestDigestFromBytes checks DigestSubjects, which encodes what the server
// sends without decoding it, against domicile.DigestBatch over the rows
// ReadSubjects decodes, on columns of many types (the binary format's
// integers, floats, booleans, bytea and characters; types read in the text
// format, and others pgx decodes), NULLs, and subjects in an integer
// column.
func TestDigestFromBytes(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestStore(t, "us-east")
	t.Cleanup(func() { s.Close() })
	for _, q := range []string{
		`CREATE TYPE mood AS ENUM ('sad', 'ok')`,
		`CREATE TABLE wide (id bigint, k2 smallint, user_id text NOT NULL, i2 smallint, i4 integer, f4 real, f8 double precision,
			ok boolean, b bytea, c char(5), v varchar(9), nm name, num numeric(12,3), u uuid, j jsonb, at timestamptz, d date,
			iv interval, arr integer[], m mood, PRIMARY KEY (id, k2))`,
		`CREATE TABLE byid (id integer PRIMARY KEY, owner bigint NOT NULL, note text)`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ds := &domicile.Dataset{Name: "ds"}
	for _, name := range []string{"wide", "byid"} {
		tb, err := s.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = map[string]string{"wide": "user_id", "byid": "owner"}[name]
		ds.Tables = append(ds.Tables, tb)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Pool().Exec(ctx, `SELECT set_config('domicile.bypass', pg_current_xact_id()::text, true);
		INSERT INTO wide VALUES
		(1, -1, '7', 32767, -2147483648, 'NaN', '-Infinity', true, '\x00ff', 'ab', 'Zoë 🚀', 'n', 123456789.125,
		 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '2024-01-02 03:04:05.5+01', '2024-02-29', '1 day 2 hours',
		 '{1,NULL,3}', 'ok'),
		(1, 1, '7', -32768, 2147483647, -0.0, 1e308, false, '', '', '', '', -0.001, NULL, 'null', '1970-01-01 00:00:00+00',
		 '0001-01-01', '-1 mon', '{}', 'sad'),
		(2, 0, '-8', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		(3, 0, '12', 0, 0, 1.5, 2.5e-300, true, '\x5c', 'x', 'tab	here', 'long name', 0, NULL, '[]', NULL, NULL, NULL, NULL, NULL);
		INSERT INTO byid VALUES (1, 7, 'seven'), (2, 7, NULL), (3, -8, 'minus eight'), (4, 9000000000, '')`)
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{"7", "-8", "12", "9000000000", "404"} // numbers: byid's subject column is one
	got := storetest.DigestsAgree(t, s, ds, subjects)
	if len(got) != len(subjects) {
		t.Fatalf("%d digests for %d subjects", len(got), len(subjects))
	}
	if got["7"].Rows["byid"] != 2 || got["7"].Rows["wide"] != 2 || got["404"].Rows["wide"] != 0 {
		t.Errorf("row counts: 7 %v, 404 %v", got["7"].Rows, got["404"].Rows)
	}
}
