package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/domicile/domicile"
)

// Transition changes the ownership rows of a move's subjects in one
// transaction, under the precondition domicile.Transition describes.
func (s *Store) Transition(ctx context.Context, tr domicile.Transition) error {
	switch tr.To {
	case domicile.Owned, domicile.Incoming, domicile.Fenced, domicile.Moved:
	default:
		return domicile.Errorf(domicile.CodeInvalid, "ownership state %q is not one of owned, incoming, fenced, moved", tr.To)
	}
	if tr.Dataset == "" || tr.MoveID == "" {
		return domicile.Errorf(domicile.CodeInvalid, "a transition needs a dataset and a move id")
	}
	type current struct {
		state  domicile.OwnerState
		moveID string
		epoch  int64
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		have := make(map[string]current, len(tr.Subjects))
		err := inChunks([]any{tr.Dataset}, tr.Subjects, func(n int, args []any) error {
			rows, err := tx.QueryContext(ctx, `SELECT subject, state, move_id, epoch FROM domicile_owner
				WHERE dataset = ? AND subject IN (`+placeholders(n)+`)`, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				var c current
				if err := rows.Scan(&id, &c.state, &c.moveID, &c.epoch); err != nil {
					return err
				}
				have[id] = c
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO domicile_owner (`+ownerColumns+`) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (subject, dataset) DO UPDATE SET state = excluded.state, region = excluded.region,
			epoch = excluded.epoch, move_id = excluded.move_id`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range tr.Subjects {
			c := have[id] // no row: state ""
			if c.state == tr.To && c.moveID == tr.MoveID {
				continue // this step ran already
			}
			if !slices.Contains(tr.From, c.state) || (c.moveID == tr.MoveID) != tr.Own {
				if tr.Lenient {
					continue
				}
				return &domicile.Error{Code: domicile.CodeConflict,
					Message: fmt.Sprintf("subject %s of %s is %q under move %q, not in a state move %s may change to %s",
						id, tr.Dataset, c.state, c.moveID, tr.MoveID, tr.To),
					Err: domicile.ErrPrecondition}
			}
			epoch := c.epoch
			if e, ok := tr.Epochs[id]; ok {
				epoch = e
			}
			if _, err := st.ExecContext(ctx, id, tr.Dataset, string(tr.To), tr.Region, epoch, tr.MoveID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("transition of %d subjects of %s to %s in region %s: %w", len(tr.Subjects), tr.Dataset, tr.To, s.region, err)
	}
	return nil
}
