package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// Transition changes the ownership rows of a move's subjects in one
// transaction, under the precondition domicile.Transition describes.
//
// The subjects' rows are locked FOR UPDATE while the precondition is
// checked, which also waits for writes in flight (the triggers hold FOR
// SHARE). A row the precondition found missing is inserted without ON
// CONFLICT: if another transaction created it meanwhile, the transition
// fails with ErrPrecondition rather than overwrite it.
func (s *Store) Transition(ctx context.Context, tr domicile.Transition) error {
	if !tr.To.Valid() {
		return domicile.Errorf(domicile.CodeInvalid, "ownership state %q is not one of owned, incoming, fenced, moved", tr.To)
	}
	if tr.Dataset == "" || tr.MoveID == "" {
		return domicile.Errorf(domicile.CodeInvalid, "a transition needs a dataset and a move id")
	}
	err := s.update(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+ownerColumns+` FROM domicile_owner
			WHERE dataset = $1 AND subject = ANY($2::text[]) ORDER BY subject FOR UPDATE`, tr.Dataset, tr.Subjects)
		if err != nil {
			return err
		}
		have := make(map[string]domicile.Ownership, len(tr.Subjects))
		for rows.Next() {
			var o domicile.Ownership
			if err := scanOwnership(rows, &o); err != nil {
				rows.Close()
				return err
			}
			have[o.Subject] = o
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var updates, inserts []domicile.Ownership
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
			if c.State == "" {
				inserts = append(inserts, o)
			} else {
				updates = append(updates, o)
			}
			have[id] = o // a subject named twice is written once
		}
		if len(updates) > 0 {
			_, err := tx.Exec(ctx, `UPDATE domicile_owner AS o SET state = n.state, region = n.region, epoch = n.epoch, move_id = n.move_id
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
					AS n(subject, dataset, state, region, epoch, move_id)
				WHERE o.subject = n.subject AND o.dataset = n.dataset`, ownershipArrays(updates)...)
			if err != nil {
				return err
			}
		}
		if len(inserts) > 0 {
			_, err := tx.Exec(ctx, `INSERT INTO domicile_owner (`+ownerColumns+`)
				SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])`, ownershipArrays(inserts)...)
			if isConflict(err) {
				return &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrPrecondition,
					Message: fmt.Sprintf("ownership rows of %s appeared during a transition of move %s", tr.Dataset, tr.MoveID)}
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("transition of %d subjects of %s to %s in region %s: %w", len(tr.Subjects), tr.Dataset, tr.To, s.region, err)
	}
	return nil
}
