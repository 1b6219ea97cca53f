package mover_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// TestLiveResumeAfterLaterMove: a live move dies after its tombstone (and,
// in one variant, after its activation but before its record, with a
// write at the destination); a later move b→a takes its subject on. The
// live move, resumed, must still finish, its subject counted superseded,
// and verify pass.
func TestLiveResumeAfterLaterMove(t *testing.T) {
	for _, activated := range []bool{false, true} {
		t.Run(map[bool]string{false: "tombstoned", true: "activated-before-record"}[activated], func(t *testing.T) {
			ctx := context.Background()
			e, _, _ := newLiveEnv(t, 300, "sqlite", "sqlite")
			var m1id string
			hook := func(m *domicile.Move, s domicile.MoveState) {
				if s == domicile.MoveTombstoned && len(m.Subjects) == 1 {
					m1id = m.ID
					runtime.Goexit()
				}
			}
			e.liveMover("victim", hook).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10, Workers: 1, Passes: 1})
			if m1id == "" {
				t.Fatal("no crash")
			}
			m1, err := e.ctrl.FindMove(ctx, m1id)
			if err != nil {
				t.Fatal(err)
			}
			if m1.State != domicile.MoveCommitted || m1.Receipt.Live == nil {
				t.Fatalf("M1 recorded %s, live %v; want a live move recorded committed", m1.State, m1.Receipt.Live != nil)
			}
			if activated {
				epochs, err := e.ctrl.MoveEpochs(ctx, m1)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.stores["b"].Transition(ctx, domicile.Transition{Dataset: "social", MoveID: m1.ID, Subjects: m1.Subjects,
					From: []domicile.OwnerState{domicile.Incoming}, Own: true, To: domicile.Owned, Region: "b", Epochs: epochs}); err != nil {
					t.Fatal(err)
				}
				// a write at b, now the owner
				if err := e.stores["b"].PutRow(ctx, e.ds.Tables[1], liveSubject, []string{"post_id", "user_id", "body", "n"}, []any{int64(9_999_999), liveSubject, "new", int64(1)}); err != nil {
					t.Fatal(err)
				}
			}
			m2 := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "b", To: "a", Rule: "back", Subjects: []string{liveSubject}}
			if ok, err := e.ctrl.CreateMove(ctx, m2); !ok || err != nil {
				t.Fatal(ok, err)
			}
			res, err := e.mover("other", nil).Run(ctx, m2.ID)
			t.Logf("M2: %s %v", res.Move.State, err)
			e.clock.Add(10 * time.Second)
			res, err = e.liveMover("rescuer", nil).Run(ctx, m1id)
			if err != nil || res.Move.State != domicile.MovePurged {
				t.Fatalf("M1 after the takeover: %s %v", res.Move.State, err)
			}
			if res.Move.Receipt.Superseded != 1 {
				t.Errorf("M1's receipt counts %d subjects superseded, want 1", res.Move.Receipt.Superseded)
			}
			// The victim's other batches, left planned, and whatever the
			// policy still requires.
			e.clock.Add(10 * time.Second)
			if _, err := e.liveMover("finisher", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10, Workers: 1}); err != nil {
				t.Fatal(err)
			}
			if rep := e.verify(t); !rep.OK {
				t.Errorf("verify: %+v", rep)
			}
		})
	}
}
