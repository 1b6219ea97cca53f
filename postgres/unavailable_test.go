package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
)

// TestUnreachableStoreErrors stops a store's server and checks that what
// the API calls on a subject's rows (the ownership, a read, a write, a
// delete) fails with ErrUnavailable, which the API answers 503 and a
// client retries, not as an internal error.
func TestUnreachableStoreErrors(t *testing.T) {
	ctx := context.Background()
	c, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	url, err := c.CreateDatabase("down")
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(ctx, url, "us")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text)`); err != nil {
		t.Fatal(err)
	}
	ds := tableDataset(t, s, "t")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "a", Dataset: "ds", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	tb := ds.Tables[0]
	if err := s.PutRow(ctx, tb, "a", []string{"id", "user_id", "v"}, []any{int64(1), "a", "v"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"find ownership": func() error { _, err := s.FindOwnership(ctx, "ds", "a"); return err },
		"read":           func() error { _, err := s.FindRows(ctx, tb, "a", domicile.RowQuery{}); return err },
		"write": func() error {
			return s.PutRow(ctx, tb, "a", []string{"id", "user_id", "v"}, []any{int64(2), "a", "w"})
		},
		"delete": func() error { _, err := s.DeleteRow(ctx, tb, "a", []any{int64(1)}); return err },
	} {
		if err := call(); !errors.Is(err, domicile.ErrUnavailable) {
			t.Errorf("%s with the server down: %v, want ErrUnavailable", what, err)
		}
	}
}
