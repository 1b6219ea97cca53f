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
		var writes []domicile.Ownership
		for _, id := range tr.Subjects {
			c := have[id] // no row: state ""
			if c.state == tr.To && c.moveID == tr.MoveID {
				continue // this step ran already
			}
			maxEpoch, capped := tr.MaxEpoch[id]
			if !slices.Contains(tr.From, c.state) || (c.moveID == tr.MoveID) != tr.Own || capped && c.state != "" && c.epoch > maxEpoch {
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
			// A subject named twice is written once.
			have[id] = current{state: tr.To, moveID: tr.MoveID, epoch: epoch}
			writes = append(writes, domicile.Ownership{Subject: id, Dataset: tr.Dataset, State: tr.To, Region: tr.Region, Epoch: epoch, MoveID: tr.MoveID})
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
