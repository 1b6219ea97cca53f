package mover_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// blinking is a real store that a test can take out of reach: while down,
// or for its next `fails` calls, the mover's calls fail with ErrUnavailable.
type blinking struct {
	domicile.Store
	down  atomic.Bool
	fails atomic.Int32
}

func (s *blinking) gone() error {
	err := fmt.Errorf("region %s: %w", s.Region(), domicile.ErrUnavailable)
	if s.down.Load() {
		return err
	}
	for {
		n := s.fails.Load()
		if n <= 0 {
			return nil
		}
		if s.fails.CompareAndSwap(n, n-1) {
			return err
		}
	}
}

func (s *blinking) Transition(ctx context.Context, t domicile.Transition) error {
	if err := s.gone(); err != nil {
		return err
	}
	return s.Store.Transition(ctx, t)
}

func (s *blinking) ReadSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (*domicile.Batch, error) {
	if err := s.gone(); err != nil {
		return nil, err
	}
	return s.Store.ReadSubjects(ctx, ds, subjects)
}

func (s *blinking) WriteSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, b *domicile.Batch) error {
	if err := s.gone(); err != nil {
		return err
	}
	return s.Store.WriteSubjects(ctx, ds, subjects, b)
}

func (s *blinking) DigestSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (map[string]domicile.SubjectDigest, error) {
	if err := s.gone(); err != nil {
		return nil, err
	}
	return s.Store.DigestSubjects(ctx, ds, subjects)
}

func (s *blinking) PurgeMoved(ctx context.Context, ds *domicile.Dataset, moveID string, subjects []string) (int64, error) {
	if err := s.gone(); err != nil {
		return 0, err
	}
	return s.Store.PurgeMoved(ctx, ds, moveID, subjects)
}

