package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/domicile/domicile"
)

var _ domicile.PolicyRecorder = (*Control)(nil)

// RecordPolicy appends a policy.version entry unless the ledger has one for
// the version.
func (c *Control) RecordPolicy(ctx context.Context, version string, body any) (bool, error) {
	recorded := false
	err := c.update(ctx, func(tx *sql.Tx) error {
		recorded = false
		// Looked up by kind and ref: an index of its own, made on first use.
		if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS ledger_kind_ref ON ledger (kind, ref)`); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM ledger WHERE kind = ? AND ref = ? LIMIT 1`, domicile.LedgerPolicyVersion, version).Scan(&one)
		if err == nil {
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		recorded = true
		return appendLedger(ctx, tx, c.now(), domicile.LedgerPolicyVersion, version, body)
	})
	return recorded, err
}
