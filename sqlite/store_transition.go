package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/domicile/domicile"
)

// Transition changes the ownership rows of a move's subjects in one
// transaction, under the precondition domicile.Transition describes.
func (s *Store) Transition(ctx context.Context, tr domicile.Transition) error {
	if err := tr.Validate(); err != nil {
		return err
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		have, err := ownershipOf(ctx, tx, tr.Dataset, tr.Subjects)
		if err != nil {
			return err
		}
		writes, err := tr.Writes(have)
		if err != nil {
			return err
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
