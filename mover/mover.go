// Package mover carries subjects' data from one region to another with the
// move protocol of domicile: prepare the destination, fence the source, copy,
// verify, commit in the directory, tombstone, activate, purge. Every step is
// safe to run again, and the control store records the move where a resumed
// run needs it (prepared, with the fence's start; then every step from the
// commit on), so a process killed at any instant leaves a move that another
// run resumes or rolls back from its last record.
package mover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/domicile/domicile"
)

// Config wires a Mover.
type Config struct {
	Control  domicile.Control
	Stores   map[string]domicile.Store    // by region
	Datasets map[string]*domicile.Dataset // by name, with columns and keys read from the stores

	Owner      string        // who holds leases: unique per process
	Lease      time.Duration // default 3s
	MaxBlock   time.Duration // a batch fenced longer than this before its commit rolls back; default 1s
	PurgeAfter time.Duration // rollback window; default 0: purge at once

	// MaxWriteLatency and MaxReplicationLag are the adaptive throttle's
	// ceilings (0: no ceiling): while a move's source store, as
	// domicile.LoadReporter measures it, is above one, batches from it
	// start later and later; once below, sooner again.
	MaxWriteLatency   time.Duration
	MaxReplicationLag time.Duration

	// LiveRows is the size above which a subject is copied live, while it
	// keeps writing, and fenced only for the last delta (both stores must
	// implement domicile.LiveCopier); Migrate gives each such subject a
	// move of its own. Default DefaultLiveRows; negative: never.
	LiveRows int64

	// NoPrecopy makes ordinary (not live) moves copy inside the fence
	// instead of before it (see precopy).
	NoPrecopy bool

	Now    func() time.Time
	Logger *slog.Logger

	// Probe tells whether a region's store can be used again after a move
	// found it out of reach: nil, or an error wrapping
	// domicile.ErrUnavailable while it stays so. Until it says so, moves
	// to and from the region wait instead of beginning (see gate). Default:
	// the store's Ping, where it has one.
	Probe func(ctx context.Context, region string) error

	// AfterStep, if set, is called after each step, whether or not the
	// step is recorded (see mark). Tests use it to kill the process at a
	// chosen point.
	AfterStep func(m *domicile.Move, state domicile.MoveState)
}

// StepPrecopied is what Config.AfterStep is called with after a precopy:
// not a state a move is ever in or recorded in.
const StepPrecopied domicile.MoveState = "precopied"

// Mover runs moves. It is safe for concurrent use: different goroutines may
// run different moves, and the leases keep two processes off one move.
type Mover struct {
	cfg      Config
	throttle *throttle // nil without ceilings
	gate     *gate

	// running holds the moves this Mover is running. A claim is granted
	// again to the owner that holds it, so without this two goroutines
	// of one process (Resolve and a job of the queue, say) could run one
	// move at once.
	mu      sync.Mutex
	running map[string]bool
}

