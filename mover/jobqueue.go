package mover

import (
	"context"
	"sync"
	"time"
)

// DefaultRetryFor is how long, by default, a move that cannot reach a store
// is tried again before it counts as failed.
const DefaultRetryFor = 5 * time.Minute

// retryBackoff is the wait before a move's next try after it found a store
// unreachable tries times already: doubling from 250ms, at most 10s.
func retryBackoff(tries int) time.Duration {
	return min(250*time.Millisecond<<min(tries, 6), 10*time.Second)
}

// jobQueue hands a migration's moves to its workers in plan order. A move
// put back with retry waits until its time comes while the workers go on
// with the others.
//
// Its waits are on the wall clock, not on the mover's injected one: they are
// for a store to come back.
type jobQueue struct {
	mu      sync.Mutex
	ready   []job
	later   []laterJob
	running int
	changed chan struct{} // closed and replaced when the queue changes
}

type laterJob struct {
	j  job
	at time.Time
}

func newJobQueue(jobs []job) *jobQueue {
	return &jobQueue{ready: jobs, changed: make(chan struct{})}
}

// next returns the next move to run, waiting for one whose time has come;
// false once every move is finished (or ctx ends).
func (q *jobQueue) next(ctx context.Context) (job, bool) {
	for {
		q.mu.Lock()
		now := time.Now()
		var wake time.Duration = -1
		kept := q.later[:0]
		for _, l := range q.later {
			if !l.at.After(now) {
				q.ready = append(q.ready, l.j)
				continue
			}
			if d := l.at.Sub(now); wake < 0 || d < wake {
				wake = d
			}
			kept = append(kept, l)
		}
		q.later = kept
		if len(q.ready) > 0 {
			j := q.ready[0]
			q.ready = q.ready[1:]
			q.running++
			q.mu.Unlock()
			return j, true
		}
		if len(q.later) == 0 && q.running == 0 {
			q.mu.Unlock()
			return job{}, false
		}
		changed := q.changed
		q.mu.Unlock()
		var timer *time.Timer
		var fired <-chan time.Time
		if wake >= 0 {
			timer = time.NewTimer(wake)
			fired = timer.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-fired:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return job{}, false
		}
	}
}

// finish records that a move returned by next is done.
func (q *jobQueue) finish() {
	q.mu.Lock()
	q.running--
	q.signal()
	q.mu.Unlock()
}

// retry puts a move returned by next back, to run again at at.
func (q *jobQueue) retry(j job, at time.Time) {
	q.mu.Lock()
	q.running--
	q.later = append(q.later, laterJob{j: j, at: at})
	q.signal()
	q.mu.Unlock()
}

func (q *jobQueue) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}
