package mover_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// newQueue starts a queue on the env's control store; the test's cleanup
// stops it before the stores close.
func newQueue(t *testing.T, e *env, m *mover.Mover, opts mover.QueueOptions) *mover.Queue {
	t.Helper()
	ctx := context.Background()
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	q, err := mover.NewQueue(ctx, e.ctrl.DB(), m, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return q
}

// moverWith returns a mover of the env with extra settings.
func (e *env) moverWith(owner string, lease time.Duration, hook func(*domicile.Move, domicile.MoveState)) *mover.Mover {
	return mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: owner, Now: e.clock.Now, AfterStep: hook, MaxBlock: time.Hour, Lease: lease,
	})
}

// createMove plans one move of every Brazilian subject by hand.
func (e *env) createMove(t *testing.T) *domicile.Move {
	t.Helper()
	ctx := context.Background()
	p, err := e.plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mv := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "a", To: "b", Rule: "brazil", Subjects: p.Routes[0].Subjects}
	if ok, err := e.ctrl.CreateMove(ctx, mv); !ok || err != nil {
		t.Fatal(ok, err)
	}
	return mv
}

// waitMove waits until the move is finished.
func (e *env) waitMove(t *testing.T, id string) *domicile.Move {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mv, err := e.ctrl.FindMove(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if mv.State.Done() {
			return mv
		}
		if time.Now().After(deadline) {
			t.Fatalf("move %s still %s after 20s", id, mv.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) riverJobs(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.ctrl.DB().QueryRow(`SELECT count(*) FROM river_job WHERE kind = 'domicile_move'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestQueueMigrate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 60)
	m := e.mover("m1", nil)
	q := newQueue(t, e, m, mover.QueueOptions{Workers: 3})
	var mu sync.Mutex
	var progress []mover.Progress
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 4, Queue: q, Progress: func(p mover.Progress) {
		mu.Lock()
		progress = append(progress, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Subjects != 20 || sum.Rows != 120 || sum.Bytes == 0 || sum.Failed != 0 || sum.Moves != 5 {
		t.Fatalf("summary %+v", sum)
	}
	if len(progress) != 5 || progress[4].Done != 20 || progress[4].Total != 20 || progress[4].Rows != 120 || progress[4].Move == nil {
		t.Fatalf("progress %+v", progress)
	}
	if n := e.riverJobs(t); n != 5 {
		t.Fatalf("%d River jobs, want one per move", n)
	}
	e.checkMoved(t)
	if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
		t.Fatalf("verify %+v", rep)
	}
	// A second queue on the same store (a second process) starts with the
	// schema in place; nothing is left to do.
	q2 := newQueue(t, e, e.mover("m2", nil), mover.QueueOptions{})
	sum, err = e.mover("m2", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Queue: q2})
	if err != nil || sum.Moves != 0 {
		t.Fatalf("second run: %+v %v", sum, err)
	}
}

// TestQueueTwoProcesses shares one migration between two queues with their
// own movers, as two worker processes would.
func TestQueueTwoProcesses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 90)
	var ran [2]atomic.Int32
	movers := make([]*mover.Mover, 2)
	for i := range movers {
		movers[i] = e.moverWith(fmt.Sprintf("p%d", i), 0, func(m *domicile.Move, s domicile.MoveState) {
			if s == domicile.MoveFenced {
				ran[i].Add(1)
				time.Sleep(5 * time.Millisecond) // let the other process fetch too
			}
		})
	}
	q0 := newQueue(t, e, movers[0], mover.QueueOptions{Workers: 2})
	newQueue(t, e, movers[1], mover.QueueOptions{Workers: 2})
	sum, err := movers[0].Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 2, Queue: q0})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Subjects != 30 || sum.Moves != 15 || sum.Failed != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if a, b := ran[0].Load(), ran[1].Load(); a+b != 15 {
		t.Fatalf("moves fenced %d + %d times, want 15 in all", a, b)
	} else {
		t.Logf("process 0 ran %d moves, process 1 ran %d", a, b)
	}
	e.checkMoved(t)
	if rep := e.verify(t); !rep.OK {
		t.Fatalf("verify %+v", rep)
	}
}

// TestQueueDuplicateJobs enqueues one move twice (one job), then under two
// different attempts (two jobs, as after a sweep): the move runs once.
func TestQueueDuplicateJobs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 12)
	var fenced atomic.Int32
	m := e.moverWith("w", 0, func(_ *domicile.Move, s domicile.MoveState) {
		if s == domicile.MoveFenced {
			fenced.Add(1)
		}
	})
	q, err := mover.NewQueue(ctx, e.ctrl.DB(), m, mover.QueueOptions{Workers: 3, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mv := e.createMove(t)
	for range 2 {
		if err := q.Enqueue(ctx, mover.MoveArgs{MoveID: mv.ID, Rows: 24}); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.riverJobs(t); n != 1 {
		t.Fatalf("%d jobs after enqueuing one move twice, want 1", n)
	}
	if err := q.Enqueue(ctx, mover.MoveArgs{MoveID: mv.ID, Attempt: 7}); err != nil {
		t.Fatal(err)
	}
	if n := e.riverJobs(t); n != 2 {
		t.Fatalf("%d jobs, want 2", n)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer q.Stop(ctx)
	if got := e.waitMove(t, mv.ID); got.State != domicile.MovePurged {
		t.Fatalf("move %s: %s", mv.ID, got.State)
	}
	// Both jobs must complete: the second finds the move held or finished.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left int
		e.ctrl.DB().QueryRow(`SELECT count(*) FROM river_job WHERE state != 'completed'`).Scan(&left)
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs not completed", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := fenced.Load(); n != 1 {
		t.Fatalf("the move fenced %d times, want 1", n)
	}
	for _, s := range mv.Subjects {
		if rs, err := e.ctrl.FindReceipts(ctx, s); err != nil || len(rs) != 1 {
			t.Fatalf("%s: %d receipts (%v), want 1", s, len(rs), err)
		}
	}
	e.checkMoved(t)
}

// TestQueueWorkerDies kills the process running a move just after a step is
// recorded: its worker's hook panics (River records a failed attempt, the
// lease stays held) and the process's queue stops. River retries the job in
// another process, which finds the lease live and snoozes; once the lease
// expires the next attempt resumes the move: it finishes it after the
// commit, and rolls it back before (taken over after its prepare: see
// mover's precopy), after which the next pass moves the subjects.
func TestQueueWorkerDies(t *testing.T) {
	for _, step := range []domicile.MoveState{domicile.MovePrepared, domicile.MoveFenced, domicile.MoveVerified, domicile.MoveCommitted, domicile.MoveActivated} {
		t.Run(string(step), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 12)
			fired := make(chan struct{})
			var once sync.Once
			var victimQ *mover.Queue
			stopped := make(chan error, 1)
			victim := e.moverWith("victim", 200*time.Millisecond, func(_ *domicile.Move, s domicile.MoveState) {
				if s != step {
					return
				}
				once.Do(func() {
					close(fired)
					go func() { stopped <- victimQ.Stop(ctx) }() // the process goes away
				})
				panic("worker killed after " + string(s))
			})
			victimQ = newQueue(t, e, victim, mover.QueueOptions{Workers: 2, Sweep: -1})
			type result struct {
				sum mover.Summary
				err error
			}
			done := make(chan result, 1)
			go func() {
				sum, err := victim.Migrate(ctx, e.plan, mover.MigrateOptions{Queue: victimQ, Passes: 1})
				done <- result{sum, err}
			}()
			select {
			case <-fired:
			case <-time.After(20 * time.Second):
				t.Fatal("the hook never fired")
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			newQueue(t, e, e.moverWith("rescuer", 200*time.Millisecond, nil), mover.QueueOptions{Workers: 2, Sweep: -1})
			// River retries within a second; the lease (on the test's clock)
			// is still live, so the move must not advance.
			time.Sleep(time.Second)
			moves, err := e.ctrl.ListMoves(ctx, openStates()...)
			if err != nil || len(moves) != 1 || moves[0].State != recordedAs(step) {
				t.Fatalf("while the lease lives: %+v %v", moves, err)
			}
			var retried int
			if err := e.ctrl.DB().QueryRow(`SELECT count(*) FROM river_job WHERE json_array_length(errors) > 0`).Scan(&retried); err != nil || retried != 1 {
				t.Fatalf("%d jobs with a recorded failure (%v), want 1", retried, err)
			}
			e.clock.Add(10 * time.Second)
			var r result
			select {
			case r = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("migrate did not finish after the lease expired")
			}
			want := domicile.MovePurged
			if recordedAs(step) == domicile.MovePrepared {
				want = domicile.MoveRolledBack
			}
			if r.err != nil || r.sum.Moves != 1 || (want == domicile.MovePurged) != (r.sum.Subjects == 4 && r.sum.Failed == 0) {
				t.Fatalf("summary %+v %v, want the move %s", r.sum, r.err, want)
			}
			mv, err := e.ctrl.FindMove(ctx, moves[0].ID)
			if err != nil || mv.State != want || mv.Attempt != 2 {
				t.Fatalf("move %+v %v, want %s on the second claim", mv, err, want)
			}
			if want == domicile.MoveRolledBack {
				sum, err := e.moverWith("again", 200*time.Millisecond, nil).Migrate(ctx, e.plan, mover.MigrateOptions{})
				if err != nil || sum.Subjects != 4 || sum.Failed != 0 {
					t.Fatalf("the next pass: %+v %v", sum, err)
				}
			}
			e.checkMoved(t)
			if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
				t.Fatalf("verify %+v", rep)
			}
		})
	}
}

// TestQueueSweepsDeadProcess leaves a move fenced by a process that died
// (its goroutine exits inside the step, and its River job stays "running",
// as River's rescuer would find it an hour later). Another process's queue
// sweeps the move once its lease has expired and resolves it: taken over
// after its prepare, it rolls back, and the next pass moves the subjects.
func TestQueueSweepsDeadProcess(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 12)
	mv := e.createMove(t)
	victim := e.moverWith("victim", 0, func(_ *domicile.Move, s domicile.MoveState) {
		if s == domicile.MoveFenced {
			runtime.Goexit()
		}
	})
	q, err := mover.NewQueue(ctx, e.ctrl.DB(), victim, mover.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, mover.MoveArgs{MoveID: mv.ID}); err != nil {
		t.Fatal(err)
	}
	// The victim's worker took the job, then the process died.
	if _, err := e.ctrl.DB().Exec(`UPDATE river_job SET state = 'running', attempt = 1,
		attempted_at = datetime('now', 'subsec'), attempted_by = jsonb('["dead-client"]')`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { victim.Run(ctx, mv.ID) })
	wg.Wait()
	if got, _ := e.ctrl.FindMove(ctx, mv.ID); got.State != recordedAs(domicile.MoveFenced) || got.FencedAt.IsZero() || got.Owner != "victim" {
		t.Fatalf("after the crash: %+v", got)
	}

	rescuer := e.mover("rescuer", nil)
	newQueue(t, e, rescuer, mover.QueueOptions{Sweep: 30 * time.Millisecond})
	time.Sleep(200 * time.Millisecond)
	if got, _ := e.ctrl.FindMove(ctx, mv.ID); got.State != recordedAs(domicile.MoveFenced) || got.Owner != "victim" {
		t.Fatalf("the sweep took a live lease: %+v", got)
	}
	e.clock.Add(10 * time.Second)
	if got := e.waitMove(t, mv.ID); got.State != domicile.MoveRolledBack || got.Owner != "" {
		t.Fatalf("move %+v", got)
	}
	if sum, err := rescuer.Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil || sum.Subjects != 4 || sum.Failed != 0 {
		t.Fatalf("the next pass: %+v %v", sum, err)
	}
	e.checkMoved(t)
	if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
		t.Fatalf("verify %+v", rep)
	}
}

func TestQueueRateBetweenBatches(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 30) // 10 Brazilians, 60 rows, in 5 moves of 12 rows
	m := e.mover("m", nil)
	q := newQueue(t, e, m, mover.QueueOptions{Workers: 3})
	start := time.Now()
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 2, Queue: q, Rate: 100})
	if err != nil || sum.Subjects != 10 {
		t.Fatalf("%+v %v", sum, err)
	}
	// A burst of 100 rows covers the first 8 moves' worth; the rate must
	// not hold anything fenced. (How long it took is logged, not asserted.)
	t.Logf("60 rows at 100 rows/s: %s", time.Since(start))
	// At 20 rows/s (burst 20), 5 moves of 12 rows need at least 2 s.
	e2 := newEnv(t, 30)
	m2 := e2.mover("m", nil)
	q2 := newQueue(t, e2, m2, mover.QueueOptions{Workers: 3})
	start = time.Now()
	sum, err = m2.Migrate(ctx, e2.plan, mover.MigrateOptions{Batch: 2, Queue: q2, Rate: 20})
	if err != nil || sum.Subjects != 10 {
		t.Fatalf("%+v %v", sum, err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("60 rows at 20 rows/s took %s", d)
	}
	e2.checkMoved(t)
}

func TestQueueStop(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3)
	// A dial an earlier test's HTTP load left in flight may end during
	// this one; it is not the queue's.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("net/http.(*Transport).dialConnFor"))
	m := e.mover("m", nil)
	q, err := mover.NewQueue(ctx, e.ctrl.DB(), m, mover.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := q.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Start(ctx); err == nil {
		t.Fatal("a stopped queue started again")
	}
	// A queue never started stops too.
	q2, err := mover.NewQueue(ctx, e.ctrl.DB(), m, mover.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestQueueThroughput runs the same migration through River and through the
// errgroup path and checks both move everything; the ratio of their times is
// logged for docs/benchmarks.md, never asserted (the machines are noisy).
func TestQueueThroughput(t *testing.T) {
	ctx := context.Background()
	n, batch, workers := 900, 10, 4 // 300 subjects move, in 30 batches
	if testing.Short() {
		n = 300
	}
	run := func(queued bool) time.Duration {
		e := newEnv(t, n)
		m := mover.New(mover.Config{
			Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
			Owner: "bench", MaxBlock: time.Hour,
		})
		opts := mover.MigrateOptions{Batch: batch, Workers: workers}
		if queued {
			opts.Queue = newQueue(t, e, m, mover.QueueOptions{Workers: workers})
		}
		start := time.Now()
		sum, err := m.Migrate(ctx, e.plan, opts)
		d := time.Since(start)
		if err != nil || sum.Subjects != n/3 || sum.Failed != 0 {
			t.Fatalf("queued=%v: %+v %v", queued, sum, err)
		}
		e.checkMoved(t)
		return d
	}
	plain := run(false)
	queued := run(true)
	ratio := float64(queued) / float64(plain)
	t.Logf("%d subjects in %d batches, %d workers: errgroup %s, River %s, ratio %.2f", n/3, n/3/batch, workers, plain.Round(time.Millisecond), queued.Round(time.Millisecond), ratio)
}
