package mover_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// TestRateWaitKeepsTheLease: migrate (without a queue) with a rate, while
// serve's queue sweeps open moves, as in production. A batch waiting for
// its rows' turn longer than the lease (3 s) keeps its lease renewed, so
// serve does not take it over and run it unthrottled.
func TestRateWaitKeepsTheLease(t *testing.T) {
	ctx := context.Background()
	e := newEnvOn(t, 30, "postgres", "postgres") // 10 Brazilians, 60 rows
	stop := make(chan struct{})
	go func() { // the env's clock follows real time
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				e.clock.Add(10 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { close(stop) })
	var mu sync.Mutex
	byServe := map[string]bool{}
	var first time.Time
	serve := e.moverWith("serve", 3*time.Second, func(mv *domicile.Move, _ domicile.MoveState) {
		mu.Lock()
		byServe[mv.ID] = true
		if first.IsZero() {
			first = time.Now()
		}
		mu.Unlock()
	})
	newQueue(t, e, serve, mover.QueueOptions{Workers: 2, Sweep: 100 * time.Millisecond})
	mig := e.moverWith("migrate", 3*time.Second, nil)
	start := time.Now()
	// One move of 60 rows at 10 rows/s: 10 at once, the other 50 in 5 s.
	sum, err := mig.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10, Workers: 1, Rate: 10})
	if err != nil || sum.Subjects != 10 {
		t.Fatalf("%+v %v", sum, err)
	}
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if len(byServe) > 0 {
		t.Errorf("60 rows at 10 rows/s: migrate returned after %s, but serve's sweep took the move and began it %s after the start, unthrottled",
			took, first.Sub(start))
	}
}

// TestRateWaitOutlastsJobTimeout: a queued move waits for its rows' turn
// inside its job; JobTimeout (default 15 min) bounds the move, not that
// wait, or a move whose rows at the rate take longer could never start
// (2 s here stands for 15 min; 60 rows at 10 rows/s for a 1,000,000-row
// subject at 1,000 rows/s).
func TestRateWaitOutlastsJobTimeout(t *testing.T) {
	e := newEnvOn(t, 30, "postgres", "postgres") // 10 Brazilians, 60 rows
	m := e.mover("m", nil)
	q := newQueue(t, e, m, mover.QueueOptions{Workers: 1, JobTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10, Queue: q, Rate: 10})
	if err != nil || sum.Subjects != 10 {
		var attempt int
		var errs string
		_ = e.ctrl.DB().QueryRow(`SELECT attempt, coalesce(errors, '') FROM river_job WHERE kind = 'domicile_move'`).Scan(&attempt, &errs)
		t.Logf("job: attempt %d, errors %s", attempt, errs)
		t.Fatalf("one move of 60 rows at 10 rows/s (5 s), job timeout 2 s: after %s: %+v %v", time.Since(start), sum, err)
	}
}

// TestRateWaitIsNotADeadWorker: a queued move whose rows' turn under the
// rate is further off than three leases is not taken for one whose worker
// died before claiming it (Migrate enqueues such a move again, and the
// second job would wait for the rate too): the worker claims the move
// before it waits, and keeps its lease.
func TestRateWaitIsNotADeadWorker(t *testing.T) {
	e := newEnvOn(t, 30, "postgres", "postgres") // 10 Brazilians, 60 rows
	m := e.moverWith("m", time.Second, nil)
	q := newQueue(t, e, m, mover.QueueOptions{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One move of 60 rows at 10 rows/s: 10 at once, the other 50 in 5 s,
	// past three leases of 1 s.
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10, Queue: q, Rate: 10})
	if err != nil || sum.Subjects != 10 {
		t.Fatalf("%+v %v", sum, err)
	}
	var jobs int
	if err := e.ctrl.DB().QueryRow(`SELECT count(*) FROM river_job WHERE kind = 'domicile_move'`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 {
		t.Errorf("%d jobs for one move: Migrate took its wait for the rate for a dead worker's and enqueued it again", jobs)
	}
}
