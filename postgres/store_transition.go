package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Transition changes the ownership rows of a move's subjects in one
// transaction, under the precondition domicile.Transition describes.
//
// The subjects' rows are locked FOR UPDATE while the precondition is
// checked, which also waits for writes in flight (the triggers hold FOR
// SHARE). A row the precondition found missing is inserted without ON
// CONFLICT: if another transaction created it meanwhile, the transition
// fails with ErrPrecondition rather than overwrite it.
//
// A transition that inserts no row (its From has no missing state) first
// writes, in one UPDATE, the rows that meet the precondition as Writes
// would write them; the UPDATE's row locks wait for writes in flight as
// FOR UPDATE would. When it wrote every subject, that is the transition,
// and it commits: two round trips, without the read and its locks, which
// cost the server about as much as the writes. Otherwise the rows it
// wrote read as done (Writes skips them) and the others are decided as
// above, in the same transaction.
//
// Both paths lock the rows in the subjects' byte order (the read sorts
// with COLLATE "C"; the UPDATE takes the subjects sorted, in the order its
// plans, a nested loop or a hash join over them, visit them), so two
// transitions of the same rows (a stale run and the live one, a rollback)
// do not deadlock each other. The order holds only as far as the planner
// keeps it, and other lockers of several rows (a writer's transaction, a
// purge's check) keep none: a transition the server ends as a deadlock's
// victim rolls back whole and is run again, up to transitionTries times.
func (s *Store) Transition(ctx context.Context, tr domicile.Transition) error {
	if err := tr.Validate(); err != nil {
		return err
	}
	var err error
	for try := 1; ; try++ {
		if err = s.transition(ctx, tr); pgCode(err) != deadlockDetected || try == transitionTries || ctx.Err() != nil {
			break
		}
	}
	if pgCode(err) == undefinedTable {
		err = errOldInstall
	}
	if err != nil {
		return fmt.Errorf("transition of %d subjects of %s to %s in region %s: %w", len(tr.Subjects), tr.Dataset, tr.To, s.region, err)
	}
	return nil
}

// transitionTries is how many times Transition runs a transition that
// ends in a deadlock.
const transitionTries = 3

// deadlockDetected is PostgreSQL's code for a transaction ended as a
// deadlock's victim.
const deadlockDetected = "40P01"

// transition is one attempt of Transition, in one transaction.
func (s *Store) transition(ctx context.Context, tr domicile.Transition) error {
	return s.update(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		queueLockSubjects(b, tr.Dataset, tr.Subjects)
		if !slices.Contains(tr.From, "") {
			args, n := transitionArgs(tr)
			var written int64
			b.Queue(transitionUpdate, args...).Exec(func(ct pgconn.CommandTag) error {
				written = ct.RowsAffected()
				return nil
			})
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
			if written == int64(n) {
				return nil // the commit follows
			}
			b = &pgx.Batch{}
		}
		// Two round trips: the locks and the read (after the lazy BEGIN),
		// then the writes with the COMMIT.
		have := make(map[string]domicile.Ownership, len(tr.Subjects))
		b.Queue(`SELECT `+ownerColumns+` FROM domicile_owner
			WHERE dataset = $1 AND subject = ANY($2::text[]) ORDER BY subject COLLATE "C" FOR UPDATE`, tr.Dataset, tr.Subjects).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var o domicile.Ownership
				if err := scanOwnership(rows, &o); err != nil {
					return err
				}
				have[o.Subject] = o
			}
			return rows.Err()
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		writes, err := tr.Writes(have)
		if err != nil {
			return err
		}
		var updates, inserts []domicile.Ownership
		for _, o := range writes {
			if have[o.Subject].State == "" {
				inserts = append(inserts, o)
			} else {
				updates = append(updates, o)
			}
		}
		w := &pgx.Batch{}
		if len(updates) > 0 {
			w.Queue(`UPDATE domicile_owner AS o SET state = n.state, region = n.region, epoch = n.epoch, move_id = n.move_id
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
					AS n(subject, dataset, state, region, epoch, move_id)
				WHERE o.subject = n.subject AND o.dataset = n.dataset`, ownershipArrays(updates)...)
		}
		if len(inserts) > 0 {
			queueInsertOwnership(w, inserts, "")
		}
		err = commitBatch(ctx, tx, w)
		if len(inserts) > 0 && isConflict(err) {
			// Only an inserted row can conflict.
			return &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrPrecondition,
				Message: fmt.Sprintf("ownership rows of %s appeared during a transition of move %s", tr.Dataset, tr.MoveID)}
		}
		return err
	})
}

