package postgres

import (
	"context"
	"errors"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

var _ domicile.PolicyRecorder = (*Control)(nil)

// RecordPolicy appends a policy.version entry unless the ledger has one for
// the version. The ledger's head row is locked first, so that two processes
// starting under a new policy record it once.
func (c *Control) RecordPolicy(ctx context.Context, version string, body any) (bool, error) {
	recorded := false
	err := c.update(ctx, func(tx pgx.Tx) error {
		recorded = false
		if _, err := tx.Exec(ctx, `SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE INDEX IF NOT EXISTS ledger_kind_ref ON ledger (kind, ref)`); err != nil {
			return err
		}
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM ledger WHERE kind = $1 AND ref = $2 LIMIT 1`, domicile.LedgerPolicyVersion, version).Scan(&one)
		if err == nil {
			return nil
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		recorded = true
		return controlAppend(ctx, tx, c.now(), domicile.LedgerPolicyVersion, version, body)
	})
	return recorded, err
}
