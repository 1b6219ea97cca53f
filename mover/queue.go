package mover

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/domicile/domicile"
)

// QueueName is the River queue that carries moves.
const QueueName = "domicile_move"

// MoveArgs is the River job that runs one move. River distributes and retries
// these jobs; it never decides a move's fate. Mover.Run claims the move under
// its lease, so a job that runs twice, or next to a rescued copy of itself,
// finds the move held or finished and does nothing.
type MoveArgs struct {
	MoveID string `json:"move_id" river:"unique"`
	// Attempt is the move's claim count when the job was enqueued. A job is
	// unique per (move, attempt): enqueuing a move twice makes one job, but
	// a move whose holder died (its job stuck "running" until River's rescuer
	// gets to it, an hour later) is enqueued afresh under its new attempt.
	Attempt int64 `json:"attempt" river:"unique"`
	// Rows is an estimate of the rows the move carries, for the rate limit;
	// it is not part of the job's identity.
	Rows int64 `json:"rows,omitempty"`
	// Kick counts the jobs Migrate enqueued again for a move still planned
	// whose job was taken by a process that died before it claimed the
	// move (River keeps such a job "running" until its rescuer, an hour
	// later); it makes the new job distinct.
	Kick int `json:"kick,omitempty" river:"unique"`
}

// Kind is the job kind River stores.
func (MoveArgs) Kind() string { return "domicile_move" }

// InsertOpts make the job unique by its move and attempt.
func (MoveArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:       QueueName,
		MaxAttempts: moveMaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true},
	}
}

const moveMaxAttempts = 25

// QueueOptions tune a Queue.
type QueueOptions struct {
	// Workers is how many moves this process runs at once; default 2.
	Workers int
	// Rate limits the rows per second this process's workers start moving,
	// applied before a move is claimed, never while its subjects are fenced;
	// 0 (the default) is unlimited. Migrate's Rate, when set, replaces it.
	Rate float64
	// PollInterval is how often River looks for new jobs when no
	// notification arrives; default 100ms. (On SQLite River's notifications
	// are themselves a table polled every 50ms.)
	PollInterval time.Duration
	// Sweep is how often the queue looks for open moves whose lease expired
	// (their process died) or whose rollback window passed, and enqueues
	// them; default the Mover's lease. Negative disables the sweep.
	Sweep time.Duration
	// JobTimeout cancels a move's job that runs longer; default 15 minutes.
	// The move itself then rolls back (before its commit) or is resumed by
	// a retry (after it).
	JobTimeout time.Duration
	// RetryFor is how long a move whose job keeps finding a store out of
	// reach snoozes before its job is cancelled (Migrate then reports it);
	// default DefaultRetryFor.
	RetryFor time.Duration
	// Logger receives River's and the queue's logs; default discards.
	Logger *slog.Logger
}

// Queue runs moves as durable River jobs in the control store, so that any
// number of goroutines and processes share a migration. Recovery of a move
// stays with the Mover: River's retries only bring a move back to Mover.Run,
// and River's stuck-job rescue (after an hour) is never relied upon; the
// sweep re-enqueues moves whose lease expired within one lease period.
type Queue struct {
	m       *Mover
	client  riverClient
	limiter *rate.Limiter
	opts    QueueOptions

	runMu   sync.Mutex
	running map[string]bool // moves this process's workers are running

	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelCauseFunc
	g       *errgroup.Group
}

// riverClient is what the queue uses of a River client, whatever its
// driver's transaction type.
type riverClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
}

// errQueueStopped is the cause with which Stop ends the queue's loops.
var errQueueStopped = errors.New("queue stopped")

// NewQueue creates River's tables in the SQLite control store db if they are
// missing (idempotent, safe when several processes start at once) and
// returns a queue whose workers run moves with m. db must stay open while
// the queue runs. Call Start to work jobs; a queue that is never started
// only enqueues.
func NewQueue(ctx context.Context, db *sql.DB, m *Mover, opts QueueOptions) (*Queue, error) {
	return newQueue(ctx, riversqlite.New(db), m, opts, nil)
}

