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
	src, dst := sourceAndDestination(t)
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
	opts := templateOpts(t, src, []string{"cust"}, []string{"emp"})
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
	err := dst.PutRow(ctx, tb, "a", []string{"id", "user_id", "rep"}, []any{int64(1), "a", int64(99)})
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

// templateOpts reads templates, indexes, constraints and global rows from
// src as cmd/domicile's openApp does.
func templateOpts(t *testing.T, src *Store, tables, global []string) domicile.InstallOptions {
	t.Helper()
	ctx := context.Background()
	opts := domicile.InstallOptions{Templates: map[string]*domicile.Table{}, TemplateIndexes: map[string][]string{},
		TemplateConstraints: map[string][]string{}, TemplateEngine: map[string]string{}, Global: global}
	for _, name := range append(append([]string{}, tables...), global...) {
		d, err := src.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		opts.Templates[name] = d
		if opts.TemplateIndexes[name], err = src.Indexes(ctx, name); err != nil {
			t.Fatal(err)
		}
		if opts.TemplateConstraints[name], err = src.Constraints(ctx, name); err != nil {
			t.Fatal(err)
		}
		opts.TemplateEngine[name] = "postgres"
	}
	for _, name := range global {
		rows, err := src.ReadTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		opts.GlobalRows = append(opts.GlobalRows, *rows)
	}
	return opts
}

func execAll(t *testing.T, s *Store, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := s.Pool().Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestInstallFKToOtherSchema: a foreign key to a table in a schema off the
// source's search_path reads schema-qualified; at a store without that
// schema it is left out, as a key to a table the store lacks.
func TestInstallFKToOtherSchema(t *testing.T) {
	ctx := context.Background()
	src, dst := sourceAndDestination(t)
	execAll(t, src,
		`CREATE SCHEMA ref`,
		`CREATE TABLE ref.country (code text PRIMARY KEY)`,
		`CREATE TABLE cust (id integer PRIMARY KEY, user_id text NOT NULL, country text REFERENCES ref.country (code))`)
	if err := installCust(ctx, t, src, dst); err != nil {
		t.Fatalf("install at a store without schema ref: %v", err)
	}
}

// TestInstallGlobalKeyToOwnedByTable: pagila's shape. store is global and
// points at address, a dataset table owned through owned_by (a reverse
// hop), whose store addresses belong to no one. At a fresh region install
// makes address (empty) and store (with the global rows), whose key to
// address those rows break: the key is left out, and install passes.
func TestInstallGlobalKeyToOwnedByTable(t *testing.T) {
	ctx := context.Background()
	src, dst := sourceAndDestination(t)
	execAll(t, src,
		`CREATE TABLE address (address_id integer PRIMARY KEY, line text)`,
		`CREATE TABLE customer (customer_id integer PRIMARY KEY, user_id text NOT NULL, address_id integer REFERENCES address (address_id))`,
		`CREATE TABLE store (store_id integer PRIMARY KEY, address_id integer NOT NULL REFERENCES address (address_id))`,
		`INSERT INTO address VALUES (1, 'the store''s address')`,
		`INSERT INTO store VALUES (1, 1)`)
	opts := templateOpts(t, src, []string{"customer", "address"}, []string{"store"})
	ds := &domicile.Dataset{Name: "ds"}
	for _, name := range []string{"customer", "address"} {
		tb := *opts.Templates[name]
		if name == "address" {
			tb.Via = &domicile.Path{Hops: []domicile.Hop{{Column: "address_id", Table: "customer", Match: "address_id", Reverse: true}}}
		} else {
			tb.SubjectColumn = "user_id"
		}
		ds.Tables = append(ds.Tables, &tb)
	}
	if err := ds.ResolvePaths(); err != nil {
		t.Fatal(err)
	}
	if err := src.Install(ctx, []*domicile.Dataset{ds}, opts); err != nil {
		t.Fatalf("source: %v", err)
	}
	if err := dst.Install(ctx, []*domicile.Dataset{ds}, opts); err != nil {
		t.Fatalf("install at a fresh region: %v", err)
	}
}

// TestInstallCheckCallingFunction: a CHECK calling a function of the
// source's own, which the destination lacks, is left out; the table is
// made with its other constraints.
func TestInstallCheckCallingFunction(t *testing.T) {
	ctx := context.Background()
	src, dst := sourceAndDestination(t)
	execAll(t, src,
		`CREATE FUNCTION valid_email(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT $1 LIKE '%@%' $$`,
		`CREATE TABLE cust (id integer PRIMARY KEY, user_id text NOT NULL, email text CHECK (valid_email(email)))`)
	if err := installCust(ctx, t, src, dst); err != nil {
		t.Fatalf("install: %v", err)
	}
}

// sourceAndDestination opens two stores of their own: a source region and
// an empty destination.
func sourceAndDestination(t *testing.T) (src, dst *Store) {
	t.Helper()
	src, _ = openTestStore(t, "eu")
	t.Cleanup(func() { src.Close() })
	dst, _ = openTestStore(t, "us")
	t.Cleanup(func() { dst.Close() })
	return src, dst
}

// installCust installs at dst a dataset of src's table cust (subject
// column user_id), made from src's template.
func installCust(ctx context.Context, t *testing.T, src, dst *Store) error {
	t.Helper()
	opts := templateOpts(t, src, []string{"cust"}, nil)
	cust := *opts.Templates["cust"]
	cust.SubjectColumn = "user_id"
	return dst.Install(ctx, []*domicile.Dataset{{Name: "ds", Tables: []*domicile.Table{&cust}}}, opts)
}
