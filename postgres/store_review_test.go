package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
)

// The tests of a review of the batched statements (ninth 2026-11-25
// session): each failed on the first batched version.

// A stale writer (the subject is live, Owned, here) must get ErrPrecondition
// and write nothing. A table outside the dataset references the live row.
func TestStaleWriteFailsItsCheckFirst(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if _, err := app.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (1, 'o')`); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `CREATE TABLE audit (id bigint PRIMARY KEY, note bigint REFERENCES t (id)); INSERT INTO audit VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	err := s.WriteSubjects(ctx, ds, []string{"o"}, &domicile.Batch{MoveID: "m"})
	if !errors.Is(err, domicile.ErrPrecondition) {
		t.Fatalf("stale write: %v; want ErrPrecondition", err)
	}
}

// A stale writer's check returns at once: it does not wait behind a live
// user's transaction on the subject's rows.
func TestStaleWriteDoesNotWaitForLiveRows(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if _, err := app.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (1, 'o')`); err != nil {
		t.Fatal(err)
	}
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE t SET v = 'live' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	err = s.WriteSubjects(wctx, ds, []string{"o"}, &domicile.Batch{MoveID: "m"})
	if !errors.Is(err, domicile.ErrPrecondition) {
		t.Fatalf("stale write after %v: %v; want ErrPrecondition at once", time.Since(start), err)
	}
}

// A claim whose move row cannot be read back is not committed: the caller
// is told it failed, and another worker can claim the move once it reads.
func TestClaimOfAnUnreadableMoveCommitsNothing(t *testing.T) {
	ctx := context.Background()
	c, err := OpenControl(ctx, pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.AddSubjects(ctx, []domicile.Subject{{ID: "u1", Country: "CN"}},
		[]domicile.Placement{{Subject: "u1", Dataset: "ds", Region: "a", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CreateMove(ctx, &domicile.Move{ID: "m1", Dataset: "ds", From: "a", To: "b", Subjects: []string{"u1"}}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, err := c.pool.Exec(ctx, `UPDATE moves SET receipt = 'not json' WHERE id = 'm1'`); err != nil {
		t.Fatal(err)
	}
	_, err = c.ClaimMove(ctx, "m1", "w1", time.Hour)
	if err == nil {
		t.Fatal("claim of an unreadable move succeeded")
	}
	var owner string
	var attempt int64
	if err := c.pool.QueryRow(ctx, `SELECT owner, attempt FROM moves WHERE id = 'm1'`).Scan(&owner, &attempt); err != nil {
		t.Fatal(err)
	}
	if owner != "" || attempt != 0 {
		t.Errorf("ClaimMove failed (%v) yet committed owner %q attempt %d", err, owner, attempt)
	}
	if _, err := c.pool.Exec(ctx, `UPDATE moves SET receipt = '{}' WHERE id = 'm1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ClaimMove(ctx, "m1", "w2", time.Hour); err != nil {
		t.Errorf("another worker's claim once the row reads: %v", err)
	}
}

// verify tells a region out of reach from one it cannot check.
func TestListOwnershipOutOfReach(t *testing.T) {
	s, err := NewStore(context.Background(), "postgres://x@127.0.0.1:1/x?connect_timeout=2", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.ListOwnership(context.Background(), "ds", func(domicile.Ownership) error { return nil })
	if !errors.Is(err, domicile.ErrUnavailable) {
		t.Errorf("ListOwnership of a server out of reach: %v; not ErrUnavailable", err)
	}
	err = s.ListRowSubjects(context.Background(), &domicile.Table{Name: "t", SubjectColumn: "user_id"}, func(string) error { return nil })
	if !errors.Is(err, domicile.ErrUnavailable) {
		t.Errorf("ListRowSubjects of a server out of reach: %v; not ErrUnavailable", err)
	}
}