// NewPostgresQueue is NewQueue on a PostgreSQL control store, through
// River's pgx driver on the control store's pool. River's tables go in the
// pool's current schema, beside the control store's.
func NewPostgresQueue(ctx context.Context, pool *pgxpool.Pool, m *Mover, opts QueueOptions) (*Queue, error) {
	return newQueue(ctx, riverpgxv5.New(pool), m, opts, func(ctx context.Context, fn func() error) error {
		return withMigrationLock(ctx, pool, fn)
	})
}

// migrationLock is the advisory lock the processes sharing a PostgreSQL
// control store take in turn to bring River's schema up to date.
const migrationLock = `hashtext('domicile: job queue schema')`

// withMigrationLock runs fn holding migrationLock on a connection of its
// own. River's migrations, run by several processes at once, can collide
// on the catalog (two CREATE FUNCTION of one name: a unique violation in
// pg_proc), which no retry of the whole migration reliably outlasts when
// more than two processes start together.
func withMigrationLock(ctx context.Context, pool *pgxpool.Pool, fn func() error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("job queue schema: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+migrationLock+`)`); err != nil {
		return fmt.Errorf("job queue schema: lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+migrationLock+`)`); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // the session ends, and its lock with it
		}
	}()
	return fn()
}

func newQueue[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], m *Mover, opts QueueOptions, serialize func(context.Context, func() error) error) (*Queue, error) {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.Sweep == 0 {
		opts.Sweep = m.cfg.Lease
	}
	if opts.JobTimeout <= 0 {
		opts.JobTimeout = 15 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = m.cfg.Logger
	}
	migrate := func() error { return migrateRiver(ctx, driver, opts.Logger) }
	if serialize == nil {
		serialize = func(_ context.Context, fn func() error) error { return fn() }
	}
	if err := serialize(ctx, migrate); err != nil {
		return nil, err
	}
	q := &Queue{m: m, opts: opts, limiter: rate.NewLimiter(rate.Inf, 1), running: map[string]bool{}}
	q.setRate(opts.Rate)
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &moveWorker{q: q}); err != nil {
		return nil, err
	}
	client, err := river.NewClient(driver, &river.Config{
		Queues:            map[string]river.QueueConfig{QueueName: {MaxWorkers: opts.Workers}},
		Workers:           workers,
		FetchPollInterval: opts.PollInterval,
		FetchCooldown:     min(opts.PollInterval, 20*time.Millisecond),
		JobTimeout:        opts.JobTimeout,
		// The lease is the recovery path; River's rescue only tidies up
		// jobs of dead processes long after their moves were resolved.
		RescueStuckJobsAfter: opts.JobTimeout + time.Hour,
		MaxAttempts:          moveMaxAttempts,
		Logger:               opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	q.client = client
	return q, nil
}

// migrateRiver brings River's schema up to date. Two processes starting at
// once may race to apply the same migration; the loser's transaction rolls
// back, and running again finds the migration recorded.
func migrateRiver[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], logger *slog.Logger) error {
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: logger})
	if err != nil {
		return fmt.Errorf("job queue schema: %w", err)
	}
	for try := 0; ; try++ {
		_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
		if err == nil || try == 2 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("job queue schema: %w", err)
	}
	return nil
}

// Start starts the workers and the sweep. It returns at once; Stop ends them.
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return errors.New("job queue: start after stop")
	}
	if q.started {
		return nil
	}
	// The client's lifetime is the queue's, not the caller's request:
	// cancelling Start's context would stop River.
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	q.started = true
	loopCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	q.cancel = cancel
	q.g = new(errgroup.Group)
	if q.opts.Sweep > 0 {
		q.g.Go(func() error { q.sweepLoop(loopCtx); return nil })
	}
	return nil
}

// Stop ends the sweep and stops River gracefully: running moves finish, and
// jobs not yet started stay in the control store for the next worker. If
// ctx ends first, the running moves' contexts are cancelled (a move
// cancelled before its commit rolls back, after it a later run finishes it).
// Stop is idempotent.
func (q *Queue) Stop(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started || q.stopped {
		q.stopped = true
		return nil
	}
	q.cancel(errQueueStopped)
	q.g.Wait()
	err := q.client.Stop(ctx)
	if err != nil && ctx.Err() != nil {
		err = q.client.StopAndCancel(context.WithoutCancel(ctx))
	}
	q.stopped = true
	if err != nil {
		return fmt.Errorf("stop job queue: %w", err)
	}
	return nil
}

