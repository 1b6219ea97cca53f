package postgres

import (
	"context"
	"fmt"
	"math"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// copyTypes is a table of every type copyBinary encodes.
const copyTypes = `(id bigint PRIMARY KEY, user_id text NOT NULL, a smallint, b integer, c double precision,
	d boolean, e bytea, f varchar(5), g char(4))`

// copyRows are values of copyTypes at the edges of their types, and NULLs.
var copyRows = [][]any{
	{int64(1), "i", int64(math.MinInt16), int64(math.MinInt32), math.NaN(), true, []byte{}, "héllo", "ab"},
	{int64(2), "i", int64(math.MaxInt16), int64(math.MaxInt32), -math.NaN(), false, []byte{0, 0xff, '\\', '\n'}, "a\tb\\", "x\ny"},
	{int64(3), "i", nil, nil, nil, nil, nil, nil, nil},
	{int64(4), "i", int64(0), int64(-1), math.Copysign(0, -1), true, []byte("x"), "", "abcd"},
	{int64(math.MaxInt64), "i", int64(7), int64(7), math.MaxFloat64, false, []byte("\x00"), "'\"", " "},
	{int64(6), "i", int64(7), int64(7), math.Inf(-1), false, nil, "", ""},
}

// TestCopyBinaryAgainstText writes the same rows with WriteSubjects, which
// takes COPY's binary format for these types, and with the text format
// into a twin table: the two tables hold the same values, and the batch
// reads back as written.
func TestCopyBinaryAgainstText(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := triggerStore(t, `CREATE TABLE t `+copyTypes+`; CREATE TABLE twin `+copyTypes)
	columns := []string{"id", "user_id", "a", "b", "c", "d", "e", "f", "g"}
	tr := domicile.TableRows{Table: "t", Columns: columns, Rows: copyRows}
	decl, err := s.table(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := copyBinary(decl, &tr); !ok {
		t.Fatal("copyBinary refused the rows: the test would compare the text format with itself")
	}
	text, err := copyData(decl, &tr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Conn().PgConn().CopyFrom(ctx, strings.NewReader(string(text)), `COPY twin (`+strings.Join(columns, ", ")+`) FROM STDIN`)
	conn.Release()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteSubjects(ctx, ds, []string{"i"}, &domicile.Batch{MoveID: "m", Tables: []domicile.TableRows{tr}}); err != nil {
		t.Fatal(err)
	}
	var differ int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM ((TABLE t EXCEPT ALL TABLE twin) UNION ALL (TABLE twin EXCEPT ALL TABLE t)) AS d`).Scan(&differ); err != nil {
		t.Fatal(err)
	}
	if differ != 0 {
		t.Fatalf("%d rows differ between the binary and the text copy", differ)
	}
	// Equal floats may differ in their bits (NaNs); the bits must not.
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM t JOIN twin USING (id) WHERE float8send(t.c) IS DISTINCT FROM float8send(twin.c)`).Scan(&differ); err != nil {
		t.Fatal(err)
	}
	if differ != 0 {
		t.Fatalf("%d floats differ in their bits between the binary and the text copy", differ)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM t WHERE g = 'ab  ' AND f = 'héllo' AND c = 'NaN'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("padded char, multibyte varchar and NaN: %d rows (%v)", n, err)
	}
	b, err := s.ReadSubjects(ctx, ds, []string{"i"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Rows() != int64(len(copyRows)) {
		t.Fatalf("read back %d rows, want %d", b.Rows(), len(copyRows))
	}
}

// TestCopyBinaryFallsBack: a column of another type, or a value not of its
// column's kind, leaves the rows to the text format, whose server-side
// parse and errors are the same as before.
func TestCopyBinaryFallsBack(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := triggerStore(t, `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, n numeric, r real, s smallint, ts timestamptz)`)
	decl, err := s.table(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		columns []string
		row     []any
		binary  bool
	}{
		{[]string{"id", "user_id"}, []any{int64(1), "i"}, true},
		{[]string{"id", "user_id", "n"}, []any{int64(1), "i", "1.50"}, false},
		{[]string{"id", "user_id", "r"}, []any{int64(1), "i", 0.1}, false},
		{[]string{"id", "user_id", "ts"}, []any{int64(1), "i", "2026-01-01 00:00:00"}, false},
		{[]string{"id", "user_id", "s"}, []any{"12", "i", int64(1)}, false},              // a string for a bigint
		{[]string{"id", "user_id", "s"}, []any{int64(1), "i", int64(40000)}, false},      // out of smallint's range
		{[]string{"id", "user_id", "s"}, []any{int64(1), []byte{0xff}, int64(2)}, false}, // a blob, not UTF-8, for text
	} {
		tr := domicile.TableRows{Table: "t", Columns: c.columns, Rows: [][]any{c.row}}
		if _, ok := copyBinary(decl, &tr); ok != c.binary {
			t.Errorf("%v %v: binary %v, want %v", c.columns, c.row, ok, c.binary)
		}
	}
	// Through WriteSubjects: the text format parses the string key, and
	// the server refuses the out-of-range smallint as before.
	write := func(row []any) error {
		return s.WriteSubjects(ctx, ds, []string{"i"}, &domicile.Batch{MoveID: "m", Tables: []domicile.TableRows{
			{Table: "t", Columns: []string{"id", "user_id", "s", "n"}, Rows: [][]any{row}}}})
	}
	if err := write([]any{"12", "i", int64(1), "1.50"}); err != nil {
		t.Fatal(err)
	}
	if err := write([]any{int64(13), "i", int64(40000), nil}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("out of smallint's range: %v", err)
	}
}

// In a database whose encoding is not UTF-8, text still goes in as the
// characters Go's strings hold: the store's connections declare their
// encoding UTF-8 and the server converts. Without it, "é" was stored as
// the two LATIN1 characters of its UTF-8 bytes.
func TestLatin1Database(t *testing.T) {
	ctx := context.Background()
	base := pgtest.NewDatabase(t)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("latin1_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name+` ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`); err != nil {
		t.Fatal(err)
	}
	u, err := neturl.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	s, err := OpenStore(ctx, u.String(), "us-east")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v varchar(1))`); err != nil {
		t.Fatal(err)
	}
	ds := tableDataset(t, s, "t")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "i", Dataset: "ds", State: domicile.Incoming, MoveID: "m"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteSubjects(ctx, ds, []string{"i"}, &domicile.Batch{MoveID: "m", Tables: []domicile.TableRows{
		{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: [][]any{{int64(1), "i", "é"}}}}}); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := s.Pool().QueryRow(ctx, `SELECT convert_to(v, 'LATIN1') FROM t WHERE id = 1`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if string(stored) != "\xe9" {
		t.Fatalf("stored %x, want e9 (é in LATIN1)", stored)
	}
	b, err := s.ReadSubjects(ctx, ds, []string{"i"})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Tables[0].Rows[0][2]; got != "é" {
		t.Fatalf("read back %q", got)
	}
}