// transitionUpdate is the UPDATE of a transition's fast path: it writes
// the rows Transition.Writes would write, and only those. Its arguments
// are transitionArgs'.
const transitionUpdate = `UPDATE domicile_owner AS o
	SET state = $2, region = $3, epoch = coalesce(n.epoch, o.epoch), move_id = $4
	FROM unnest($8::text[], $9::bigint[], $10::bigint[]) AS n(subject, epoch, max_epoch)
	WHERE o.dataset = $1 AND o.subject = n.subject
		AND NOT (o.state = $2 AND o.move_id = $4)
		AND NOT ($7 AND n.epoch IS NOT NULL AND o.move_id <> $4 AND o.epoch >= n.epoch)
		AND o.state = ANY($5::text[]) AND (o.move_id = $4) = $6
		AND (n.max_epoch IS NULL OR o.epoch <= n.max_epoch)`

// transitionArgs returns the arguments of transitionUpdate for tr, the
// subjects once each and in byte order, and their number, which it
// writes when each meets the precondition.
func transitionArgs(tr domicile.Transition) ([]any, int) {
	subjects := slices.Compact(slices.Sorted(slices.Values(tr.Subjects)))
	epochs := make([]*int64, len(subjects))
	maxEpochs := make([]*int64, len(subjects))
	for i, id := range subjects {
		var e, m *int64
		if v, ok := tr.Epochs[id]; ok {
			e = &v
		}
		if v, ok := tr.MaxEpoch[id]; ok {
			m = &v
		}
		epochs[i], maxEpochs[i] = e, m
	}
	from := make([]string, len(tr.From))
	for i, f := range tr.From {
		from[i] = string(f)
	}
	return []any{tr.Dataset, string(tr.To), tr.Region, tr.MoveID, from, tr.Own, tr.SkipLater, subjects, epochs, maxEpochs}, len(subjects)
}

// queueLockSubjects queues the taking of the subjects' advisory locks, in
// a store that accepts unknown subjects: writers of a subject without an
// ownership row hold its lock shared (see refuseBody), so the caller waits
// for those in flight, and keeps new ones off until it commits.
func queueLockSubjects(b *pgx.Batch, dataset string, subjects []string) {
	b.Queue(`SELECT pg_advisory_xact_lock(`+subjectLock("$1::text", "x.s")+`)
		FROM (SELECT DISTINCT unnest($2::text[]) AS s ORDER BY 1) AS x
		WHERE `+everAcceptedUnknown, dataset, subjects)
}

// everAcceptedUnknown is the condition that the store accepts, or once
// accepted, unknown subjects: install sets accepted_unknown when it accepts
// them and never clears it, so that writers still in flight, or on a
// snapshot, from the time it accepted them are waited for and probed after
// a reinstall turns accepting off (see refuseBody).
const everAcceptedUnknown = `EXISTS (SELECT 1 FROM domicile_settings WHERE key = 'accepted_unknown' AND value = '1')`

// lockSubjects takes the subjects' advisory locks (queueLockSubjects).
func lockSubjects(ctx context.Context, tx pgx.Tx, dataset string, subjects []string) error {
	b := &pgx.Batch{}
	queueLockSubjects(b, dataset, subjects)
	return tx.SendBatch(ctx, b).Close()
}
