package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestMadeTableKeepsTypesAndConstraints makes a dataset table and a global
// table at an empty store from a PostgreSQL store's templates: the columns
// keep their types (integer stays integer, numeric(10,2) and varchar(20)
// keep their modifiers), and the constraints come along: unique, check, the
// foreign key to the global table (enforced), while a foreign key to a
// table the store lacks is left out.
func TestMadeTableKeepsTypesAndConstraints(t *testing.T) {
	ctx := context.Background()
	src, _ := openTestStore(t, "eu")
	t.Cleanup(func() { src.Close() })
	dst, _ := openTestStore(t, "us")
	t.Cleanup(func() { dst.Close() })
	for _, q := range []string{
		`CREATE TABLE other (id integer PRIMARY KEY)`,
		`CREATE TABLE emp (id integer PRIMARY KEY, name varchar(20) NOT NULL UNIQUE)`,
		`CREATE TABLE cust (id integer PRIMARY KEY, user_id text NOT NULL, rep integer REFERENCES emp (id),
			o integer REFERENCES other (id), price numeric(10,2) CONSTRAINT cust_price CHECK (price >= 0), at timestamp)`,
		`INSERT INTO emp VALUES (1, 'ann')`,
	} {
		if _, err := src.Pool().Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	opts := domicile.InstallOptions{Templates: map[string]*domicile.Table{}, TemplateIndexes: map[string][]string{},
		TemplateConstraints: map[string][]string{}, TemplateEngine: map[string]string{}, Global: []string{"emp"}}
	for _, name := range []string{"emp", "cust"} {
		d, err := src.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		opts.Templates[name] = d
		if opts.TemplateConstraints[name], err = src.Constraints(ctx, name); err != nil {
			t.Fatal(err)
		}
		opts.TemplateEngine[name] = "postgres"
	}
	rows, err := src.ReadTable(ctx, "emp")
	if err != nil {
		t.Fatal(err)
	}
	opts.GlobalRows = []domicile.TableRows{*rows}
	cust := *opts.Templates["cust"]
	cust.SubjectColumn = "user_id"
	ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{&cust}}
	if err := dst.Install(ctx, []*domicile.Dataset{ds}, opts); err != nil {
		t.Fatal(err)
	}

	types := func(s *Store) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, name := range []string{"emp", "cust"} {
			d, err := s.DescribeTable(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range d.Columns {
				out[name+"."+c.Name] = c.Type
			}
		}
		return out
	}
	want, got := types(src), types(dst)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q here, %q at the source", k, got[k], v)
		}
	}
	if err := dst.SetOwnership(ctx, []domicile.Ownership{{Subject: "a", Dataset: "ds", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	// Through the store, as the API writes: a key to a row not here is a
	// conflict, a value the check refuses is invalid, neither internal.
	tb := ds.Tables[0]
	err = dst.PutRow(ctx, tb, "a", []string{"id", "user_id", "rep"}, []any{int64(1), "a", int64(99)})
	if domicile.ErrorCode(err) != domicile.CodeConflict {
		t.Errorf("a row pointing at no employee: %v (code %q), want a conflict", err, domicile.ErrorCode(err))
	}
	err = dst.PutRow(ctx, tb, "a", []string{"id", "user_id", "price"}, []any{int64(1), "a", "-1"})
	if domicile.ErrorCode(err) != domicile.CodeInvalid {
		t.Errorf("a negative price: %v (code %q), want invalid", err, domicile.ErrorCode(err))
	}
	for _, c := range []struct {
		q, code string
	}{
		{`INSERT INTO cust (id, user_id, rep) VALUES (1, 'a', 99)`, "23503"},         // the foreign key to emp
		{`INSERT INTO cust (id, user_id, price) VALUES (1, 'a', -1)`, "23514"},       // the check
		{`INSERT INTO emp VALUES (2, 'ann')`, "23505"},                               // emp's unique name
		{`INSERT INTO cust (id, user_id, rep, o) VALUES (1, 'a', 1, 5)`, ""},         // no key to other: it is not here
		{`INSERT INTO cust (id, user_id, price) VALUES (2, 'a', 1.005)`, ""},         // numeric(10,2) rounds
		{`INSERT INTO cust (id, user_id, rep) VALUES (3, 'a', 2147483648)`, "22003"}, // integer, not bigint
	} {
		_, err := dst.Pool().Exec(ctx, c.q)
		var code string
		if e, ok := errors.AsType[*pgconn.PgError](err); ok {
			code = e.Code
		} else if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		if code != c.code {
			t.Errorf("%s: SQLSTATE %q (%v), want %q", c.q, code, err, c.code)
		}
	}
}
