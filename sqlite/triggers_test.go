package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// TestTriggersSwitch checks the fast bypass: the driver's connection is the
// shape triggersSwitch knows (if a driver upgrade changes it, this fails
// rather than letting every move fall back to the slower bypass row
// unnoticed), the mover's transaction passes a fence with its connection's
// triggers off, and the store's write connection refuses the same write
// right after, as it does after a failed mover transaction.
func TestTriggersSwitch(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := testStore(t, "r1")
	tb := ds.Tables[0]
	cols := []string{"id", "user_id", "v"}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u1", Dataset: ds.Name, State: domicile.Fenced, Region: "r1", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRow(ctx, tb, "u1", cols, []any{int64(1), "u1", "before"}); !errors.Is(err, domicile.ErrFenced) {
		t.Fatalf("write to a fenced subject: got %v, want ErrFenced", err)
	}

	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	err = conn.Raw(func(dc any) (err error) {
		if ok, err = triggersSwitch(dc, false); err != nil || !ok {
			return err
		}
		_, err = triggersSwitch(dc, true)
		return err
	})
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("the driver's connection is not the one triggersSwitch knows: moves fall back to the bypass row")
	}

	if !moverWriteOff(t, s, 1) {
		t.Error("bypass wrote a bypass row: the triggers were not switched off")
	}
	for i := range 3 {
		if err := s.PutRow(ctx, tb, "u1", cols, []any{int64(2 + i), "u1", "after"}); !errors.Is(err, domicile.ErrFenced) {
			t.Fatalf("write %d after the bypass: got %v, want ErrFenced (triggers off?)", i, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM t WHERE id = 1`); !errors.Is(refusal(err), domicile.ErrFenced) {
		t.Fatalf("plain delete after the bypass: got %v, want the fence's refusal", err)
	}

	boom := errors.New("boom")
	if err := s.bypass(ctx, func(tx *sql.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("bypass returned %v, want %v", err, boom)
	}
	if err := s.PutRow(ctx, tb, "u1", cols, []any{int64(9), "u1", "after"}); !errors.Is(err, domicile.ErrFenced) {
		t.Fatalf("write after a failed bypass: got %v, want ErrFenced", err)
	}
}

// moverWriteOff inserts row id of u1 into t on the mover's connection and
// reports whether it passed the triggers with them off (no bypass row).
func moverWriteOff(t *testing.T, s *Store, id int64) bool {
	t.Helper()
	ctx := context.Background()
	var off bool
	err := s.bypass(ctx, func(tx *sql.Tx) error {
		// A bypass row, had one been written, would be visible here.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM domicile_bypass`).Scan(&n); err != nil {
			return err
		}
		off = n == 0
		_, err := tx.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (?, 'u1', 'mover')`, id)
		return err
	})
	if err != nil {
		t.Fatalf("the mover's write of row %d: %v", id, err)
	}
	return off
}

// TestMoverConnectionKeepsFences: the mover's connection keeps its
// triggers off from one transaction to the next, and a fence it writes
// still refuses every other writer: the store's write connection, plain
// SQL on it, and another connection to the file (a stale process), while
// the mover's own writes pass. A writer in flight when the fence begins
// finishes first.
func TestMoverConnectionKeepsFences(t *testing.T) {
	ctx := context.Background()
	s, ds, path := testStore(t, "r1")
	tb := ds.Tables[0]
	cols := []string{"id", "user_id", "v"}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u1", Dataset: ds.Name, State: domicile.Owned, Region: "r1", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	other, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (1, 'u1', 'app')`); err != nil {
		t.Fatalf("a plain write of an owned subject: %v", err)
	}
	if !moverWriteOff(t, s, 2) {
		t.Fatal("the mover's connection passed the triggers with a bypass row: its triggers are on")
	}

	// A writer in flight on another connection when the fence begins.
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (3, 'u1', 'in flight')`); err != nil {
		t.Fatal(err)
	}
	fenced := make(chan error, 1)
	go func() {
		fenced <- s.Transition(ctx, domicile.Transition{Dataset: ds.Name, MoveID: "m1", Subjects: []string{"u1"},
			From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced})
	}()
	time.Sleep(20 * time.Millisecond) // let the fence wait for the writer (not asserted)
	if err := tx.Commit(); err != nil {
		t.Fatalf("the writer in flight: %v", err)
	}
	if err := <-fenced; err != nil {
		t.Fatal(err)
	}
	if o, err := s.FindOwnership(ctx, ds.Name, "u1"); err != nil || o.State != domicile.Fenced || o.MoveID != "m1" {
		t.Fatalf("ownership after the fence: %+v, %v", o, err)
	}

	for i := range 2 {
		if _, err := other.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (?, 'u1', 'stale')`, 10+i); !errors.Is(refusal(err), domicile.ErrFenced) {
			t.Fatalf("plain write on another connection, after the fence: got %v, want the fence's refusal", err)
		}
		if _, err := other.ExecContext(ctx, `UPDATE t SET v = 'stale' WHERE id = 1`); !errors.Is(refusal(err), domicile.ErrFenced) {
			t.Fatalf("plain update on another connection, after the fence: got %v, want the fence's refusal", err)
		}
		if _, err := s.DB().ExecContext(ctx, `DELETE FROM t WHERE id = 1`); !errors.Is(refusal(err), domicile.ErrFenced) {
			t.Fatalf("plain delete on the store's write connection, after the fence: got %v, want the fence's refusal", err)
		}
		if err := s.PutRow(ctx, tb, "u1", cols, []any{int64(20 + i), "u1", "app"}); !errors.Is(err, domicile.ErrFenced) {
			t.Fatalf("the store's write after the fence: got %v, want ErrFenced", err)
		}
		// The mover's own writes pass, its triggers still off.
		if !moverWriteOff(t, s, int64(30+i)) {
			t.Fatal("the mover's connection passed the fence with a bypass row: its triggers are on")
		}
	}
	var ids []int64
	rows, err := s.DB().QueryContext(ctx, `SELECT id FROM t ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if want := []int64{1, 2, 3, 30, 31}; !slices.Equal(ids, want) {
		t.Fatalf("rows %v, want %v: the writer in flight, the mover's, and none refused", ids, want)
	}
}

// TestCaptureInstalled checks that install creates the capture triggers,
// that CheckInstall reports one missing, and that a captured subject's
// writes, and only those, are recorded.
func TestCaptureInstalled(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(filepath.Join(t.TempDir(), "a.db"), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.DB().Exec(`CREATE TABLE notes (id INTEGER, part TEXT, uid TEXT, body TEXT, PRIMARY KEY (id, part))`); err != nil {
		t.Fatal(err)
	}
	tb, err := s.DescribeTable(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	tb.SubjectColumn = "uid"
	ds := &domicile.Dataset{Name: "cloud", Tables: []*domicile.Table{tb}}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) != 0 {
		t.Fatalf("check after install: %v %v", problems, err)
	}
	if _, err := s.StartCapture(ctx, ds, "m1", []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO notes VALUES (1, 'a', 'u1', 'x')`,
		`INSERT INTO notes VALUES (2, 'a', 'u2', 'y')`, // not captured
		`UPDATE notes SET body = 'z' WHERE id = 1`,
		`UPDATE notes SET id = 3 WHERE id = 1`, // old and new key
		`UPDATE notes SET uid = 'u1' WHERE id = 2`,
		`DELETE FROM notes WHERE id = 3`,
	} {
		if _, err := s.DB().Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	changes, err := s.ReadChanges(ctx, ds, "m1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, fmt.Sprintf("%s %v", c.Subject, c.Key))
	}
	want := []string{"u1 [1 a]", "u1 [1 a]", "u1 [1 a]", "u1 [3 a]", "u1 [2 a]", "u1 [3 a]"}
	if !slices.Equal(got, want) {
		t.Fatalf("changes %q, want %q", got, want)
	}
	if err := s.EndCapture(ctx, ds, "m1"); err != nil {
		t.Fatal(err)
	}
	if changes, err := s.ReadChanges(ctx, ds, "m1", 0, 0); err != nil || len(changes) != 0 {
		t.Fatalf("changes after the end: %v %v", changes, err)
	}
	if _, err := s.DB().Exec(`DROP TRIGGER domicile_notes_cap_upd`); err != nil {
		t.Fatal(err)
	}
	problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds})
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0], "domicile_notes_cap_upd") {
		t.Fatalf("check without a capture trigger: %v %v", problems, err)
	}
}