// New returns a Mover.
func New(cfg Config) *Mover {
	if cfg.Lease <= 0 {
		cfg.Lease = 3 * time.Second
	}
	if cfg.MaxBlock <= 0 {
		cfg.MaxBlock = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LiveRows == 0 {
		cfg.LiveRows = DefaultLiveRows
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Mover{cfg: cfg, throttle: newThrottle(cfg.MaxWriteLatency, cfg.MaxReplicationLag, cfg.Logger),
		gate: newGate(cfg.Probe, cfg.Stores, cfg.Logger), running: map[string]bool{}}
}

// Result is what one Run did.
type Result struct {
	Move  *domicile.Move
	Block time.Duration // from the fence's commit until the destination took writes
}

// run is one claimed move in progress.
type run struct {
	m       *Mover
	mv      *domicile.Move
	token   int64
	ds      *domicile.Dataset
	src     domicile.Store
	dst     domicile.Store
	digests map[string]domicile.SubjectDigest // source digests, from the copy
	written map[string]domicile.SubjectDigest // destination digests, from the copy
	// precopied is set when this run copied the subjects before the fence
	// (precopy): written then holds the destination's digests of that copy.
	precopied bool
	// read and snapshot are, after a precopy from a source that can find
	// changes (domicile.ChangeFinder), the digests of the rows it read and
	// the batch's snapshot.
	read     map[string]domicile.SubjectDigest
	snapshot string

	fencedAt    time.Time // when this run's fence committed, for the block it reports
	activatedAt time.Time
	renewed     time.Time // when the lease was last extended
}

// Run claims the move and drives it from its recorded state to the end: to
// Purged (or Activated, when a rollback window keeps the source rows), or to
// RolledBack if it cannot commit. A move another live process holds is an
// error wrapping domicile.ErrLeaseLost.
func (m *Mover) Run(ctx context.Context, id string) (Result, error) {
	return m.runAfter(ctx, id, 0, nil)
}

// runAfter is Run, which once the move is claimed calls wait, if not nil
// (a queued move's turn under the rate), before it goes on, the lease kept
// meanwhile so that the move is not taken for abandoned. A timeout above 0
// bounds the move from the end of the wait.
func (m *Mover) runAfter(ctx context.Context, id string, timeout time.Duration, wait func(context.Context) error) (Result, error) {
	r, err := m.claim(ctx, id)
	if err != nil {
		return Result{}, err
	}
	defer m.release(id)
	defer r.keepLease(ctx)()
	if wait != nil {
		err = wait(ctx)
	}
	var res Result
	if err == nil {
		fctx := ctx
		if timeout > 0 {
			var cancel context.CancelFunc
			fctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		res, err = r.forward(fctx)
	}
	if err != nil && !errors.Is(err, domicile.ErrLeaseLost) {
		if rerr := m.cfg.Control.ReleaseMove(context.WithoutCancel(ctx), id, r.token); rerr != nil {
			m.cfg.Logger.Warn("releasing a move", "move", id, "err", rerr)
		}
	}
	return res, err
}

// Abort rolls the move back if it has not committed. A committed move is
// finished instead: after the commit a move only rolls forward.
func (m *Mover) Abort(ctx context.Context, id, reason string) (Result, error) {
	r, err := m.claim(ctx, id)
	if err != nil {
		return Result{}, err
	}
	defer m.release(id)
	defer r.keepLease(ctx)()
	if committed(r.mv.State) {
		return r.forward(ctx)
	}
	if err := r.rollback(ctx, reason); err != nil {
		return Result{Move: r.mv}, err
	}
	return Result{Move: r.mv}, nil
}

// claim claims the move for a run in this process; the run must call
// release when it is over.
func (m *Mover) claim(ctx context.Context, id string) (*run, error) {
	m.mu.Lock()
	busy := m.running[id]
	if !busy {
		m.running[id] = true
	}
	m.mu.Unlock()
	if busy {
		return nil, &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrLeaseLost,
			Message: fmt.Sprintf("move %s is running in this process", id)}
	}
	r, err := m.claimMove(ctx, id)
	if err != nil {
		m.release(id)
		return nil, err
	}
	return r, nil
}

// release ends a run of the move in this process.
func (m *Mover) release(id string) {
	m.mu.Lock()
	delete(m.running, id)
	m.mu.Unlock()
}

func (m *Mover) claimMove(ctx context.Context, id string) (*run, error) {
	mv, err := m.cfg.Control.ClaimMove(ctx, id, m.cfg.Owner, m.cfg.Lease)
	if err != nil {
		return nil, err
	}
	r := &run{m: m, mv: mv, token: mv.Attempt, renewed: m.cfg.Now()}
	if r.ds = m.cfg.Datasets[mv.Dataset]; r.ds == nil {
		return nil, fmt.Errorf("move %s: unknown dataset %q", id, mv.Dataset)
	}
	if r.src = m.cfg.Stores[mv.From]; r.src == nil {
		return nil, fmt.Errorf("move %s: unknown region %q", id, mv.From)
	}
	if r.dst = m.cfg.Stores[mv.To]; r.dst == nil {
		return nil, fmt.Errorf("move %s: unknown region %q", id, mv.To)
	}
	return r, nil
}

func committed(s domicile.MoveState) bool {
	switch s {
	case domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated, domicile.MovePurged:
		return true
	}
	return false
}

// mark moves the run to a state it does not record: a step whose effects
// the next recorded step covers (see forward). A process that dies after it
// resumes from the last recorded state and runs the step again, which is
// safe because every step is idempotent.
func (r *run) mark(state domicile.MoveState) {
	r.mv.State = state
	if r.m.cfg.AfterStep != nil {
		r.m.cfg.AfterStep(r.mv, state)
	}
}

// record checks the token, records the new state and extends the lease, in
// one transaction of the control store.
func (r *run) record(ctx context.Context, state domicile.MoveState) error {
	now := r.m.cfg.Now()
	r.mv.LeaseExpires = now.Add(r.m.cfg.Lease)
	if err := r.m.cfg.Control.AdvanceMove(ctx, r.mv, r.token, state); err != nil {
		return fmt.Errorf("record %s: %w", state, err)
	}
	r.mv.State = state
	r.renewed = now
	if r.m.cfg.AfterStep != nil {
		r.m.cfg.AfterStep(r.mv, state)
	}
	return nil
}

// keepLease extends the lease every third of it while a step runs long (a
// large copy, a store waiting for a lock), so that another process does not
// take the move over meanwhile (which, before the commit, rolls it back). It
// returns the function that stops it. A renewal that fails is tried again
// at the next tick, unless the lease is lost (another claim has been
// granted): that is left to the next record, which checks the token.
func (r *run) keepLease(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(r.m.cfg.Lease/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := r.m.cfg.Control.RenewLease(ctx, r.mv.ID, r.token, r.m.cfg.Lease); errors.Is(err, domicile.ErrLeaseLost) {
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// save records the move's fields without changing its state.
func (r *run) save(ctx context.Context) error {
	r.mv.LeaseExpires = r.m.cfg.Now().Add(r.m.cfg.Lease)
	return r.m.cfg.Control.AdvanceMove(ctx, r.mv, r.token, r.mv.State)
}

// renew extends the lease before a step touches a store, when a third of it
// has passed since the last extension. The lease only keeps other processes
// off the move; what keeps a stale process from doing harm is the token
// checked by every record and the ownership preconditions of every store
// step.
func (r *run) renew(ctx context.Context) error {
	now := r.m.cfg.Now()
	if now.Sub(r.renewed) < r.m.cfg.Lease/3 {
		return nil
	}
	if err := r.m.cfg.Control.RenewLease(ctx, r.mv.ID, r.token, r.m.cfg.Lease); err != nil {
		return err
	}
	r.renewed = now
	return nil
}

func (r *run) transition(ctx context.Context, s domicile.Store, t domicile.Transition) error {
	t.Dataset, t.MoveID, t.Subjects = r.mv.Dataset, r.mv.ID, r.mv.Subjects
	if err := s.Transition(ctx, t); err != nil {
		return fmt.Errorf("%s: set %s: %w", s.Region(), t.To, err)
	}
	return nil
}

// forward drives the move from its recorded state. Before the commit any
// failure rolls it back; after it, failures are returned and a later run
// rolls it forward.
func (r *run) forward(ctx context.Context) (Result, error) {
	mv := r.mv
	cfg := r.m.cfg
	if mv.Receipt.Started.IsZero() {
		mv.Receipt = domicile.Receipt{
			MoveID: mv.ID, Dataset: mv.Dataset, From: mv.From, To: mv.To, Rule: mv.Rule,
			PolicyVersion: mv.PolicyVersion, Subjects: len(mv.Subjects), Started: cfg.Now(),
			Copy: mv.Receipt.Copy, // as planned
		}
	}
	// Prepared by another run, which may have begun a precopy (or a live
	// copy's pages and rounds) and may still write it (see precopy):
	// rolled back below, once max_block has had its say; the next pass
	// plans the subjects again. Whatever this run's own precopy setting:
	// the other run's may differ.
	takenOver := mv.State == domicile.MovePrepared
	for !mv.State.Done() {
		if mv.State == domicile.MoveRollingBack {
			return Result{Move: mv}, r.rollback(ctx, mv.Error)
		}
		if err := ctx.Err(); err != nil {
			if committed(mv.State) {
				return Result{Move: mv}, err
			}
			// Stopping before the commit: give the subjects back rather
			// than leave them fenced until the lease lapses.
			return Result{Move: mv}, errors.Join(err, r.rollback(ctx, "cancelled: "+context.Cause(ctx).Error()))
		}
		if !committed(mv.State) && !mv.FencedAt.IsZero() && cfg.Now().Sub(mv.FencedAt) > cfg.MaxBlock {
			reason := fmt.Sprintf("fenced for %s, longer than max_block %s, before commit", cfg.Now().Sub(mv.FencedAt).Round(time.Millisecond), cfg.MaxBlock)
			return Result{Move: mv}, r.rollback(ctx, reason)
		}
		if takenOver && mv.State == domicile.MovePrepared {
			return Result{Move: mv}, r.rollback(ctx, "taken over after its prepare: the run that prepared it may still be copying")
		}
		// While the subjects are fenced and the move is not committed, a
		// step may not run past max_block: it is cancelled, and the move
		// rolls back.
		var err error
		stepCtx, cancel := ctx, context.CancelFunc(func() {})
		if mv.State == domicile.MoveFenced || mv.State == domicile.MoveCopied {
			// Measured on the injected clock, as FencedAt is.
			stepCtx, cancel = context.WithTimeout(ctx, cfg.MaxBlock-cfg.Now().Sub(mv.FencedAt))
		}
		switch mv.State {
		case domicile.MovePlanned:
			err = r.prepare(ctx)
		case domicile.MovePrepared:
			if err = r.live(ctx); err == nil {
				if err = r.precopy(ctx); err == nil {
					err = r.fence(ctx)
				}
			}
		case domicile.MoveFenced:
			if mv.Receipt.Live != nil {
				err = r.liveDelta(stepCtx)
			} else {
				err = r.copy(stepCtx)
			}
		case domicile.MoveCopied:
			if mv.Receipt.Live != nil {
				err = r.liveVerify(stepCtx)
			} else {
				err = r.verify(stepCtx)
			}
		case domicile.MoveVerified:
			mv.Receipt.Committed = cfg.Now()
			err = r.record(ctx, domicile.MoveCommitted)
		case domicile.MoveCommitted:
			err = r.tombstone(ctx)
		case domicile.MoveTombstoned:
			err = r.activate(ctx)
		case domicile.MoveActivated:
			if err = r.liveFinish(ctx); err != nil {
				break
			}
			if cfg.Now().Before(mv.PurgeAfter) {
				cancel()
				if err := cfg.Control.ReleaseMove(ctx, mv.ID, r.token); err != nil {
					cfg.Logger.Warn("releasing a move in its rollback window", "move", mv.ID, "err", err)
				}
				return Result{Move: mv, Block: r.block()}, nil
			}
			err = r.purge(ctx)
		default:
			err = fmt.Errorf("move %s: unknown state %q", mv.ID, mv.State)
		}
		deadline := stepCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil
		cancel()
		if err == nil {
			continue
		}
		if deadline {
			err = fmt.Errorf("fenced longer than max_block %s, before commit: %w", cfg.MaxBlock, err)
		}
		if errors.Is(err, domicile.ErrLeaseLost) {
			return Result{Move: mv}, err
		}
		if committed(mv.State) {
			if errors.Is(err, domicile.ErrPrecondition) {
				cfg.Logger.Error("a committed move cannot go on: a store is not in the state the move left it in",
					"move", mv.ID, "state", mv.State, "err", err)
			}
			return Result{Move: mv}, err
		}
		if rbErr := r.rollback(ctx, err.Error()); rbErr != nil {
			return Result{Move: mv}, errors.Join(err, rbErr)
		}
		return Result{Move: mv}, err
	}
	return Result{Move: mv, Block: r.block()}, nil
}

// block is the write-block the move imposed: from the fence's commit until
// the destination accepted writes.
func (r *run) block() time.Duration {
	from := r.fencedAt
	if from.IsZero() { // resumed after the fence
		from = recordedFence(r.mv)
	}
	if from.IsZero() || r.activatedAt.IsZero() {
		return 0
	}
	return r.activatedAt.Sub(from)
}

// epochs returns the subjects' placement epochs that the move's ownership
// rows carry: the epochs the move was planned at, plus one once it commits
// (next). The move holds its placements from its creation to its commit, so
// nothing else changes them; a move recorded without its epochs reads them
// from the control store.
func (r *run) epochs(ctx context.Context, mv *domicile.Move, next bool) (map[string]int64, error) {
	out := make(map[string]int64, len(mv.Subjects))
	for _, s := range mv.Subjects {
		e, ok := mv.Epochs[s]
		if !ok {
			cur, err := r.m.cfg.Control.MoveEpochs(ctx, mv)
			if err != nil {
				return nil, err
			}
			if next && !committed(mv.State) {
				for s := range cur {
					cur[s]++
				}
			}
			return cur, nil
		}
		if next {
			e++
		}
		out[s] = e
	}
	return out, nil
}

// prepare marks the subjects incoming at the destination, which then refuses
// writes for them.
func (r *run) prepare(ctx context.Context) error {
	if err := r.renew(ctx); err != nil {
		return err
	}
	next, err := r.epochs(ctx, r.mv, true)
	if err != nil {
		return err
	}
	if err := r.chooseLive(ctx); err != nil {
		return err
	}
	err = r.transition(ctx, r.dst, domicile.Transition{
		From: []domicile.OwnerState{"", domicile.Moved}, To: domicile.Incoming, Region: r.mv.To, Epochs: next, MaxEpoch: r.mv.Epochs,
	})
	if err != nil {
		return err
	}
	if r.mv.Receipt.Live == nil && r.mv.FencedAt.IsZero() {
		// The fence follows at once: its time goes in with this record
		// (max_block counts from here, also in a run resumed after a
		// crash), which saves a record of its own.
		r.mv.FencedAt = r.m.cfg.Now()
		r.mv.Receipt.Fenced = r.mv.FencedAt
	}
	return r.record(ctx, domicile.MovePrepared)
}

// fence marks the subjects fenced at the source: in-flight writes drain,
// new ones are refused with a retryable error, reads go on.
func (r *run) fence(ctx context.Context) error {
	if err := r.renew(ctx); err != nil {
		return err
	}
	if r.mv.FencedAt.IsZero() {
		// Recorded before the fence, so that a run resumed after a crash
		// between the two still counts max_block from here.
		r.mv.FencedAt = r.m.cfg.Now()
		r.mv.Receipt.Fenced = r.mv.FencedAt
		if err := r.save(ctx); err != nil {
			return err
		}
	}
	if err := r.transition(ctx, r.src, domicile.Transition{From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced, MaxEpoch: r.mv.Epochs}); err != nil {
		return err
	}
	r.fencedAt = r.m.cfg.Now()
	// The block runs from here: recorded with the commit, for the
	// figures computed from the records (Queue).
	r.mv.Receipt.Fenced = r.fencedAt
	if r.mv.Receipt.Live != nil {
		// The live phases record their progress from here on.
		return r.record(ctx, domicile.MoveFenced)
	}
	r.mark(domicile.MoveFenced)
	return nil
}

// precopy copies the subjects' rows to the destination before the fence,
// while they may still change at the source. The destination holds them
// Incoming, so nobody changes them there, and the digests of the rows as
// it stored them (r.written) stay true until the activation. Inside the
// fence, copy then reads only the source's digests and copies again the
// subjects whose rows changed meanwhile: the fence covers a read of the
// source instead of the whole copy. A live move has copied already.
//
// Between SQLite files the precopy costs nothing more: the destination is
// read back after the copy either way, and the read of the source inside
// the fence replaces the one verify made. Where the rows pass through Go
// (PostgreSQL, mixed engines) it costs one read more: a copy inside the
// fence digests the source from the rows it read, where the precopy's
// must be read again inside the fence (Config.NoPrecopy saves it).
//
// A stale run of the same move (one whose lease lapsed) may still write
// its precopy at the destination, rows read from the source before the
// fence, after this run has verified its own: the destination's check
// (incoming under the move) cannot tell the runs apart. So a run never
// goes on from a prepare another run recorded (see forward): it rolls the
// move back, and the rollback's tombstone at the destination refuses the
// stale write, or its purge removes it.
func (r *run) precopy(ctx context.Context) error {
	if r.mv.Receipt.Live != nil || r.m.cfg.NoPrecopy {
		return nil
	}
	if err := r.renew(ctx); err != nil {
		return err
	}
	_, finds := r.src.(domicile.ChangeFinder)
	read, snapshot, err := r.copySubjects(ctx, r.mv.Subjects, finds)
	if err != nil {
		return err
	}
	if snapshot != "" && read != nil {
		r.read, r.snapshot = read, snapshot
	}
	d, err := r.readBack(ctx)
	if err != nil {
		return err
	}
	r.written, r.precopied = d, true
	if r.m.cfg.AfterStep != nil {
		r.m.cfg.AfterStep(r.mv, StepPrecopied)
	}
	if !r.mv.FencedAt.IsZero() {
		// Set by this run's prepare (a run never goes on from another's:
		// see forward) for the fence, which comes now: max_block counts
		// from here. The record keeps the prepare's time. (Zero for a live
		// move that fell back: the fence records its own.)
		r.mv.FencedAt = r.m.cfg.Now()
		r.mv.Receipt.Fenced = r.mv.FencedAt
	}
	return nil
}

// copy makes the destination hold the subjects' rows as the fenced source
// has them. After a precopy it takes the source's digests (sourceDigests)
// and copies again only the subjects whose rows differ from the precopy's;
// without one (Config.NoPrecopy) it copies them all.
func (r *run) copy(ctx context.Context) error {
	if err := r.renew(ctx); err != nil {
		return err
	}
	if !r.precopied {
		// Verify reads back what it needs, both ends at once.
		digests, _, err := r.copySubjects(ctx, r.mv.Subjects, true)
		if err != nil {
			return err
		}
		r.written, r.digests = nil, digests
		r.mark(domicile.MoveCopied)
		return nil
	}
	src, err := r.sourceDigests(ctx)
	if err != nil {
		return err
	}
	var changed []string
	for _, s := range r.mv.Subjects {
		if !src[s].Equal(r.written[s]) {
			changed = append(changed, s)
		}
	}
	if len(changed) > 0 {
		if _, _, err := r.copySubjects(ctx, changed, false); err != nil {
			return err
		}
		// Copying some subjects again may change others' rows there: a
		// path row two subjects share, a cascade, a trigger of the
		// application's. Only the destination read back tells.
		if r.written, err = r.readBack(ctx); err != nil {
			return err
		}
	}
	r.digests = src
	r.mv.Receipt.Recopied = len(changed)
	r.mark(domicile.MoveCopied)
	return nil
}

// sourceDigests returns the digests of the move's subjects at the source,
// inside the fence.
//
// A source that can find changes (domicile.ChangeFinder) is asked which
// subjects may have changed since the precopy read them: only those are
// read and digested again; the others' are the precopy's. Any other source
// reads and digests every subject.
func (r *run) sourceDigests(ctx context.Context) (map[string]domicile.SubjectDigest, error) {
	if cf, ok := r.src.(domicile.ChangeFinder); ok && r.read != nil {
		maybe, err := cf.ChangedSince(ctx, r.ds, r.snapshot, r.mv.Subjects, r.read)
		switch {
		case err == nil:
			src := maps.Clone(r.read)
			if len(maybe) > 0 {
				now, err := r.src.DigestSubjects(ctx, r.ds, maybe)
				if err != nil {
					return nil, fmt.Errorf("digest %s: %w", r.mv.From, err)
				}
				maps.Copy(src, now)
			}
			return src, nil
		case !errors.Is(err, domicile.ErrNotSupported):
			return nil, fmt.Errorf("changes at %s: %w", r.mv.From, err)
		}
	}
	src, err := r.src.DigestSubjects(ctx, r.ds, r.mv.Subjects)
	if err != nil {
		return nil, fmt.Errorf("digest %s: %w", r.mv.From, err)
	}
	return src, nil
}

// copySubjects replaces whatever an earlier attempt left at the destination
// with the subjects' rows from the source. With digestSource, it returns the
// digests of the source's rows when the copy read them through Go (nil when
// the destination copied them itself: verify reads the source then), and
// the snapshot the source named for them (domicile.Batch.Snapshot).
func (r *run) copySubjects(ctx context.Context, subjects []string, digestSource bool) (source map[string]domicile.SubjectDigest, snapshot string, err error) {
	if c, ok := r.dst.(domicile.SubjectCopier); ok {
		_, err := c.CopySubjectsFrom(ctx, r.src, r.ds, r.mv.ID, subjects)
		switch {
		case err == nil:
			return nil, "", nil
		case !errors.Is(err, domicile.ErrNotSupported):
			return nil, "", fmt.Errorf("copy %s to %s: %w", r.mv.From, r.mv.To, err)
		}
	}
	b, err := r.src.ReadSubjects(ctx, r.ds, subjects)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", r.mv.From, err)
	}
	if digestSource {
		if source, err = domicile.DigestBatch(r.ds, subjects, b); err != nil {
			return nil, "", err
		}
	}
	b.MoveID = r.mv.ID
	if err := r.dst.WriteSubjects(ctx, r.ds, subjects, b); err != nil {
		return nil, "", fmt.Errorf("write %s: %w", r.mv.To, err)
	}
	return source, b.Snapshot, nil
}

// readBack returns the digests of the move's subjects as the destination
// stores them.
func (r *run) readBack(ctx context.Context) (map[string]domicile.SubjectDigest, error) {
	d, err := r.dst.DigestSubjects(ctx, r.ds, r.mv.Subjects)
	if err != nil {
		return nil, fmt.Errorf("digest %s: %w", r.mv.To, err)
	}
	return d, nil
}

// verify compares the per-subject digests at both ends.
func (r *run) verify(ctx context.Context) error {
	if err := r.renew(ctx); err != nil {
		return err
	}
	// Both ends are read at once: they are different databases, and the
	// fence keeps both still.
	src, dst := r.digests, map[string]domicile.SubjectDigest(nil)
	g, gctx := errgroup.WithContext(ctx)
	if src == nil { // copied in the database, or resumed after a restart
		g.Go(func() (err error) {
			if src, err = r.src.DigestSubjects(gctx, r.ds, r.mv.Subjects); err != nil {
				return fmt.Errorf("digest %s: %w", r.mv.From, err)
			}
			return nil
		})
	}
	if dst = r.written; dst == nil { // or read back, after a restart
		g.Go(func() (err error) {
			dst, err = r.readBack(gctx)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, s := range r.mv.Subjects {
		if !src[s].Equal(dst[s]) {
			return fmt.Errorf("verify: subject %s differs between %s and %s", s, r.mv.From, r.mv.To)
		}
	}
	rc := &r.mv.Receipt
	rc.Digest = domicile.BatchDigest(src, "")
	rc.Bytes = 0
	for _, d := range src {
		rc.Bytes += d.Bytes
	}
	rc.Tables = rc.Tables[:0]
	for _, t := range r.ds.Tables {
		tr := domicile.TableReceipt{Table: t.Name, Digest: domicile.BatchDigest(src, t.Name)}
		for _, s := range r.mv.Subjects {
			tr.SourceRows += src[s].Rows[t.Name]
			tr.DestRows += dst[s].Rows[t.Name]
		}
		rc.Tables = append(rc.Tables, tr)
	}
	// The commit records the receipt.
	r.mark(domicile.MoveVerified)
	return nil
}

// tombstone leaves "moved to T at epoch E" at the source, so that a stale
// writer or reader there is redirected, then activates the destination;
// the activation's record covers both. The tombstone comes first: until
// it is in place the fenced source still serves reads, and none may be
// served there once the destination takes writes.
//
// A run resumed from the commit takes both steps again: each is a no-op
// where it ran already, and leaves alone a subject a later move has taken
// on since (SkipLater: the commit made the placements active at the
// destination, so a later move may begin there as soon as the activation
// is done, before its record).
func (r *run) tombstone(ctx context.Context) error {
	epochs, err := r.epochs(ctx, r.mv, true)
	if err != nil {
		return err
	}
	err = r.transition(ctx, r.src, domicile.Transition{
		From: []domicile.OwnerState{domicile.Fenced}, Own: true, To: domicile.Moved, Region: r.mv.To, Epochs: epochs, SkipLater: true,
	})
	if err != nil {
		return err
	}
	r.mark(domicile.MoveTombstoned) // not recorded: see above
	return r.activate(ctx)
}

// activate makes the destination the owner: writes resume there. (A move
// recorded as tombstoned, by an earlier version, resumes here.)
func (r *run) activate(ctx context.Context) error {
	epochs, err := r.epochs(ctx, r.mv, true)
	if err != nil {
		return err
	}
	err = r.transition(ctx, r.dst, domicile.Transition{
		From: []domicile.OwnerState{domicile.Incoming}, Own: true, To: domicile.Owned, Region: r.mv.To, Epochs: epochs, SkipLater: true,
	})
	if err != nil {
		return err
	}
	r.activatedAt = r.m.cfg.Now()
	r.mv.PurgeAfter = r.activatedAt.Add(r.m.cfg.PurgeAfter)
	return r.record(ctx, domicile.MoveActivated)
}

// purge deletes the rows left at the source and writes the receipt.
func (r *run) purge(ctx context.Context) error {
	if err := r.renew(ctx); err != nil {
		return err
	}
	n, err := r.src.PurgeMoved(ctx, r.ds, r.mv.ID, r.mv.Subjects)
	if err != nil {
		return fmt.Errorf("purge %s: %w", r.mv.From, err)
	}
	var expected int64
	for _, t := range r.mv.Receipt.Tables {
		expected += t.SourceRows
	}
	if n != expected {
		// Fewer rows than verify counted: either an earlier attempt
		// deleted them (a purge resumed after a crash), or some subjects
		// came back here by a later move (a rollback) before the purge,
		// and their rows are live again. Prove that none of the subjects
		// still tombstoned under this move has rows left.
		still, err := r.stillMoved(ctx)
		if err != nil {
			return fmt.Errorf("purge %s: %w", r.mv.From, err)
		}
		left, _, err := r.src.MeasureSubjects(ctx, r.ds, still)
		if err != nil {
			return fmt.Errorf("purge %s: %w", r.mv.From, err)
		}
		if left != 0 {
			return fmt.Errorf("purge %s: %d rows of the move's subjects are left", r.mv.From, left)
		}
		r.mv.Receipt.Superseded = len(r.mv.Subjects) - len(still)
		if r.mv.Receipt.Superseded == 0 {
			r.m.cfg.Logger.Info("purge resumed: an earlier attempt deleted the rows", "move", r.mv.ID, "deleted_now", n, "verified", expected)
			n = max(n, expected)
		}
	}
	r.mv.Receipt.Purged = n
	r.mv.Receipt.Finished = r.m.cfg.Now()
	return r.record(ctx, domicile.MovePurged)
}

// stillMoved returns the move's subjects that the source still holds
// tombstoned under it: the others a later move has taken on since.
func (r *run) stillMoved(ctx context.Context) ([]string, error) {
	var still []string
	for _, s := range r.mv.Subjects {
		o, err := r.src.FindOwnership(ctx, r.ds.Name, s)
		if err == nil && o.State == domicile.Moved && o.MoveID == r.mv.ID {
			still = append(still, s)
		} else if err != nil && domicile.ErrorCode(err) != domicile.CodeNotFound {
			return nil, err
		}
	}
	return still, nil
}

// rollback undoes an uncommitted move: the source takes writes again, the
// destination's copy goes, and the placements return to Active at the
// source. The decision is recorded first (RollingBack, token-checked), which
// bars the commit, so a stale process can never commit the move meanwhile.
func (r *run) rollback(ctx context.Context, reason string) error {
	ctx = context.WithoutCancel(ctx)
	mv := r.mv
	if committed(mv.State) {
		return fmt.Errorf("move %s is committed: it cannot roll back", mv.ID)
	}
	if mv.State != domicile.MoveRollingBack {
		mv.Error = reason
		if err := r.record(ctx, domicile.MoveRollingBack); err != nil {
			return err
		}
	}
	r.m.cfg.Logger.Warn("rolling back move", "move", mv.ID, "dataset", mv.Dataset, "from", mv.From, "to", mv.To, "reason", mv.Error)
	epochs, err := r.epochs(ctx, mv, false)
	if err != nil {
		return err
	}
	// Subjects a stale run of this move has not fenced yet are marked
	// given back by this move first, so that its fence is refused from
	// here on (a fence refuses rows its move gave back); in the other
	// order such a fence could land between the two.
	if err := r.transition(ctx, r.src, domicile.Transition{
		From: []domicile.OwnerState{domicile.Owned}, Lenient: true, To: domicile.Owned, Region: mv.From, Epochs: epochs, MaxEpoch: mv.Epochs,
	}); err != nil {
		return err
	}
	// Give the source back first: that is what unblocks writers.
	if err := r.transition(ctx, r.src, domicile.Transition{
		From: []domicile.OwnerState{domicile.Fenced}, Own: true, Lenient: true, To: domicile.Owned, Region: mv.From, Epochs: epochs,
	}); err != nil {
		return err
	}
	if err := r.endCapture(ctx); err != nil {
		return err
	}
	// At the destination every subject ends with a tombstone under this
	// move pointing at the source, whether or not the prepare ran: a stale
	// process can then never mark it incoming again.
	if err := r.transition(ctx, r.dst, domicile.Transition{
		From: []domicile.OwnerState{domicile.Incoming}, Own: true, Lenient: true, To: domicile.Moved, Region: mv.From, Epochs: epochs,
	}); err != nil {
		return err
	}
	if err := r.transition(ctx, r.dst, domicile.Transition{
		From: []domicile.OwnerState{"", domicile.Moved}, Lenient: true, To: domicile.Moved, Region: mv.From, Epochs: epochs,
	}); err != nil {
		return err
	}
	if _, err := r.dst.PurgeMoved(ctx, r.ds, mv.ID, mv.Subjects); err != nil {
		return fmt.Errorf("drop the copy at %s: %w", mv.To, err)
	}
	mv.Receipt.Finished = r.m.cfg.Now()
	return r.record(ctx, domicile.MoveRolledBack)
}
