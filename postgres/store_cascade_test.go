package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestCascadeUnderRowSecurity: a row whose parent's table has row-level
// security on is not taken for one going with its parent when the guard
// does not find the parent, since a policy could hide a parent that is
// there: the cascade that passes without it is refused with it.
func TestCascadeUnderRowSecurity(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestStore(t, "cn-beijing")
	t.Cleanup(func() { s.Close() })
	for _, q := range []string{
		`CREATE TABLE customer (customer_id bigint PRIMARY KEY, user_id text NOT NULL)`,
		`CREATE TABLE rental (rental_id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customer ON DELETE CASCADE)`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ds := &domicile.Dataset{Name: "d"}
	for _, n := range []string{"customer", "rental"} {
		tb, err := s.DescribeTable(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "customer" {
			tb.SubjectColumn = "user_id"
		} else {
			tb.Via = &domicile.Path{Hops: []domicile.Hop{{Column: "customer_id", Table: "customer", Match: "customer_id"}}}
		}
		ds.Tables = append(ds.Tables, tb)
	}
	if err := ds.ResolvePaths(); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "A", Dataset: "d", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO customer VALUES (1, 'A'), (2, 'A')`,
		`INSERT INTO rental VALUES (10, 1), (20, 2)`,
		`DELETE FROM customer WHERE customer_id = 1`, // the cascade passes
		`ALTER TABLE customer ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY everyone ON customer USING (true)`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_, err := s.Pool().Exec(ctx, `DELETE FROM customer WHERE customer_id = 2`)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "DM004" {
		t.Fatalf("cascade under row-level security: %v; want the refusal of a subject not owned here (DM004)", err)
	}
}
