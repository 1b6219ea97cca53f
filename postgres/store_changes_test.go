package postgres

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// TestChangedSince reads a batch, changes some subjects' rows in every way
// a writer can (an update, a delete, an insert, a delete and an insert
// leaving the count, a write in flight during the read and one in a
// subtransaction), and checks that ChangedSince names exactly those: not
// the subject whose row was only locked, not the ones left alone; and
// that, before the writes in flight commit, it names none.
func TestChangedSince(t *testing.T) {
	ctx := context.Background()
	s, url := openTestStore(t, "us-east")
	t.Cleanup(func() { s.Close() })
	pool := s.Pool()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text)`)
	exec(`CREATE TABLE n (id bigint PRIMARY KEY, uid bigint NOT NULL, v text)`)
	exec(`CREATE TABLE other (id bigint PRIMARY KEY)`)
	tt, err := s.DescribeTable(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	tn, err := s.DescribeTable(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	tt.SubjectColumn, tn.SubjectColumn = "user_id", "uid"
	ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{tt, tn}}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	subjects := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}
	var owners []domicile.Ownership
	for _, id := range subjects {
		owners = append(owners, domicile.Ownership{Subject: id, Dataset: "ds", State: domicile.Owned})
	}
	if err := s.SetOwnership(ctx, owners); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO t SELECT 10 * u + k, u::text, 'v' FROM generate_series(1, 9) AS u, generate_series(0, 1) AS k`)
	exec(`INSERT INTO n SELECT u, u, 'v' FROM generate_series(1, 9) AS u`)
	exec(`VACUUM (FREEZE) t`) // the rows' original xmin stays, marked frozen
	exec(`CHECKPOINT`)        // none comes on its own before the test ends

	// Writes in flight while the batch is read: one plain, one in a
	// subtransaction begun after its transaction wrote elsewhere.
	inFlight := func() pgx.Tx {
		t.Helper()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	w6 := inFlight()
	if _, err := w6.Exec(ctx, `UPDATE t SET v = 'w' WHERE user_id = '6'`); err != nil {
		t.Fatal(err)
	}
	w7 := inFlight()
	if _, err := w7.Exec(ctx, `INSERT INTO other VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := w7.Exec(ctx, `SAVEPOINT s`); err != nil {
		t.Fatal(err)
	}
	if _, err := w7.Exec(ctx, `UPDATE n SET v = 'w' WHERE uid = 7`); err != nil {
		t.Fatal(err)
	}
	if _, err := w7.Exec(ctx, `RELEASE SAVEPOINT s`); err != nil {
		t.Fatal(err)
	}

	b, err := s.ReadSubjects(ctx, ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	if b.Snapshot == "" {
		t.Fatal("the batch names no snapshot")
	}
	read, err := domicile.DigestBatch(ds, subjects, b)
	if err != nil {
		t.Fatal(err)
	}
	changed := func(want ...string) {
		t.Helper()
		got, err := s.ChangedSince(ctx, ds, b.Snapshot, subjects, read)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("changed %v, want %v", got, want)
		}
	}
	changed()

	if err := w6.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w7.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE t SET v = 'x' WHERE id = 10`)             // subject 1
	exec(`DELETE FROM t WHERE id = 21`)                    // 2
	exec(`INSERT INTO n VALUES (103, 3, 'new')`)           // 3
	exec(`DELETE FROM t WHERE id = 41`)                    // 4, then the same count
	exec(`INSERT INTO t VALUES (42, '4', 'v')`)            //
	exec(`UPDATE n SET v = 'x' WHERE uid = 5`)             // 5
	exec(`SELECT 1 FROM t WHERE user_id = '8' FOR UPDATE`) // 8: a lock only
	changed("1", "2", "3", "4", "5", "6", "7")

	// A subject whose rows moved to another subject's: both.
	exec(`UPDATE n SET uid = 9 WHERE uid = 8`)
	changed("1", "2", "3", "4", "5", "6", "7", "8", "9")

	_, err = s.ChangedSince(ctx, ds, "not a snapshot", subjects, read)
	if !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("a snapshot that is not one: %v, want ErrNotSupported", err)
	}
	// An id that matches the column's value but is not its text (a
	// number with a leading zero) cannot be told apart from the others.
	zero := slices.Concat(subjects[:8], []string{"09"})
	_, err = s.ChangedSince(ctx, ds, b.Snapshot, zero, read)
	if !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("an id that is not its value's text: %v, want ErrNotSupported", err)
	}
	path := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{tt, {Name: "n", Via: &domicile.Path{Subject: "user_id"}}}}
	_, err = s.ChangedSince(ctx, path, b.Snapshot, subjects, read)
	if !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("a dataset with a path table: %v, want ErrNotSupported", err)
	}
}