// TestBypassKeepsApplicationTriggers checks that the mover's writes fire the
// application's own triggers (here an audit table, as a full-text index
// would be kept): with a trigger that is not domicile's in the database,
// bypass passes domicile's triggers with the bypass row instead of
// switching every trigger off.
func TestBypassKeepsApplicationTriggers(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := testStore(t, "r1")
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE audit (id INTEGER, what TEXT);
		CREATE TRIGGER app_audit AFTER INSERT ON t BEGIN INSERT INTO audit VALUES (NEW.id, 'insert'); END;
		CREATE TRIGGER app_audit_del AFTER DELETE ON t BEGIN INSERT INTO audit VALUES (OLD.id, 'delete'); END`); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u1", Dataset: ds.Name, State: domicile.Fenced, Region: "r1", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	err := s.bypass(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (1, 'u1', 'mover'), (2, 'u1', 'mover')`)
		return err
	})
	if err != nil {
		t.Fatalf("the mover's write to a fenced subject: %v", err)
	}
	if _, err := s.PurgeSubjects(ctx, ds, []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	var ins, del int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE what = 'insert'), count(*) FILTER (WHERE what = 'delete') FROM audit`).Scan(&ins, &del); err != nil {
		t.Fatal(err)
	}
	if ins != 2 || del != 2 {
		t.Fatalf("the application's triggers saw %d inserts and %d deletes of the mover's, want 2 and 2", ins, del)
	}
	// domicile's own triggers still refuse everyone else.
	if err := s.PutRow(ctx, ds.Tables[0], "u1", []string{"id", "user_id", "v"}, []any{int64(3), "u1", "app"}); !errors.Is(err, domicile.ErrFenced) {
		t.Fatalf("an application write to a fenced subject: %v, want ErrFenced", err)
	}
}

// TestApplicationTriggerAddedLater checks that the mover's transactions
// notice a trigger of the application's created after they last looked
// (they keep what they found until the schema changes): the mover's next
// write fires it.
func TestApplicationTriggerAddedLater(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := testStore(t, "r1")
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u1", Dataset: ds.Name, State: domicile.Fenced, Region: "r1", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	write := func(id int) {
		t.Helper()
		err := s.bypass(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (?, 'u1', 'mover')`, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(1) // no trigger of the application's: the mover's connection switches them off
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE audit (id INTEGER);
		CREATE TRIGGER app_audit AFTER INSERT ON t BEGIN INSERT INTO audit VALUES (NEW.id); END`); err != nil {
		t.Fatal(err)
	}
	write(2)
	var ids []int64
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM audit`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(ids) != 1 || ids[0] != 2 {
		t.Fatalf("the application's trigger saw the mover's inserts %v, want [2]", ids)
	}
}

