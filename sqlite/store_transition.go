package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/domicile/domicile"
)

// Transition changes the ownership rows of a move's subjects in one
// transaction, under the precondition domicile.Transition describes. It
// runs on the mover's connection, with the statements it keeps.
func (s *Store) Transition(ctx context.Context, tr domicile.Transition) error {
	if err := tr.Validate(); err != nil {
		return err
	}
	err := s.bypass(ctx, func(tx *sql.Tx) error {
		q := s.cached(tx)
		have, err := ownershipOf(ctx, q, tr.Dataset, tr.Subjects)
		if err != nil {
			return err
		}
		writes, err := tr.Writes(have)
		if err != nil {
			return err
		}
		return upsertOwnership(ctx, q, writes)
	})
	if err != nil {
		return fmt.Errorf("transition of %d subjects of %s to %s in region %s: %w", len(tr.Subjects), tr.Dataset, tr.To, s.region, err)
	}
	return nil
}

// upsertOwnership writes ownership rows: one statement per row on the
// mover's connection, where it is prepared once (cachedTx), and otherwise
// with multi-row statements, each prepared for the one transaction.
func upsertOwnership(ctx context.Context, tx querierCtx, rows []domicile.Ownership) error {
	if c, ok := tx.(cachedTx); ok {
		st, err := c.s.moverStmt(ctx, c.tx, upsertOwner)
		if err != nil {
			return err
		}
		for _, o := range rows {
			if _, err := st.ExecContext(ctx, o.Subject, o.Dataset, string(o.State), o.Region, o.Epoch, o.MoveID); err != nil {
				return err
			}
		}
		return nil
	}
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
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ") + upsertOwnerSet
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// upsertOwnerSet is the conflict clause of an ownership row's upsert.
const upsertOwnerSet = ` ON CONFLICT (subject, dataset) DO UPDATE SET state = excluded.state, region = excluded.region,
	epoch = excluded.epoch, move_id = excluded.move_id`

// upsertOwner upserts one ownership row.
const upsertOwner = `INSERT INTO domicile_owner (` + ownerColumns + `) VALUES (?, ?, ?, ?, ?, ?)` + upsertOwnerSet
