package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// controlApprovalSchema is the record of approvals of transfer rules, made
// apart from controlSchema so that control stores made before it get it
// when opened.
const controlApprovalSchema = `
CREATE TABLE IF NOT EXISTS approvals (
	seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	revokes     BIGINT NOT NULL DEFAULT 0, -- a revocation: the seq it revokes
	transfer    TEXT COLLATE "C" NOT NULL,
	dest        TEXT COLLATE "C" NOT NULL DEFAULT '',
	kind        TEXT NOT NULL,
	ref         TEXT NOT NULL,
	by_whom     TEXT NOT NULL,
	note        TEXT NOT NULL DEFAULT '',
	valid_from  BIGINT NOT NULL DEFAULT 0,
	valid_until BIGINT NOT NULL DEFAULT 0,
	recorded    BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS approvals_revokes ON approvals (revokes) WHERE revokes <> 0;
`

// RecordApproval records an approval and its ledger entry in one
// transaction.
func (c *Control) RecordApproval(ctx context.Context, a domicile.Approval) (domicile.Approval, error) {
	if err := domicile.CheckApproval(a); err != nil {
		return a, err
	}
	err := c.update(ctx, func(tx pgx.Tx) error {
		if a.Revokes != 0 {
			// The row is locked: two revocations of it queue, and the
			// second finds the first.
			var revokes, revoked int64
			err := tx.QueryRow(ctx, `SELECT transfer, dest, revokes, (SELECT count(*) FROM approvals WHERE revokes = a.seq)
				FROM approvals a WHERE seq = $1 FOR UPDATE`, a.Revokes).Scan(&a.Transfer, &a.To, &revokes, &revoked)
			if errors.Is(err, pgx.ErrNoRows) {
				return domicile.Errorf(domicile.CodeNotFound, "approval %d is not on record", a.Revokes)
			} else if err != nil {
				return err
			}
			if err := domicile.CheckRevocation(a.Revokes, revokes, revoked); err != nil {
				return err
			}
		}
		now := c.now()
		a.Recorded = ctlFromMillis(ctlMillis(now))
		a.ValidFrom, a.ValidUntil = ctlFromMillis(ctlMillis(a.ValidFrom)), ctlFromMillis(ctlMillis(a.ValidUntil))
		err := tx.QueryRow(ctx, `INSERT INTO approvals (revokes, transfer, dest, kind, ref, by_whom, note, valid_from, valid_until, recorded)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq`, a.Revokes, a.Transfer, a.To, a.Kind, a.Ref, a.By, a.Note,
			ctlMillis(a.ValidFrom), ctlMillis(a.ValidUntil), ctlMillis(a.Recorded)).Scan(&a.Seq)
		if err != nil {
			return fmt.Errorf("record approval: %w", err)
		}
		kind, body := domicile.ApprovalEntry(a)
		return controlAppend(ctx, tx, now, kind, a.Transfer, body)
	})
	return a, err
}

// ListApprovals returns every approval, oldest first.
func (c *Control) ListApprovals(ctx context.Context) ([]domicile.Approval, error) {
	rows, err := c.pool.Query(ctx, `SELECT seq, revokes, transfer, dest, kind, ref, by_whom, note, valid_from, valid_until, recorded
		FROM approvals ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domicile.Approval, error) {
		var a domicile.Approval
		var from, until, recorded int64
		err := row.Scan(&a.Seq, &a.Revokes, &a.Transfer, &a.To, &a.Kind, &a.Ref, &a.By, &a.Note, &from, &until, &recorded)
		a.ValidFrom, a.ValidUntil, a.Recorded = ctlFromMillis(from), ctlFromMillis(until), ctlFromMillis(recorded)
		return a, err
	})
	if out == nil && err == nil {
		out = []domicile.Approval{}
	}
	return out, err
}
