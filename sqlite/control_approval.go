package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/domicile/domicile"
)

// approvalSchema is the record of approvals of transfer rules. seq never
// reuses the number of a deleted record (AUTOINCREMENT), since ledger
// entries name records by it.
const approvalSchema = `
CREATE TABLE IF NOT EXISTS approvals (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	revokes     INTEGER NOT NULL DEFAULT 0, -- a revocation: the seq it revokes
	transfer    TEXT NOT NULL,
	dest        TEXT NOT NULL DEFAULT '',
	kind        TEXT NOT NULL,
	ref         TEXT NOT NULL,
	by_whom     TEXT NOT NULL,
	note        TEXT NOT NULL DEFAULT '',
	valid_from  INTEGER NOT NULL DEFAULT 0,
	valid_until INTEGER NOT NULL DEFAULT 0,
	recorded    INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS approvals_revokes ON approvals (revokes) WHERE revokes <> 0;
`

// RecordApproval records an approval and its ledger entry in one
// transaction.
func (c *Control) RecordApproval(ctx context.Context, a domicile.Approval) (domicile.Approval, error) {
	if err := domicile.CheckApproval(a); err != nil {
		return a, err
	}
	err := c.update(ctx, func(tx *sql.Tx) error {
		if a.Revokes != 0 {
			var revokes, revoked int64
			err := tx.QueryRowContext(ctx, `SELECT transfer, dest, revokes, (SELECT count(*) FROM approvals WHERE revokes = a.seq)
				FROM approvals a WHERE seq = ?`, a.Revokes).Scan(&a.Transfer, &a.To, &revokes, &revoked)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound(fmt.Sprintf("approval %d", a.Revokes))
			} else if err != nil {
				return err
			}
			if err := domicile.CheckRevocation(a.Revokes, revokes, revoked); err != nil {
				return err
			}
		}
		now := c.now()
		a.Recorded = fromMillis(millis(now))
		a.ValidFrom, a.ValidUntil = fromMillis(millis(a.ValidFrom)), fromMillis(millis(a.ValidUntil))
		err := tx.QueryRowContext(ctx, `INSERT INTO approvals (revokes, transfer, dest, kind, ref, by_whom, note, valid_from, valid_until, recorded)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`, a.Revokes, a.Transfer, a.To, a.Kind, a.Ref, a.By, a.Note,
			millis(a.ValidFrom), millis(a.ValidUntil), millis(a.Recorded)).Scan(&a.Seq)
		if err != nil {
			return fmt.Errorf("record approval: %w", err)
		}
		kind, body := domicile.ApprovalEntry(a)
		return appendLedger(ctx, tx, now, kind, a.Transfer, body)
	})
	return a, err
}

// ListApprovals returns every approval, oldest first.
func (c *Control) ListApprovals(ctx context.Context) ([]domicile.Approval, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT seq, revokes, transfer, dest, kind, ref, by_whom, note, valid_from, valid_until, recorded
		FROM approvals ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []domicile.Approval{}
	for rows.Next() {
		var a domicile.Approval
		var from, until, recorded int64
		if err := rows.Scan(&a.Seq, &a.Revokes, &a.Transfer, &a.To, &a.Kind, &a.Ref, &a.By, &a.Note, &from, &until, &recorded); err != nil {
			return nil, err
		}
		a.ValidFrom, a.ValidUntil, a.Recorded = fromMillis(from), fromMillis(until), fromMillis(recorded)
		out = append(out, a)
	}
	return out, rows.Err()
}
