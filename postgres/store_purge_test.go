package postgres

import (
	"context"
	"testing"

	"github.com/domicile/domicile"
)

// keyedDataset makes tables parent and child, child's rows pointing at
// parent's through a foreign key when keyed, each with rows of subjects u
// and v, and returns the dataset listing parent first (so that deleting in
// its order would break the key).
func keyedDataset(t *testing.T, s *Store, exec func(string), keyed bool) *domicile.Dataset {
	t.Helper()
	ref := ""
	if keyed {
		ref = " REFERENCES parent (id)"
	}
	exec(`CREATE TABLE parent (id bigint PRIMARY KEY, user_id text NOT NULL)`)
	exec(`CREATE TABLE child (id bigint PRIMARY KEY, user_id text NOT NULL, parent_id bigint` + ref + `)`)
	exec(`INSERT INTO parent VALUES (1, 'u'), (2, 'u'), (3, 'v')`)
	exec(`INSERT INTO child VALUES (10, 'u', 1), (11, 'u', 2), (12, 'u', 1), (13, 'v', 3)`)
	ds := &domicile.Dataset{Name: "d"}
	for _, name := range []string{"parent", "child"} {
		tb, err := s.DescribeTable(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = "user_id"
		ds.Tables = append(ds.Tables, tb)
	}
	if err := s.Install(context.Background(), []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	return ds
}

func countRows(t *testing.T, s *Store, q string) int64 {
	t.Helper()
	var n int64
	if err := s.Pool().QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPurgeOneStatementATable deletes a subject's rows with a DELETE a table,
// the rows pointing at others first, and counts them; v's rows stay.
func TestPurgeOneStatementATable(t *testing.T) {
	ctx := context.Background()
	s, exec := changesStore(t)
	ds := keyedDataset(t, s, exec, true)
	del, err := s.deletion(ctx, ds, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(del.each) != 2 || del.with != "" {
		t.Fatalf("deletion = %+v, want a statement a table", del)
	}
	n, err := s.PurgeSubjects(ctx, ds, []string{"u"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Errorf("purged %d rows of u, want 5", n)
	}
	if got := countRows(t, s, `SELECT count(*) FROM parent`) + countRows(t, s, `SELECT count(*) FROM child`); got != 2 {
		t.Errorf("%d rows left, want v's 2", got)
	}
}

// TestPurgeWithAKeyAddedSince purges after a foreign key was added to tables
// the store had described without it: the order it chose breaks the key,
// and the purge deletes all in one statement instead.
func TestPurgeWithAKeyAddedSince(t *testing.T) {
	ctx := context.Background()
	s, exec := changesStore(t)
	ds := keyedDataset(t, s, exec, false)
	if del, err := s.deletion(ctx, ds, true); err != nil || len(del.each) != 2 || del.each[0] != `DELETE FROM "parent" WHERE "user_id" = ANY($1::text[])` {
		t.Fatalf("deletion = %+v, %v; want parent's rows first", del, err)
	}
	exec(`ALTER TABLE child ADD FOREIGN KEY (parent_id) REFERENCES parent (id)`)
	n, err := s.PurgeSubjects(ctx, ds, []string{"u"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Errorf("purged %d rows of u, want 5", n)
	}
	if got := countRows(t, s, `SELECT count(*) FROM child WHERE user_id = 'u'`); got != 0 {
		t.Errorf("%d rows of u left in child", got)
	}
}