// Enqueue inserts a job for each move. A job whose (move, attempt) is
// already queued, running or completed is not inserted again.
func (q *Queue) Enqueue(ctx context.Context, jobs ...MoveArgs) error {
	_, err := q.enqueue(ctx, jobs)
	return err
}

// enqueue inserts the jobs and returns, per move, the id of its job (the
// existing one for a duplicate).
func (q *Queue) enqueue(ctx context.Context, jobs []MoveArgs) (map[string]int64, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	params := make([]river.InsertManyParams, len(jobs))
	for i, j := range jobs {
		params[i] = river.InsertManyParams{Args: j}
	}
	res, err := q.client.InsertMany(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("enqueue moves: %w", err)
	}
	ids := make(map[string]int64, len(res))
	for i, r := range res {
		ids[jobs[i].MoveID] = r.Job.ID
	}
	return ids, nil
}

// setRate sets the rows per second the workers may start moving.
func (q *Queue) setRate(rowsPerSecond float64) {
	if rowsPerSecond <= 0 {
		q.limiter.SetLimit(rate.Inf)
		return
	}
	q.limiter.SetBurst(max(int(rowsPerSecond), 1))
	q.limiter.SetLimit(rate.Limit(rowsPerSecond))
}

// failedJobs returns, by job id, the jobs among ids that River gave up on
// (discarded after their last attempt, or cancelled), with their last error.
func (q *Queue) failedJobs(ctx context.Context, ids []int64) (map[int64]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	failed := map[int64]string{}
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		res, err := q.client.JobList(ctx, river.NewJobListParams().
			IDs(chunk...).States(rivertype.JobStateDiscarded, rivertype.JobStateCancelled).First(len(chunk)))
		if err != nil {
			return nil, fmt.Errorf("list failed jobs: %w", err)
		}
		for _, j := range res.Jobs {
			msg := string(j.State)
			if n := len(j.Errors); n > 0 {
				msg = fmt.Sprintf("%s after %d attempts: %s", j.State, j.Attempt, j.Errors[n-1].Error)
			}
			failed[j.ID] = msg
		}
	}
	return failed, nil
}

// sweepLoop enqueues, every opts.Sweep, the moves whose holder's lease
// expired and the moves whose rollback window passed. The jobs of a dead
// process stay "running" in River until its rescuer runs (an hour by
// default); the move's lease is what lets another process take over within
// seconds, and a job per (move, attempt) is what gets it run.
func (q *Queue) sweepLoop(ctx context.Context) {
	t := time.NewTicker(q.opts.Sweep)
	defer t.Stop()
	var lastErr time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := q.Sweep(ctx); err != nil && ctx.Err() == nil && time.Since(lastErr) > time.Minute {
			lastErr = time.Now()
			q.opts.Logger.Warn("sweep open moves", "err", err)
		}
	}
}

// Sweep enqueues the open moves whose lease has expired or whose purge is
// due, and returns how many it found. Moves still planned and never claimed
// are left to Migrate's Resolve: the queue cannot tell them from moves
// waiting for a free worker.
func (q *Queue) Sweep(ctx context.Context) (int, error) {
	open, err := q.m.cfg.Control.ListMoves(ctx, openStates...)
	if err != nil {
		return 0, err
	}
	now := q.m.cfg.Now()
	var jobs []MoveArgs
	for _, mv := range open {
		expired := mv.Owner != "" && !mv.LeaseExpires.After(now)
		purgeDue := mv.Owner == "" && mv.State == domicile.MoveActivated && !now.Before(mv.PurgeAfter)
		if expired || purgeDue {
			jobs = append(jobs, MoveArgs{MoveID: mv.ID, Attempt: mv.Attempt})
		}
	}
	return len(jobs), q.Enqueue(ctx, jobs...)
}

// Timeout: none of River's; Work applies JobTimeout once the rate lets the move go.
func (w *moveWorker) Timeout(*river.Job[MoveArgs]) time.Duration { return -1 }

// moveWorker runs one move per job.
type moveWorker struct {
	river.WorkerDefaults[MoveArgs]
	q *Queue
}