// TestAppWritesQueueWithTheMover: the application's row writes (PutRow,
// DeleteRow) take their turn with the mover's transactions on its own
// connection instead of meeting them at SQLite's file lock, where the busy
// handler's sleeps lose every race to a mover writing back to back and
// the write fails with SQLITE_BUSY after busy_timeout.
func TestAppWritesQueueWithTheMover(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := testStore(t, "r1")
	tb := ds.Tables[0]
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u1", Dataset: ds.Name, State: domicile.Owned, Region: "r1", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	// Each waits for the queue: with the turn held, neither writes.
	unlock, err := s.lockWrites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	putErr := s.PutRow(short, tb, "u1", []string{"id", "user_id", "v"}, []any{int64(99), "u1", "queued"})
	_, delErr := s.DeleteRow(short, tb, "u1", []any{int64(99)})
	cancel()
	unlock()
	if !errors.Is(putErr, context.DeadlineExceeded) || !errors.Is(delErr, context.DeadlineExceeded) {
		t.Fatalf("PutRow and DeleteRow while another holds the write turn: %v, %v; want both to wait for it", putErr, delErr)
	}

	var stop atomic.Bool
	var moved atomic.Int64
	moverDone := make(chan error, 2)
	for g := range 2 { // two workers on one store
		go func() {
			id := int64(1_000_000 * (g + 1))
			for !stop.Load() {
				err := s.bypass(ctx, func(tx *sql.Tx) error {
					id++
					_, err := tx.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (?, 'm', 'mover')`, id)
					time.Sleep(5 * time.Millisecond)
					return err
				})
				if err != nil {
					moverDone <- err
					return
				}
				moved.Add(1)
			}
			moverDone <- nil
		}()
	}
	for moved.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	for i := range 20 {
		if err := s.PutRow(ctx, tb, "u1", []string{"id", "user_id", "v"}, []any{int64(i), "u1", "app"}); err != nil {
			t.Errorf("write %d while the mover writes: %v", i, err)
		}
		if _, err := s.DeleteRow(ctx, tb, "u1", []any{int64(i)}); err != nil {
			t.Errorf("delete %d while the mover writes: %v", i, err)
		}
	}
	stop.Store(true)
	for range 2 {
		if err := <-moverDone; err != nil {
			t.Fatal(err)
		}
	}
}

// TestOwnershipOfNonUTF8Subject: a subject id that is not valid UTF-8 (as
// discover may read from a BLOB or latin-1 column) keeps its bytes in the
// ownership table, and transitions find it.
func TestOwnershipOfNonUTF8Subject(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := testStore(t, "r1")
	subjects := []string{"caf\xe9", "na\xefve", "plain"}
	var os []domicile.Ownership
	for _, sub := range subjects {
		os = append(os, domicile.Ownership{Subject: sub, Dataset: ds.Name, State: domicile.Owned, Region: "r1", Epoch: 1})
	}
	if err := s.SetOwnership(ctx, os); err != nil {
		t.Fatal(err)
	}
	if err := s.Transition(ctx, domicile.Transition{Dataset: ds.Name, MoveID: "m1", Subjects: subjects,
		From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range subjects {
		o, err := s.FindOwnership(ctx, ds.Name, sub)
		if err != nil || o.State != domicile.Fenced || o.Subject != sub {
			t.Errorf("ownership of %q: %+v, %v; want it fenced under its own id", sub, o, err)
		}
	}
}