// TestChangedSinceNeedsTheSameServerAndTables checks that ChangedSince
// does not compare (ErrNotSupported: the caller reads the values) once the
// server's incarnation or the dataset's tables have changed since the read
// (a checkpoint, a column added without a rewrite, a table swapped for
// another of the same name), nor for a table whose column is of a type of
// the user's (an enum's labels can be renamed with no new row version).
func TestChangedSinceNeedsTheSameServerAndTables(t *testing.T) {
	ctx := context.Background()
	s, exec := changesStore(t)
	exec(`CREATE TYPE mood AS ENUM ('happy', 'sad')`)
	exec(`CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text)`)
	exec(`CREATE TABLE e (id bigint PRIMARY KEY, user_id text NOT NULL, m mood)`)
	ds, de := userDataset(t, s, "t"), userDataset(t, s, "e")
	if err := s.Install(ctx, []*domicile.Dataset{ds, de}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO t VALUES (1, 'a', 'v'), (2, 'b', 'v')`)
	exec(`INSERT INTO e VALUES (1, 'a', 'happy')`)
	subjects := []string{"a", "b"}
	read := func(ds *domicile.Dataset) (string, map[string]domicile.SubjectDigest) {
		t.Helper()
		return readForChanges(t, s, exec, ds, subjects)
	}
	compares := func(what string, ds *domicile.Dataset, snap string, d map[string]domicile.SubjectDigest, want bool) {
		t.Helper()
		_, err := s.ChangedSince(ctx, ds, snap, subjects, d)
		if got := !errors.Is(err, domicile.ErrNotSupported); got != want || (err != nil && want) {
			t.Errorf("%s: ChangedSince %v, want a comparison %v", what, err, want)
		}
	}

	snap, d := read(ds)
	compares("nothing changed", ds, snap, d, true)
	exec(`CHECKPOINT`)
	compares("after a checkpoint", ds, snap, d, false)

	snap, d = read(ds)
	exec(`ALTER TABLE t ADD COLUMN w text DEFAULT 'w'`)
	compares("after a column added with a default", ds, snap, d, false)

	snap, d = read(ds)
	exec(`ALTER TABLE t RENAME TO t_old`)
	exec(`CREATE TABLE t (LIKE t_old INCLUDING ALL)`)
	exec(`INSERT INTO t SELECT * FROM t_old`)
	compares("after the table was swapped for another", ds, snap, d, false)

	snap, d = read(de)
	compares("a column of an enum", de, snap, d, false)
}

// TestChangedSinceSubjectColumnRenamed: the statement that counts the rows
// fails when pgx prepares it (on a connection that has not run it yet),
// before the catalogue's check has run in its batch; the answer is still
// that the tables cannot be compared.
func TestChangedSinceSubjectColumnRenamed(t *testing.T) {
	ctx := context.Background()
	s, exec := changesStore(t)
	exec(`CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text)`)
	ds := userDataset(t, s, "t")
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO t VALUES (1, 'a', 'v'), (2, 'b', 'v')`)
	subjects := []string{"a", "b"}
	snap, d := readForChanges(t, s, exec, ds, subjects)
	exec(`ALTER TABLE t RENAME COLUMN user_id TO uid`)
	if _, err := s.ChangedSince(ctx, ds, snap, subjects, d); !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("ChangedSince %v, want ErrNotSupported", err)
	}
}

// changesStore opens a store for the ChangedSince tests and returns it with
// a function that runs a statement on it or fails the test.
func changesStore(t *testing.T) (*Store, func(string)) {
	s, _ := openTestStore(t, "us-east")
	t.Cleanup(func() { s.Close() })
	return s, func(q string) {
		t.Helper()
		if _, err := s.Pool().Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// userDataset returns tableDataset's dataset of the one table name, named
// after the table, so that a test can install several.
func userDataset(t *testing.T, s *Store, name string) *domicile.Dataset {
	t.Helper()
	ds := tableDataset(t, s, name)
	ds.Name = name
	return ds
}

// readForChanges reads the subjects' rows after a checkpoint, as a precopy
// does, and returns the batch's snapshot and the rows' digests.
func readForChanges(t *testing.T, s *Store, exec func(string), ds *domicile.Dataset, subjects []string) (string, map[string]domicile.SubjectDigest) {
	t.Helper()
	exec(`CHECKPOINT`)
	b, err := s.ReadSubjects(context.Background(), ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	d, err := domicile.DigestBatch(ds, subjects, b)
	if err != nil {
		t.Fatal(err)
	}
	return b.Snapshot, d
}
