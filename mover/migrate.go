package mover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/domicile/domicile"
)

// MigrateOptions tune Migrate.
type MigrateOptions struct {
	Batch   int     // subjects per move; default DefaultBatch
	Workers int     // moves run at once; default 2
	Rate    float64 // rows per second, applied between batches; 0: unlimited
	Passes  int     // plans carried out before giving up on rolled-back batches; default 3

	// BatchRows, if positive, sizes moves by rows where the source store
	// can count each subject's rows (domicile.LiveCopier): a move takes
	// subjects while their rows stay within BatchRows, and at most
	// batchSpread (4) × Batch of them, since a subject with few rows still
	// costs its ownership rows and its placement. A dataset with few rows
	// per subject then moves in fewer, larger batches, one with many in
	// smaller ones, and the write-block follows the rows. 0: Batch
	// subjects per move.
	BatchRows int64

	// RetryFor is how long a move that cannot reach a store (an error
	// wrapping domicile.ErrUnavailable) is tried again, with backoff, while
	// the other moves go on; default DefaultRetryFor. After that it counts
	// as failed, for a later run to resolve.
	RetryFor time.Duration

	// Queue, if set, runs the moves as River jobs on its workers (and those
	// of any other process sharing the control store) instead of on Workers
	// goroutines of this call; Rate then applies to the queue's workers.
	Queue *Queue

	// Progress, if set, is called after every finished move.
	Progress func(Progress)
}

// Progress is the state of a migration after a move finished.
type Progress struct {
	Total    int // (subject, dataset) pairs planned in this pass
	Done     int
	Rows     int64
	Failed   int
	Route    *Route
	Move     *domicile.Move
	Duration time.Duration // the move's write-block
}