// Work rate-limits a move that has not started, then runs it. A move another
// process holds is snoozed for a lease (a snooze uses no attempt); a move
// found finished is a success; any other error is retried by River, and the
// next attempt resumes the move from its recorded state.
func (w *moveWorker) Work(ctx context.Context, job *river.Job[MoveArgs]) error {
	q, id := w.q, job.Args.MoveID
	// The lease keeps other processes off the move, but this process's
	// owner may claim it again: keep a duplicate job in this process off it
	// while a sibling runs it.
	if !q.begin(id) {
		return river.JobSnooze(q.m.cfg.Lease)
	}
	defer q.end(id)
	retryFor := q.opts.RetryFor
	if retryFor <= 0 {
		retryFor = DefaultRetryFor
	}
	// The gate, the rate and the throttle apply only to a move that has
	// not begun: one that has may have fenced subjects, and may need its
	// source to roll back. Its state is read once for the three.
	mv, ferr := q.m.cfg.Control.FindMove(ctx, id)
	planned := ferr == nil && mv.State == domicile.MovePlanned
	// A region out of reach holds back a move that has not begun, until a
	// probe finds it back (gate).
	if planned {
		if wait, since, why := q.m.gate.hold(ctx, mv.From, mv.To); wait > 0 {
			if time.Since(since) < retryFor {
				return river.JobSnooze(wait)
			}
			return river.JobCancel(fmt.Errorf("move %s: a store has been out of reach for longer than %s; the move did not begin: %v", id, retryFor, why))
		}
	}
	if planned && q.m.throttle != nil {
		if err := q.m.throttle.wait(ctx, mv.From, q.m.cfg.Stores[mv.From]); err != nil {
			return err
		}
	}
	// The turn under the rate is waited for once the move is claimed
	// (runAfter), its lease kept meanwhile: Migrate takes a planned move
	// that nobody holds, whose job has run for three leases, for one whose
	// worker died before claiming it, and enqueues it again.
	var turn func(context.Context) error
	if job.Args.Rows > 0 && q.limiter.Limit() != rate.Inf {
		// The rate never applies while subjects are fenced.
		if ferr != nil {
			return fmt.Errorf("move %s: %w", id, ferr)
		}
		if planned {
			turn = func(ctx context.Context) error { return waitRows(ctx, q.limiter, job.Args.Rows) }
		}
	}
	// JobTimeout bounds the move, not its turn under the rate.
	_, err := q.m.runAfter(ctx, id, q.opts.JobTimeout, turn)
	if err == nil {
		return nil
	}
	if errors.Is(err, domicile.ErrLeaseLost) {
		return river.JobSnooze(q.m.cfg.Lease)
	}
	if errors.Is(err, domicile.ErrUnavailable) {
		// A store is down or restarting: the move waits for it without
		// using up the job's attempts; a move that rolled back meanwhile is
		// planned again by Migrate.
		if mv, ferr := q.m.cfg.Control.FindMove(ctx, id); ferr == nil && !mv.State.Done() {
			q.m.gate.suspect(ctx, mv.From, mv.To)
			n, waited := snoozes(job.JobRow), time.Duration(0)
			for i := range n {
				waited += retryBackoff(i)
			}
			if since := q.m.gate.downSince(mv.From, mv.To); !since.IsZero() {
				// The gate's count (suspect has just probed) is the
				// outage's own time; the snoozes' also has the gate's
				// and the leases' in it.
				waited = time.Since(since)
			}
			if waited >= retryFor {
				return river.JobCancel(fmt.Errorf("move %s: a store has been out of reach for longer than %s: %w", id, retryFor, err))
			}
			q.m.cfg.Logger.Warn("a store is unreachable: the move waits", "move", id, "err", err)
			return river.JobSnooze(retryBackoff(n))
		}
	}
	if domicile.ErrorCode(err) == domicile.CodeConflict {
		// Finished already (by another job or process), or waiting out its
		// rollback window: nothing to do. Read the record rather than the
		// error's text.
		if mv, ferr := q.m.cfg.Control.FindMove(ctx, id); ferr == nil && settled(mv, q.m.cfg.Now()) {
			return nil
		}
	}
	return fmt.Errorf("move %s: %w", id, err)
}

