package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/domicile/domicile"
)

// Transition changes the ownership rows of a move's subjects in one
// transaction, under the precondition domicile.Transition describes.
func (s *Store) Transition(ctx context.Context, tr domicile.Transition) error {
	if !tr.To.Valid() {
		return domicile.Errorf(domicile.CodeInvalid, "ownership state %q is not one of owned, incoming, fenced, moved", tr.To)
	}
	if tr.Dataset == "" || tr.MoveID == "" {
		return domicile.Errorf(domicile.CodeInvalid, "a transition needs a dataset and a move id")
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		have, err := ownershipOf(ctx, tx, tr.Dataset, tr.Subjects)
		if err != nil {
			return err
		}
		var writes []domicile.Ownership
		for _, id := range tr.Subjects {
			c := have[id] // no row: state ""
			if c.State == tr.To && c.MoveID == tr.MoveID {
				continue // this step ran already
			}
			maxEpoch, capped := tr.MaxEpoch[id]
			if !slices.Contains(tr.From, c.State) || (c.MoveID == tr.MoveID) != tr.Own || capped && c.State != "" && c.Epoch > maxEpoch {
				if tr.Lenient {
					continue
				}
				return &domicile.Error{Code: domicile.CodeConflict,
					Message: fmt.Sprintf("subject %s of %s is %q under move %q, not in a state move %s may change to %s",
						id, tr.Dataset, c.State, c.MoveID, tr.MoveID, tr.To),
					Err: domicile.ErrPrecondition}
			}
			epoch := c.Epoch
			if e, ok := tr.Epochs[id]; ok {
				epoch = e
			}
			o := domicile.Ownership{Subject: id, Dataset: tr.Dataset, State: tr.To, Region: tr.Region, Epoch: epoch, MoveID: tr.MoveID}
			have[id] = o // a subject named twice is written once
			writes = append(writes, o)
		}
		return upsertOwnership(ctx, tx, writes)
	})
	if err != nil {
		return fmt.Errorf("transition of %d subjects of %s to %s in region %s: %w", len(tr.Subjects), tr.Dataset, tr.To, s.region, err)
	}
	return nil
}

// upsertOwnership writes ownership rows with multi-row statements.
func upsertOwnership(ctx context.Context, tx *sql.Tx, rows []domicile.Ownership) error {
	const perRow = 6
	const per = maxInsertArgs / perRow
	args := make([]any, 0, min(per, len(rows))*perRow)
	for len(rows) > 0 {
		n := min(per, len(rows))
		args = args[:0]
		for _, o := range rows[:n] {
			args = append(args, o.Subject, o.Dataset, string(o.State), o.Region, o.Epoch, o.MoveID)
		}
		q := `INSERT INTO domicile_owner (` + ownerColumns + `) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ") +
			` ON CONFLICT (subject, dataset) DO UPDATE SET state = excluded.state, region = excluded.region,
			epoch = excluded.epoch, move_id = excluded.move_id`
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}
