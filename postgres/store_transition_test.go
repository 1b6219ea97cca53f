package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// ownRows gives the subjects of dataset ds ownership rows: owned, epoch 1.
func ownRows(t *testing.T, s *Store, ids ...string) {
	t.Helper()
	rows := make([]domicile.Ownership, len(ids))
	for i, id := range ids {
		rows[i] = domicile.Ownership{Subject: id, Dataset: "ds", State: domicile.Owned, Epoch: 1}
	}
	if err := s.SetOwnership(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
}

// async runs f in a goroutine and returns where its error will come.
func async(f func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

// stillWaiting fails the test if c delivers within 300 ms: what sends on
// it still waits for a lock.
func stillWaiting(t *testing.T, c <-chan error) {
	t.Helper()
	select {
	case err := <-c:
		t.Fatalf("did not wait: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
}

// A fence (the transition's single UPDATE) waits for a writer in flight,
// and a write after it is refused.
func TestTransitionWaitsForWriter(t *testing.T) {
	ctx := context.Background()
	s, _, app := triggerStore(t, "")
	ownRows(t, s, "a", "b")
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (1, 'a')`); err != nil {
		t.Fatal(err)
	}
	fence := async(func() error {
		return s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: "m1", Subjects: []string{"b", "a"},
			From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced})
	})
	stillWaiting(t, fence)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-fence; err != nil {
		t.Fatal(err)
	}
	_, err = app.Exec(ctx, `INSERT INTO t (id, user_id) VALUES (2, 'a')`)
	if !errors.Is(refusal(err), domicile.ErrFenced) {
		t.Fatalf("a write after the fence: %v, want a refusal as fenced", err)
	}
}

// A transition that waited for another transaction's change of a row
// decides on the row as that transaction left it: a row pushed past the
// epoch cap fails the transition, and nothing is written; values it does
// not write (another epoch, the capture flag) are kept.
func TestTransitionDecidesOnTheRowAsChanged(t *testing.T) {
	ctx := context.Background()
	s, _, app := triggerStore(t, "")
	for _, tc := range []struct {
		name, change string
		ok           bool
	}{
		{"past the cap", `UPDATE domicile_owner SET epoch = 9 WHERE subject = 'a' AND dataset = 'ds'`, false},
		{"other values", `UPDATE domicile_owner SET epoch = 2, capture = true WHERE subject = 'a' AND dataset = 'ds'`, true},
	} {
		ownRows(t, s, "a", "b")
		if _, err := app.Exec(ctx, `UPDATE domicile_owner SET capture = false WHERE dataset = 'ds'`); err != nil {
			t.Fatal(err)
		}
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, tc.change); err != nil {
			t.Fatal(err)
		}
		done := async(func() error {
			return s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: "m1", Subjects: []string{"b", "a"},
				From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced, MaxEpoch: map[string]int64{"a": 3, "b": 3}})
		})
		stillWaiting(t, done)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		err = <-done
		var got string
		if qerr := app.QueryRow(ctx, `SELECT string_agg(subject || ':' || state || ':' || epoch || ':' || capture, ' ' ORDER BY subject)
			FROM domicile_owner WHERE dataset = 'ds' AND subject IN ('a', 'b')`).Scan(&got); qerr != nil {
			t.Fatal(qerr)
		}
		if tc.ok {
			if err != nil || got != "a:fenced:2:true b:fenced:1:false" {
				t.Fatalf("%s: %v, rows %s", tc.name, err, got)
			}
		} else if !errors.Is(err, domicile.ErrPrecondition) || got != "a:owned:9:false b:owned:1:false" {
			t.Fatalf("%s: %v, rows %s; want a precondition failure and nothing written", tc.name, err, got)
		}
	}
}

// Two transitions of the same rows at once, one taking the single UPDATE
// with its subjects in one order, the other the read with them in
// another, released together by a writer: neither fails as a deadlock's
// victim.
func TestConcurrentTransitionsOfTheSameRows(t *testing.T) {
	ctx := context.Background()
	s, _, app := triggerStore(t, "")
	var ids, rev []string
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("s%02d", i))
		rev = append([]string{fmt.Sprintf("s%02d", i)}, rev...)
	}
	ownRows(t, s, ids...)
	for round := range 5 {
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM domicile_owner WHERE dataset = 'ds' AND subject = ANY($1) FOR SHARE`, ids); err != nil {
			t.Fatal(err)
		}
		move := fmt.Sprintf("m%d", round)
		update := async(func() error {
			return s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: move, Subjects: rev,
				From: []domicile.OwnerState{domicile.Owned, domicile.Fenced}, To: domicile.Fenced})
		})
		read := async(func() error { // "" in From: the read
			return s.Transition(ctx, domicile.Transition{Dataset: "ds", MoveID: move, Subjects: ids,
				From: []domicile.OwnerState{"", domicile.Owned, domicile.Fenced}, Lenient: true, To: domicile.Fenced})
		})
		time.Sleep(200 * time.Millisecond)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err1, err2 := <-update, <-read; err1 != nil || err2 != nil {
			t.Fatalf("round %d: the UPDATE: %v; the read: %v", round, err1, err2)
		}
		if _, err := app.Exec(ctx, `UPDATE domicile_owner SET state = 'owned', move_id = '' WHERE dataset = 'ds'`); err != nil {
			t.Fatal(err)
		}
	}
}