// snoozes is how many times River has snoozed the job (it keeps the count in
// the job's metadata; a snooze does not use up an attempt).
func snoozes(j *rivertype.JobRow) int {
	var meta struct {
		Snoozes int `json:"snoozes"`
	}
	if err := json.Unmarshal(j.Metadata, &meta); err != nil {
		return 0
	}
	return meta.Snoozes
}

// begin marks the move running in this process, unless it already is.
func (q *Queue) begin(id string) bool {
	q.runMu.Lock()
	defer q.runMu.Unlock()
	if q.running[id] {
		return false
	}
	q.running[id] = true
	return true
}

func (q *Queue) end(id string) {
	q.runMu.Lock()
	delete(q.running, id)
	q.runMu.Unlock()
}

// NextRetry retries a failed move within seconds, not River's default hours:
// a failed attempt either rolled the move back (then the job finds it
// finished) or left it committed, and a committed move should roll forward
// promptly.
func (w *moveWorker) NextRetry(job *river.Job[MoveArgs]) time.Time {
	d := min(250*time.Millisecond<<min(job.Attempt-1, 6), 15*time.Second)
	d += rand.N(d / 4)
	return time.Now().Add(d)
}

// settled reports whether a move needs nothing more until some later time:
// finished, or activated and waiting out its rollback window.
func settled(mv *domicile.Move, now time.Time) bool {
	return mv.State.Done() || (mv.State == domicile.MoveActivated && mv.Owner == "" && now.Before(mv.PurgeAfter))
}

// runQueued enqueues the plan's moves on opts.Queue and waits until each is
// settled, whichever process ran it, filling sum as runPlan's workers do.
// It watches the moves in the control store, the one record every process
// shares, and River only for jobs it gave up on.
func (m *Mover) runQueued(ctx context.Context, jobs []job, total int, opts MigrateOptions, sum *Summary) (int, error) {
	q := opts.Queue
	if opts.Rate > 0 {
		q.setRate(opts.Rate)
	}
	args := make([]MoveArgs, len(jobs))
	pending := make(map[string]job, len(jobs))
	for i, j := range jobs {
		args[i] = MoveArgs{MoveID: j.id, Rows: j.rows}
		pending[j.id] = j
	}
	// runPlan creates each move leased to this process, so that nobody
	// starts it before it is handed on. The job is the hand-over: free the
	// moves for any process's workers. (Should this process die before the
	// jobs are in, the moves are planned and unowned, and the next
	// migrate's Resolve carries them out.)
	for _, j := range jobs {
		if err := m.cfg.Control.ReleaseMove(ctx, j.id, 0); err != nil {
			return 0, fmt.Errorf("hand move %s to the queue: %w", j.id, err)
		}
	}
	jobIDs, err := q.enqueue(ctx, args)
	if err != nil {
		return 0, err
	}
	done, failed := 0, 0
	kicks := map[string]int{}
	finish := func(j job, mv *domicile.Move) {
		done += j.subjects
		sum.Moves++
		block := m.recordedBlock(mv)
		if mv.State == domicile.MoveRolledBack {
			failed += j.subjects
			if rolledBackUnreachable(mv) {
				sum.unreachable += j.subjects
			}
			m.cfg.Logger.Warn("batch rolled back", "move", mv.ID, "reason", mv.Error)
		} else {
			sum.Subjects += j.subjects
			sum.Bytes += mv.Receipt.Bytes
			for _, t := range mv.Receipt.Tables {
				sum.Rows += t.SourceRows
			}
			if block > 0 {
				sum.Blocks = appendBlock(sum.Blocks, block, j.subjects)
			}
		}
		if opts.Progress != nil {
			opts.Progress(Progress{Total: total, Done: done, Rows: sum.Rows, Failed: failed, Route: j.route, Move: mv, Duration: block})
		}
	}
	// Jobs this process finishes wake the loop at once; the others' are
	// seen by polling.
	events, unsubscribe := q.client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer unsubscribe()
	poll := time.NewTicker(q.opts.PollInterval)
	defer poll.Stop()
	lastJobCheck := time.Now()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return failed, ctx.Err()
		case <-poll.C:
		case _, ok := <-events:
			if !ok {
				events = nil // the queue stopped; other processes may still work
			}
		}
		open, err := m.cfg.Control.ListMoves(ctx, openStates...)
		if err != nil {
			return failed, err
		}
		openByID := make(map[string]*domicile.Move, len(open))
		for _, mv := range open {
			openByID[mv.ID] = mv
		}
		now := m.cfg.Now()
		for _, j := range jobs {
			if _, ok := pending[j.id]; !ok {
				continue
			}
			if mv, ok := openByID[j.id]; ok && !settled(mv, now) {
				continue
			}
			mv, err := m.cfg.Control.FindMove(ctx, j.id)
			if err != nil {
				return failed, err
			}
			if !settled(mv, now) {
				continue
			}
			delete(pending, j.id)
			finish(j, mv)
		}
		if len(pending) == 0 || time.Since(lastJobCheck) < time.Second {
			continue
		}
		lastJobCheck = time.Now()
		ids := make([]int64, 0, len(pending))
		byJob := make(map[int64]string, len(pending))
		for id := range pending {
			ids = append(ids, jobIDs[id])
			byJob[jobIDs[id]] = id
		}
		bad, err := q.failedJobs(ctx, ids)
		if err != nil {
			return failed, err
		}
		for jobID, msg := range bad {
			return failed, fmt.Errorf("move %s: job %d %s", byJob[jobID], jobID, msg)
		}
		// A move still planned and unowned whose job has been running for
		// a while was taken by a process that died before claiming it: its
		// job stays "running" until River's rescuer (an hour), and nobody
		// else will start it. Enqueue it again; a duplicate job is
		// harmless, as the move's lease decides who runs it.
		running, err := q.runningSince(ctx, ids)
		if err != nil {
			return failed, err
		}
		for jobID, since := range running {
			id := byJob[jobID]
			mv := openByID[id]
			if mv == nil || mv.State != domicile.MovePlanned || mv.Owner != "" || time.Since(since) < 3*m.cfg.Lease {
				continue
			}
			kicks[id]++
			j := pending[id]
			m.cfg.Logger.Warn("a planned move's job was taken by a process that died: enqueuing it again", "move", id, "job", jobID)
			again, err := q.enqueue(ctx, []MoveArgs{{MoveID: id, Attempt: mv.Attempt, Rows: j.rows, Kick: kicks[id]}})
			if err != nil {
				return failed, err
			}
			jobIDs[id] = again[id]
		}
	}
	return failed, nil
}

