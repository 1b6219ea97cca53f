package mover_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// hanging is a source store whose first load probe does not return until
// released: the worker that calls it holds its River job "running" without
// claiming the move, as a process killed between taking a job and claiming
// its move leaves it.
type hanging struct {
	domicile.Store
	once             sync.Once
	entered, release chan struct{}
}

func (h *hanging) Load(ctx context.Context) (domicile.Load, error) {
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.entered)
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	return domicile.Load{}, nil
}

// TestQueueKicksOrphanedJob checks that Migrate does not wait forever for a
// move whose job a dead worker took before claiming it: once the job has
// been running for three leases with the move still planned and unowned,
// Migrate enqueues the move again and another process's worker carries it
// out.
func TestQueueKicksOrphanedJob(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 12)
	src := &hanging{Store: e.stores["a"], entered: make(chan struct{}), release: make(chan struct{})}
	e.stores["a"] = src
	victim := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "victim", Now: e.clock.Now, MaxBlock: time.Hour, Lease: 200 * time.Millisecond,
		MaxWriteLatency: time.Second, // the throttle asks the source for its load before claiming
	})
	q := newQueue(t, e, victim, mover.QueueOptions{Workers: 1, Sweep: -1})
	t.Cleanup(func() { close(src.release) }) // runs before the queue's own cleanup stops it
	done := make(chan error, 1)
	var sum mover.Summary
	go func() {
		var err error
		sum, err = victim.Migrate(ctx, e.plan, mover.MigrateOptions{Queue: q, Passes: 1})
		done <- err
	}()
	select {
	case <-src.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no worker took the move's job")
	}
	// The victim's only worker now holds the job without a claim. Another
	// process's workers are idle: nothing but a new job can reach them.
	newQueue(t, e, e.moverWith("rescuer", 200*time.Millisecond, nil), mover.QueueOptions{Workers: 2, Sweep: -1})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("migrate still waits for a move whose job a dead worker holds")
	}
	if sum.Subjects != 4 || sum.Failed != 0 {
		t.Fatalf("summary %+v", sum)
	}
	e.checkMoved(t)
	var kicked int
	if err := e.ctrl.DB().QueryRow(`SELECT count(*) FROM river_job WHERE json_extract(args, '$.kick') >= 1`).Scan(&kicked); err != nil || kicked != 1 {
		t.Fatalf("%d jobs enqueued again (%v), want 1", kicked, err)
	}
}