// TestGateNeverHoldsABegunMove: a move a→b is fenced at a when both
// regions go out of reach, so its rollback cannot give a back. When a comes
// back, with b still down, the rollback must go on and give the subjects
// back at a: the gate holds only moves that have not begun.
func TestGateNeverHoldsABegunMove(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnv(t, 30)
	a := &blinking{Store: e.stores["a"]}
	b := &blinking{Store: e.stores["b"]}
	e.stores["a"], e.stores["b"] = a, b
	stores := map[string]*blinking{"a": a, "b": b}
	var fenced atomic.Bool
	probe := func(ctx context.Context, region string) error {
		if stores[region].down.Load() {
			return fmt.Errorf("region %s: %w", region, domicile.ErrUnavailable)
		}
		return nil
	}
	m := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "gate-test", Now: e.clock.Now, MaxBlock: time.Hour, NoPrecopy: true,
		Probe: probe,
		AfterStep: func(mv *domicile.Move, s domicile.MoveState) {
			if s == domicile.MoveFenced && fenced.CompareAndSwap(false, true) {
				a.down.Store(true)
				b.down.Store(true)
			}
		},
	})
	done := make(chan error, 1)
	go func() {
		_, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 100, Workers: 1, RetryFor: time.Minute})
		done <- err
	}()
	// Wait for the move to be rolling back, fenced at a.
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for id == "" {
		moves, err := e.ctrl.ListMoves(ctx, domicile.MoveRollingBack)
		if err != nil {
			t.Fatal(err)
		}
		if len(moves) > 0 {
			id = moves[0].ID
		}
		if time.Now().After(deadline) {
			t.Fatal("no move rolling back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mv, err := e.ctrl.FindMove(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	subject := mv.Subjects[0]
	time.Sleep(200 * time.Millisecond)
	a.down.Store(false) // a is back; b stays down
	t.Log("a back at", time.Now().Format("15:04:05.000"))
	time.Sleep(5 * time.Second)
	o, err := a.Store.FindOwnership(ctx, "social", subject)
	if err != nil {
		t.Fatal(err)
	}
	mv, _ = e.ctrl.FindMove(ctx, id)
	t.Logf("5s after a came back, with b still down: subject %s at a is %q (move %s %s)", subject, o.State, id, mv.State)
	if o.State == domicile.Fenced {
		t.Errorf("subject %s still fenced at a 5s after a came back: the gate holds a move that must roll back", subject)
	}
	b.down.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("migrate did not finish")
	}
	o, _ = a.Store.FindOwnership(ctx, "social", subject)
	t.Logf("after b came back: subject %s at a is %q", subject, o.State)
}

// TestGateForgetsAnOutageThatEnded: a worker that marked b down (at its
// start) and then ran no move that has not begun, none of which would
// probe b, must not count a later blip of b from that old mark: one blip
// under a begun move is snoozed, not cancelled as out of reach for longer
// than retry_for.
func TestGateForgetsAnOutageThatEnded(t *testing.T) {
	for _, stale := range []bool{false, true} {
		t.Run(fmt.Sprint("stale=", stale), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 30)
			b := &blinking{Store: e.stores["b"]}
			e.stores["b"] = b
			// A first run stops after the commit: b blips at the activation.
			first := mover.New(mover.Config{
				Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
				Owner: "first", Now: e.clock.Now, MaxBlock: time.Hour,
				AfterStep: func(mv *domicile.Move, s domicile.MoveState) {
					if s == domicile.MoveTombstoned {
						b.fails.Store(1)
					}
				},
			})
			mv := e.createMove(t)
			if _, err := first.Run(ctx, mv.ID); err == nil {
				t.Fatal("first run did not fail")
			}
			got, _ := e.ctrl.FindMove(ctx, mv.ID)
			t.Logf("after the first run: %s", got.State)

			m := mover.New(mover.Config{
				Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
				Owner: "worker", Now: e.clock.Now, MaxBlock: time.Hour,
				Probe: func(context.Context, string) error { return nil }, // b is up
			})
			if stale {
				m.MarkDown("b", domicile.ErrUnavailable) // the worker started while b was down
			}
			q := newQueue(t, e, m, mover.QueueOptions{Workers: 1, RetryFor: 2 * time.Second, Sweep: -1})
			time.Sleep(2500 * time.Millisecond) // b has been back for a while
			b.fails.Store(1)                    // one more blip
			if err := q.Enqueue(ctx, mover.MoveArgs{MoveID: mv.ID, Attempt: got.Attempt}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				var state, errs string
				_ = e.ctrl.DB().QueryRow(`SELECT state, coalesce(errors, '') FROM river_job WHERE kind = 'domicile_move'`).Scan(&state, &errs)
				cur, _ := e.ctrl.FindMove(ctx, mv.ID)
				if state == "cancelled" || cur.State.Done() {
					t.Logf("job %s, move %s; errors %s", state, cur.State, errs)
					if state == "cancelled" {
						t.Errorf("one blip of b cancelled the job of a committed move (stale gate entry: %v)", stale)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("job %s, move %s", state, cur.State)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestGateHeldJobsOutlastAProbeThatHangs: while one probe of a region that
// does not answer runs (until probeTimeout), the other held jobs wait for
// it rather than snooze every 250 ms, and their outage is counted in time,
// not in snoozes: once the region is back, one blip cancels no job.
func TestGateHeldJobsOutlastAProbeThatHangs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 60)
	b := &blinking{Store: e.stores["b"]}
	e.stores["b"] = b
	b.down.Store(true)
	var probeDown atomic.Bool
	probeDown.Store(true)
	m := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "worker", Now: e.clock.Now, MaxBlock: time.Hour,
		Probe: func(ctx context.Context, region string) error {
			if region == "b" && probeDown.Load() {
				<-ctx.Done() // packets dropped: no answer
				return ctx.Err()
			}
			return nil
		},
	})
	m.MarkDown("b", domicile.ErrUnavailable)
	q := newQueue(t, e, m, mover.QueueOptions{Workers: 4, RetryFor: time.Minute, Sweep: -1})
	p, err := e.plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subjects := p.Routes[0].Subjects
	for i := range 4 {
		mv := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "a", To: "b", Rule: "brazil", Subjects: subjects[i*5 : i*5+5]}
		if ok, err := e.ctrl.CreateMove(ctx, mv); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := q.Enqueue(ctx, mover.MoveArgs{MoveID: mv.ID}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	time.Sleep(7 * time.Second)
	rows, err := e.ctrl.DB().Query(`SELECT json_extract(metadata, '$.snoozes') FROM river_job WHERE kind = 'domicile_move'`)
	if err != nil {
		t.Fatal(err)
	}
	var snoozes []int
	for rows.Next() {
		var n *int
		rows.Scan(&n)
		if n != nil {
			snoozes = append(snoozes, *n)
		}
	}
	rows.Close()
	t.Logf("after %s of outage, 4 held jobs, snoozes per job: %v", time.Since(start).Round(time.Second), snoozes)
	for _, n := range snoozes {
		// A probe hangs 5 s, then the backoff grows: a handful each.
		if n > 8 {
			t.Errorf("a held job snoozed %d times in %s: %v", n, time.Since(start).Round(time.Second), snoozes)
		}
	}
	probeDown.Store(false) // b answers the probe; its first uses still fail for a moment
	time.Sleep(1500 * time.Millisecond)
	b.down.Store(false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cancelled, left int
		e.ctrl.DB().QueryRow(`SELECT count(*) FROM river_job WHERE state = 'cancelled'`).Scan(&cancelled)
		e.ctrl.DB().QueryRow(`SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'cancelled', 'discarded')`).Scan(&left)
		if left == 0 {
			if cancelled > 0 {
				var errs string
				e.ctrl.DB().QueryRow(`SELECT coalesce(errors, '') FROM river_job WHERE state = 'cancelled'`).Scan(&errs)
				t.Errorf("%d job(s) cancelled after an outage of ~7s and one blip (retry_for 1m): %q", cancelled, errs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs left", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestGateFailsMovesThatNeverBegan: with b down from the start and for
// longer than retry_for, Migrate's moves into b count as failed without
// beginning: none prepares and rolls back.
func TestGateFailsMovesThatNeverBegan(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 30)
	b := &blinking{Store: e.stores["b"]}
	e.stores["b"] = b
	b.down.Store(true)
	var prepares atomic.Int32
	m := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "m", Now: e.clock.Now, MaxBlock: time.Hour,
		Probe: func(ctx context.Context, region string) error {
			if region == "b" && b.down.Load() {
				return fmt.Errorf("region b: %w", domicile.ErrUnavailable)
			}
			return nil
		},
		AfterStep: func(mv *domicile.Move, s domicile.MoveState) {
			if s == domicile.MoveRollingBack {
				prepares.Add(1)
			}
		},
	})
	m.MarkDown("b", domicile.ErrUnavailable)
	start := time.Now()
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 5, Workers: 2, RetryFor: 3 * time.Second, Passes: 1})
	t.Logf("Migrate returned after %s (retry_for 3s): failed %d, err %v; rollbacks begun %d", time.Since(start).Round(100*time.Millisecond), sum.Failed, err, prepares.Load())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed == 0 || sum.Subjects != 0 || prepares.Load() != 0 {
		t.Errorf("moves into b, down throughout: %d subjects moved, %d failed, %d rollbacks begun; want none moved, all failed, none begun",
			sum.Subjects, sum.Failed, prepares.Load())
	}
}

// TestGateHoldsARegionItCannotUse: b was down at the start (MarkDown); it
// answers now, but the probe (the command's, which installs there) keeps
// failing with another error. Its moves never begin, also once retry_for
// has passed.
func TestGateHoldsARegionItCannotUse(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 30)
	var probes atomic.Int32
	m := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "m", Now: e.clock.Now, MaxBlock: time.Hour,
		Probe: func(ctx context.Context, region string) error {
			probes.Add(1)
			return fmt.Errorf("region %s: install: cannot make constraint", region)
		},
	})
	m.MarkDown("b", domicile.ErrUnavailable)
	start := time.Now()
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 5, Workers: 2, RetryFor: 2 * time.Second, Passes: 1})
	t.Logf("after %s: moved %d, failed %d, err %v; %d probes, none succeeded", time.Since(start).Round(100*time.Millisecond), sum.Subjects, sum.Failed, err, probes.Load())
	if sum.Subjects > 0 || sum.Failed == 0 {
		t.Errorf("%d subjects moved into b, whose probe (install) never succeeded; %d failed", sum.Subjects, sum.Failed)
	}
}