// runningSince returns, for those of the jobs River has running, when their
// current attempt began.
func (q *Queue) runningSince(ctx context.Context, ids []int64) (map[int64]time.Time, error) {
	out := map[int64]time.Time{}
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		res, err := q.client.JobList(ctx, river.NewJobListParams().
			IDs(chunk...).States(rivertype.JobStateRunning).First(len(chunk)))
		if err != nil {
			return nil, fmt.Errorf("list running jobs: %w", err)
		}
		for _, j := range res.Jobs {
			if j.AttemptedAt != nil {
				out[j.ID] = *j.AttemptedAt
			}
		}
	}
	return out, nil
}

// recordedBlock is the write-block of a move as its record shows it, for a
// move that may have run in another process: from the fence's commit
// (Receipt.Fenced; FencedAt, recorded just before the fence, for a move
// recorded without it) to the activation, which the record keeps as
// PurgeAfter minus the rollback window. Both are stored to the millisecond,
// so the figure is exact to a millisecond provided every process runs with
// the same purge_after; zero if the move never fenced or never activated.
func (m *Mover) recordedBlock(mv *domicile.Move) time.Duration {
	from := recordedFence(mv)
	if from.IsZero() || mv.PurgeAfter.IsZero() {
		return 0
	}
	return max(mv.PurgeAfter.Add(-m.cfg.PurgeAfter).Sub(from), 0)
}

// recordedFence is when the move's fence committed as its record shows it:
// Receipt.Fenced, or FencedAt (recorded just before the fence) for a move
// recorded without it; zero if it never fenced.
func recordedFence(mv *domicile.Move) time.Time {
	if f := mv.Receipt.Fenced; !f.IsZero() && !f.Before(mv.FencedAt) {
		return f
	}
	return mv.FencedAt
}