// Summary is what a migration did.
type Summary struct {
	Subjects int     `json:"subjects"`
	Rows     int64   `json:"rows"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	Failed   int     `json:"failed"`
	Moves    int     `json:"moves"`
	Resolved int     `json:"resolved"` // open moves of earlier runs finished or rolled back
	// Throttled is how long the adaptive throttle held batches back, over
	// all workers, in seconds.
	Throttled float64         `json:"throttled_seconds"`
	Blocks    []time.Duration `json:"-"` // write-block of every moved (subject, dataset), from its batch

	unreachable int       // of Failed in the last pass: rolled back while a store was out of reach
	outageSince time.Time // when a move of this migration first found a store out of reach
}

// rolledBackUnreachable reports whether a move rolled back because a store
// could not be reached: its recorded reason carries ErrUnavailable's fixed
// text, as the recorded reason of a move run in another process does too.
func rolledBackUnreachable(mv *domicile.Move) bool {
	return mv.State == domicile.MoveRolledBack && strings.Contains(mv.Error, domicile.ErrUnavailable.Error())
}

// BlockMillis returns the median, the 99th percentile and the maximum of
// the write-blocks, in milliseconds.
func (s Summary) BlockMillis() (p50, p99, most float64) {
	blocks := slices.Clone(s.Blocks)
	slices.Sort(blocks)
	at := func(p float64) float64 {
		if len(blocks) == 0 {
			return 0
		}
		return float64(blocks[int(float64(len(blocks)-1)*p)].Microseconds()) / 1000
	}
	return at(0.5), at(0.99), at(1)
}

// appendBlock records a batch's write-block once per subject of the batch:
// every one of them was blocked that long, and percentiles are per subject.
func appendBlock(blocks []time.Duration, d time.Duration, subjects int) []time.Duration {
	for range subjects {
		blocks = append(blocks, d)
	}
	return blocks
}

// NewMoveID returns a fresh, time-ordered move id.
func NewMoveID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405.000") + "-" + hex.EncodeToString(b[:])
}

// Migrate resolves the moves earlier runs left open, then carries out the
// plans that plan returns, batch by batch, until a plan is empty or opts.Passes
// plans have run (batches that roll back, for instance after max_block, are
// planned again by the next pass).
func (m *Mover) Migrate(ctx context.Context, plan func(context.Context) (*Plan, error), opts MigrateOptions) (Summary, error) {
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Passes <= 0 {
		opts.Passes = 3
	}
	start, throttled := m.cfg.Now(), m.Throttled()
	var sum Summary
	resolved, err := m.Resolve(ctx)
	sum.Resolved = resolved
	if err != nil {
		return sum, err
	}
	// With the open moves resolved, a capture left by a move that is no
	// longer running (a replication slot holding WAL) is dropped. A store
	// out of reach is swept by a later run; its moves wait for it anyway.
	if _, err := m.SweepCaptures(ctx); err != nil {
		if ctx.Err() != nil {
			return sum, err
		}
		m.cfg.Logger.Warn("sweeping leftover captures", "err", err)
	}
	var limiter *rate.Limiter
	if opts.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(opts.Rate), max(int(opts.Rate), 1))
	}
	retryFor := opts.RetryFor
	if retryFor == 0 {
		retryFor = DefaultRetryFor
	}
	var outage time.Time // when passes began to fail for a store out of reach
	for pass, waits := 0, 0; pass < opts.Passes; pass++ {
		p, err := plan(ctx)
		if err != nil {
			return sum, err
		}
		if len(p.Routes) == 0 {
			break
		}
		sum.unreachable = 0
		failed, err := m.runPlan(ctx, p, opts, limiter, &sum)
		if err != nil {
			return sum, err
		}
		sum.Failed = failed
		if failed == 0 {
			break
		}
		if sum.unreachable != failed {
			outage = time.Time{} // a pass that failed otherwise ends the outage's count
		} else {
			// Every failure was a store out of reach: this pass does not
			// count; the next waits for the store to come back. The window
			// runs from the first move that met the outage, so the moves'
			// own retries and these passes share one retry_for.
			if outage.IsZero() {
				outage = time.Now()
				if !sum.outageSince.IsZero() {
					outage = sum.outageSince
				}
			}
			if time.Since(outage) < retryFor {
				wait := retryBackoff(waits)
				waits++
				m.cfg.Logger.Warn("moves rolled back while a store was unreachable: planning again", "subjects", failed, "retry_in", wait)
				select {
				case <-ctx.Done():
					return sum, ctx.Err()
				case <-time.After(wait):
				}
				pass--
				continue
			}
		}
	}
	sum.Seconds = m.cfg.Now().Sub(start).Seconds()
	sum.Throttled = (m.Throttled() - throttled).Seconds()
	return sum, ctx.Err()
}

type job struct {
	route    *Route
	id       string
	subjects int
	rows     int64 // estimate, for the rate limit

	tries   int       // times it found a store unreachable
	failing time.Time // since when it has
	begun   bool      // run at least once: never held by the gate
}

// runPlan creates the plan's moves and runs them on opts.Workers goroutines,
// or on opts.Queue.
func (m *Mover) runPlan(ctx context.Context, p *Plan, opts MigrateOptions, limiter *rate.Limiter, sum *Summary) (int, error) {
	var jobs []job
	total := 0
	for _, r := range p.Routes {
		for _, b := range m.batches(ctx, r, opts.Batch, opts.BatchRows) {
			// Created leased to this process, which renews the lease until
			// a worker claims the move: nobody else starts it meanwhile.
			mv := &domicile.Move{
				ID: NewMoveID(m.cfg.Now()), Dataset: r.Dataset, From: r.From, To: r.To,
				Rule: r.Rule, PolicyVersion: r.PolicyVersion, Subjects: slices.Clone(b.subjects),
				Owner: m.cfg.Owner, LeaseExpires: m.cfg.Now().Add(m.cfg.Lease),
				Receipt: domicile.Receipt{Copy: b.copy},
			}
			ok, err := m.cfg.Control.CreateMove(ctx, mv)
			if err != nil {
				return 0, fmt.Errorf("plan move: %w", err)
			}
			if !ok {
				continue
			}
			est := int64(0)
			if r.Count > 0 {
				est = r.Rows * int64(len(mv.Subjects)) / int64(r.Count)
			}
			jobs = append(jobs, job{route: r, id: mv.ID, subjects: len(mv.Subjects), rows: est})
			total += len(mv.Subjects)
		}
	}
	if opts.Queue != nil {
		return m.runQueued(ctx, jobs, total, opts, sum)
	}
	var mu sync.Mutex
	done, failed := 0, 0
	waiting := make(map[string]bool, len(jobs)) // created, not yet started
	for _, j := range jobs {
		waiting[j.id] = true
	}
	var runJob func(job) error
	g, gctx := errgroup.WithContext(ctx)
	rctx, stopRenew := context.WithCancel(gctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		m.renewWaiting(rctx, &mu, waiting)
	}()
	defer func() {
		stopRenew()
		<-renewed
	}()
	q := newJobQueue(jobs)
	retryFor := opts.RetryFor
	if retryFor == 0 {
		retryFor = DefaultRetryFor
	}
	runJob = func(j job) error {
		// A region out of reach holds back the moves that have not begun,
		// until a probe finds it back (gate); for retry_for, after which
		// they count as failed without beginning.
		if wait, since, why := m.gate.hold(gctx, j.route.From, j.route.To); wait > 0 && !j.begun {
			mu.Lock()
			if sum.outageSince.IsZero() || since.Before(sum.outageSince) {
				sum.outageSince = since
			}
			mu.Unlock()
			if time.Since(since) < retryFor {
				q.retry(j, time.Now().Add(wait))
				return nil
			}
			m.cfg.Logger.Error("move failed: a store has been out of reach for longer than retry_for; it did not begin",
				"move", j.id, "from", j.route.From, "to", j.route.To, "retry_for", retryFor, "err", why)
			mu.Lock()
			delete(waiting, j.id)
			failed += j.subjects
			done += j.subjects
			sum.Moves++
			sum.unreachable += j.subjects
			mu.Unlock()
			q.finish()
			return nil
		}
		if limiter != nil && j.rows > 0 && j.tries == 0 {
			// Between batches, never while subjects are fenced.
			if err := waitRows(gctx, limiter, j.rows); err != nil {
				return err
			}
		}
		// Retried moves too: a store that has just come back is likely
		// still under strain.
		if err := m.throttle.wait(gctx, j.route.From, m.cfg.Stores[j.route.From]); err != nil {
			return err
		}
		mu.Lock()
		delete(waiting, j.id)
		mu.Unlock()
		j.begun = true
		res, err := m.runOrWait(gctx, j.id)
		if err != nil && (res.Move == nil || !res.Move.State.Done()) {
			if gctx.Err() != nil {
				return err
			}
			if errors.Is(err, domicile.ErrUnavailable) {
				m.gate.suspect(gctx, j.route.From, j.route.To)
				if j.failing.IsZero() {
					j.failing = time.Now()
					mu.Lock()
					if sum.outageSince.IsZero() || j.failing.Before(sum.outageSince) {
						sum.outageSince = j.failing
					}
					mu.Unlock()
				}
				if time.Since(j.failing) < retryFor {
					// A store is down or restarting: this move waits and
					// tries again; the others go on meanwhile.
					wait := retryBackoff(j.tries)
					j.tries++
					m.cfg.Logger.Warn("a store is unreachable: the move waits and tries again",
						"move", j.id, "from", j.route.From, "to", j.route.To, "retry_in", wait, "try", j.tries, "err", err)
					q.retry(j, time.Now().Add(wait))
					return nil
				}
			}
			// One move that cannot go on must not stop the others: it
			// is counted as failed, and resolved by a later run.
			m.cfg.Logger.Error("move failed", "move", j.id, "err", err)
			mu.Lock()
			failed += j.subjects
			done += j.subjects
			sum.Moves++
			mu.Unlock()
			q.finish()
			return nil
		}
		mv := res.Move
		outage := mv.State == domicile.MoveRolledBack && (errors.Is(err, domicile.ErrUnavailable) || rolledBackUnreachable(mv))
		if outage {
			m.gate.suspect(gctx, j.route.From, j.route.To)
		}
		if outage && j.failing.IsZero() {
			j.failing = time.Now()
			mu.Lock()
			if sum.outageSince.IsZero() || j.failing.Before(sum.outageSince) {
				sum.outageSince = j.failing
			}
			mu.Unlock()
		}
		if outage && time.Since(j.failing) < retryFor {
			// Rolled back because a store was out of reach (this time:
			// a rollback for another reason counts as failed): the same
			// subjects go again in a new move, once the store is back.
			next, ok, err := m.again(gctx, j, mv)
			if err != nil {
				return err // the worker loop finishes the job
			}
			if ok {
				m.cfg.Logger.Warn("a move rolled back while a store was unreachable: its subjects go again",
					"move", mv.ID, "new_move", next.id, "reason", mv.Error)
				mu.Lock()
				waiting[next.id] = true
				mu.Unlock()
				q.retry(next, time.Now().Add(retryBackoff(next.tries)))
				return nil
			}
		}
		mu.Lock()
		defer mu.Unlock()
		defer q.finish()
		n := len(mv.Subjects)
		done += n
		sum.Moves++
		if mv.State == domicile.MoveRolledBack {
			failed += n
			if rolledBackUnreachable(mv) {
				sum.unreachable += n
			}
			m.cfg.Logger.Warn("batch rolled back", "move", mv.ID, "reason", mv.Error)
		} else {
			sum.Subjects += n
			sum.Bytes += mv.Receipt.Bytes
			for _, t := range mv.Receipt.Tables {
				sum.Rows += t.SourceRows
			}
			if res.Block > 0 {
				sum.Blocks = appendBlock(sum.Blocks, res.Block, n)
			}
		}
		if opts.Progress != nil {
			opts.Progress(Progress{Total: total, Done: done, Rows: sum.Rows, Failed: failed, Route: j.route, Move: mv, Duration: res.Block})
		}
		return nil
	}
	for range opts.Workers {
		g.Go(func() error {
			for {
				j, ok := q.next(gctx)
				if !ok {
					return gctx.Err()
				}
				if err := runJob(j); err != nil {
					q.finish()
					return err
				}
			}
		})
	}
	return failed, g.Wait()
}

// again creates a new move for the subjects of a move that rolled back, as
// runPlan would, carrying the job's retry count; false if none of its
// subjects is still where the move found it.
func (m *Mover) again(ctx context.Context, j job, old *domicile.Move) (job, bool, error) {
	r := j.route
	mv := &domicile.Move{
		ID: NewMoveID(m.cfg.Now()), Dataset: r.Dataset, From: r.From, To: r.To,
		Rule: r.Rule, PolicyVersion: r.PolicyVersion, Subjects: slices.Clone(old.Subjects),
		Owner: m.cfg.Owner, LeaseExpires: m.cfg.Now().Add(m.cfg.Lease),
	}
	ok, err := m.cfg.Control.CreateMove(ctx, mv)
	if err != nil || !ok {
		return job{}, false, err
	}
	next := j
	next.id, next.subjects, next.begun = mv.ID, len(mv.Subjects), false
	next.tries++
	return next, true, nil
}

// renewWaiting keeps the leases of the created moves no worker has started
// yet, until ctx ends.
func (m *Mover) renewWaiting(ctx context.Context, mu *sync.Mutex, waiting map[string]bool) {
	t := time.NewTicker(max(m.cfg.Lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mu.Lock()
		ids := make([]string, 0, len(waiting))
		for id := range waiting {
			ids = append(ids, id)
		}
		mu.Unlock()
		if err := m.cfg.Control.RenewLeases(ctx, m.cfg.Owner, ids, m.cfg.Lease); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("renewing the leases of waiting moves", "err", err)
		}
	}
}

// runOrWait runs the move; if another process holds it, it waits until that
// process finishes it or its lease lapses, and returns the move as it ends.
func (m *Mover) runOrWait(ctx context.Context, id string) (Result, error) {
	for {
		res, err := m.Run(ctx, id)
		if err != nil && !errors.Is(err, domicile.ErrLeaseLost) && res.Move == nil {
			// Finished meanwhile by another run (the claim of a
			// finished move fails): its outcome is the move's.
			if mv, ferr := m.cfg.Control.FindMove(ctx, id); ferr == nil && mv.State.Done() {
				return Result{Move: mv}, nil
			}
		}
		if !errors.Is(err, domicile.ErrLeaseLost) {
			return res, err
		}
		mv, ferr := m.cfg.Control.FindMove(ctx, id)
		if ferr != nil {
			return res, ferr
		}
		if mv.State.Done() || mv.State == domicile.MoveActivated && m.cfg.Now().Before(mv.PurgeAfter) {
			return Result{Move: mv}, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(m.cfg.Lease / 4):
		}
	}
}

// Resolve finishes or rolls back every move left open by an earlier run whose
// lease has expired, waiting for live leases of other processes to end. Moves
// waiting out their rollback window are left alone. It returns how many moves
// it resolved.
func (m *Mover) Resolve(ctx context.Context) (int, error) {
	resolved := 0
	for {
		n, waiting, err := m.resolvePass(ctx, true)
		resolved += n
		if err != nil || !waiting {
			return resolved, err
		}
		select {
		case <-ctx.Done():
			return resolved, ctx.Err()
		case <-time.After(m.cfg.Lease / 4):
		}
	}
}

// SweepCaptures ends, in every store that keeps captures beyond the process
// that started them (domicile.CaptureSweeper: PostgreSQL's replication
// slots), the captures of moves that are finished, rolled back or unknown,
// and returns them by region. A move that is open keeps its capture,
// whoever runs it. A store that fails does not stop the others.
func (m *Mover) SweepCaptures(ctx context.Context) (map[string][]string, error) {
	live := func(ctx context.Context, ids []string) (map[string]bool, error) {
		out := make(map[string]bool, len(ids))
		for _, id := range ids {
			mv, err := m.cfg.Control.FindMove(ctx, id)
			if errors.Is(err, domicile.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out[id] = slices.Contains(openStates, mv.State)
		}
		return out, nil
	}
	swept := make(map[string][]string)
	regions := slices.Sorted(maps.Keys(m.cfg.Stores))
	var errs []error
	for _, region := range regions {
		sw, ok := m.cfg.Stores[region].(domicile.CaptureSweeper)
		if !ok {
			continue
		}
		ids, err := sw.SweepCaptures(ctx, live)
		if err != nil {
			errs = append(errs, err) // the store names its region
			continue
		}
		if len(ids) > 0 {
			m.cfg.Logger.Warn("dropped the captures of moves no longer running", "region", region, "moves", ids)
			swept[region] = ids
		}
	}
	return swept, errors.Join(errs...)
}

// ResolveExpired is one pass of Resolve that does not wait for live leases:
// what a long-running process calls now and then, so that the moves of a
// process that died are resolved within seconds of their lease expiring.
// Planned moves nobody holds are left to the job queue, which has them, and
// to the next migrate.
func (m *Mover) ResolveExpired(ctx context.Context) (int, error) {
	n, _, err := m.resolvePass(ctx, false)
	return n, err
}

func (m *Mover) resolvePass(ctx context.Context, planned bool) (resolved int, waiting bool, err error) {
	open, err := m.cfg.Control.ListMoves(ctx, openStates...)
	if err != nil {
		return 0, false, err
	}
	now := m.cfg.Now()
	var errs []error
	for _, mv := range open {
		if mv.State == domicile.MoveActivated && now.Before(mv.PurgeAfter) {
			continue
		}
		if mv.Owner != "" && now.Before(mv.LeaseExpires) {
			waiting = true
			continue
		}
		if !planned && mv.State == domicile.MovePlanned && mv.Owner == "" {
			continue
		}
		// A planned move whose creator is gone is carried out like any other.
		_, err = m.Run(ctx, mv.ID)
		switch {
		case err == nil:
			resolved++
		case errors.Is(err, domicile.ErrLeaseLost):
			waiting = true
		case m.finished(ctx, mv.ID):
			// Another process (or this one's job queue) finished it
			// between the listing and the claim.
		default:
			// Go on with the others; report this one.
			errs = append(errs, fmt.Errorf("resolve move %s: %w", mv.ID, err))
		}
	}
	return resolved, waiting, errors.Join(errs...)
}

// finished reports whether the move needs no more work.
func (m *Mover) finished(ctx context.Context, id string) bool {
	mv, err := m.cfg.Control.FindMove(ctx, id)
	return err == nil && mv.State.Done()
}

// PurgeDue purges the moves whose rollback window has passed.
func (m *Mover) PurgeDue(ctx context.Context) (int, error) {
	moves, err := m.cfg.Control.ListMoves(ctx, domicile.MoveActivated)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, mv := range moves {
		if m.cfg.Now().Before(mv.PurgeAfter) {
			continue
		}
		_, err := m.Run(ctx, mv.ID)
		switch {
		case err == nil:
			n++
		case errors.Is(err, domicile.ErrLeaseLost) || m.finished(ctx, mv.ID):
			// Another process holds it, or finished it.
		default:
			// One move that cannot be purged must not hold up the others.
			errs = append(errs, fmt.Errorf("purge move %s: %w", mv.ID, err))
		}
	}
	return n, errors.Join(errs...)
}

// AbortAll rolls back every move not yet committed.
func (m *Mover) AbortAll(ctx context.Context, reason string) (int, error) {
	moves, err := m.cfg.Control.ListMoves(ctx, domicile.MovePlanned, domicile.MovePrepared, domicile.MoveFenced, domicile.MoveCopied, domicile.MoveVerified)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, mv := range moves {
		for {
			_, err := m.Abort(ctx, mv.ID, reason)
			if errors.Is(err, domicile.ErrLeaseLost) {
				select {
				case <-ctx.Done():
					return n, ctx.Err()
				case <-time.After(m.cfg.Lease / 4):
				}
				continue
			}
			if err != nil && !m.finished(ctx, mv.ID) {
				return n, fmt.Errorf("abort move %s: %w", mv.ID, err)
			}
			break
		}
		n++
	}
	return n, nil
}

var openStates = domicile.OpenMoveStates

// waitRows waits until the limiter lets rows more rows go, a burst (a
// second's worth) at a time: a batch larger than the burst waits its whole
// share, not one second.
func waitRows(ctx context.Context, l *rate.Limiter, rows int64) error {
	for rows > 0 {
		n := min(rows, int64(l.Burst()))
		if err := l.WaitN(ctx, int(n)); err != nil {
			return err
		}
		rows -= n
	}
	return nil
}
