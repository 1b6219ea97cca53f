package postgres

import (
	"context"
	"testing"

	"github.com/domicile/domicile"
)

// keyedDataset makes tables parent and child, child's rows pointing at
// parent's through a foreign key when keyed, each with rows of subjects u
// and v, and returns the dataset listing parent first (so that deleting
// table by table in its order would break the key).
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

// TestPurgeWithAKeyAddedSince purges after a foreign key was added to tables
// the store had described (and purged from) without it.
func TestPurgeWithAKeyAddedSince(t *testing.T) {
	ctx := context.Background()
	s, exec := changesStore(t)
	ds := keyedDataset(t, s, exec, false)
	if _, err := s.PurgeSubjects(ctx, ds, []string{"w"}); err != nil {
		t.Fatal(err)
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

// TestPurgeCascadeThroughATableOutside purges a subject whose rows of t are
// also deleted by a cascade from s through x, a table outside the dataset,
// and whose rows of p are found through t: deleted table by table, s's
// DELETE would take t's rows away before p's statement looked for its rows
// through them, and leave them behind. (A review's test of a purge that
// deleted a table at a time.)
func TestPurgeCascadeThroughATableOutside(t *testing.T) {
	ctx := context.Background()
	s, exec := changesStore(t)
	exec(`CREATE TABLE s (id bigint PRIMARY KEY, user_id text NOT NULL)`)
	exec(`CREATE TABLE x (id bigint PRIMARY KEY, s_id bigint NOT NULL REFERENCES s (id) ON DELETE CASCADE)`)
	exec(`CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, x_id bigint REFERENCES x (id) ON DELETE CASCADE)`)
	exec(`CREATE TABLE p (id bigint PRIMARY KEY, t_id bigint NOT NULL)`)
	exec(`INSERT INTO s VALUES (1, 'u'), (2, 'v')`)
	exec(`INSERT INTO x VALUES (1, 1), (2, 2)`)
	exec(`INSERT INTO t VALUES (10, 'u', 1), (11, 'v', 2)`)
	exec(`INSERT INTO p VALUES (100, 10), (101, 10), (102, 11)`)
	ds := &domicile.Dataset{Name: "d"}
	for _, name := range []string{"s", "t", "p"} {
		tb, err := s.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "p" {
			tb.Via = &domicile.Path{Hops: []domicile.Hop{{Column: "t_id", Table: "t", Match: "id"}}}
		} else {
			tb.SubjectColumn = "user_id"
		}
		ds.Tables = append(ds.Tables, tb)
	}
	if err := ds.ResolvePaths(); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgeSubjects(ctx, ds, []string{"u"})
	if err != nil {
		t.Fatal(err)
	}
	if left := countRows(t, s, `SELECT count(*) FROM p WHERE t_id = 10`); left != 0 {
		t.Errorf("%d of u's rows of p left after the purge", left)
	}
	if n != 4 {
		t.Errorf("purged %d rows of u, want 4", n)
	}
}

// TestPurgeWithACascadeAddedSince purges after a cascading key was added to
// tables the store had described without it: deleted table by table,
// parent's DELETE would take child's rows with it, uncounted.
func TestPurgeWithACascadeAddedSince(t *testing.T) {
	ctx := context.Background()
	s, exec := changesStore(t)
	ds := keyedDataset(t, s, exec, false)
	if _, err := s.PurgeSubjects(ctx, ds, []string{"w"}); err != nil { // the tables described without the key
		t.Fatal(err)
	}
	exec(`ALTER TABLE child ADD FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE`)
	n, err := s.PurgeSubjects(ctx, ds, []string{"u"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Errorf("purged %d rows of u, want 5", n)
	}
}

// TestPurgeKeyedTables purges a subject of tables whose rows point at one
// another through a key, listed parent first, or where deleting a parent
// row does more: a trigger of the user's that deletes child's rows when
// parent's go, or row security on child. Neither what the purge deletes nor
// its count changes; nothing of v is touched.
func TestPurgeKeyedTables(t *testing.T) {
	for name, tc := range map[string]struct {
		keyed bool
		ddl   []string
	}{
		"a key": {keyed: true},
		"a trigger": {ddl: []string{
			`CREATE FUNCTION drop_children() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM child WHERE parent_id = OLD.id; RETURN OLD; END $$`,
			`CREATE TRIGGER drop_children AFTER DELETE ON parent FOR EACH ROW EXECUTE FUNCTION drop_children()`,
		}},
		"row security": {ddl: []string{`ALTER TABLE child ENABLE ROW LEVEL SECURITY`}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, exec := changesStore(t)
			ds := keyedDataset(t, s, exec, tc.keyed)
			for _, q := range tc.ddl {
				exec(q)
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
		})
	}
}
