package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// controlConsentSchema is the consent registry: every grant and withdrawal,
// the newest per (subject, purpose) being the current state. It is made
// apart from controlSchema so that control stores made before it get it
// when opened.
const controlConsentSchema = `
CREATE TABLE IF NOT EXISTS consents (
	seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	subject       TEXT COLLATE "C" NOT NULL,
	purpose       TEXT COLLATE "C" NOT NULL,
	granted       BOOLEAN NOT NULL,
	at            BIGINT NOT NULL,
	notice        TEXT NOT NULL DEFAULT '',
	channel       TEXT NOT NULL DEFAULT '',
	erased        BIGINT NOT NULL DEFAULT 0, -- a withdrawal: when its erasure was done
	erased_values BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS consents_subject ON consents (subject, purpose, seq);
`

// controlAddConsents creates the consent registry in a control store that
// lacks it.
func controlAddConsents(ctx context.Context, pool *pgxpool.Pool) error {
	return controlAddTable(ctx, pool, "consents", controlConsentSchema)
}

// controlAddTable creates a table made apart from controlSchema in a control
// store that lacks it. It looks before it creates, so that no process but
// the first takes the DDL's locks; two first processes may race, and the
// loser finds the table made on its next try.
func controlAddTable(ctx context.Context, pool *pgxpool.Pool, table, schema string) error {
	var err error
	for try := 0; try < 3; try++ {
		err = ctlInTx(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			var made bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&made); err != nil || made {
				return err
			}
			_, err := tx.Exec(ctx, schema)
			return err
		})
		if s := ctlSQLState(err); err == nil || s != ctlUniqueViolation && s != ctlDuplicateTable && s != ctlDuplicateObject {
			break
		}
	}
	return err
}

const controlConsentColumns = `seq, subject, purpose, granted, at, notice, channel, erased, erased_values`

func controlScanConsent(row pgx.Row) (domicile.Consent, error) {
	var k domicile.Consent
	var at, erased int64
	err := row.Scan(&k.Seq, &k.Subject, &k.Purpose, &k.Granted, &at, &k.Notice, &k.Channel, &erased, &k.ErasedValues)
	k.At, k.Erased = ctlFromMillis(at), ctlFromMillis(erased)
	return k, err
}

// controlLockSubject locks a subject's row for the transaction, so that
// the changes of one subject's consents and erasure queue, and returns
// CodeNotFound for an unknown subject.
func controlLockSubject(ctx context.Context, tx pgx.Tx, id string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM subjects WHERE id = $1 FOR UPDATE`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return ctlNotFound(fmt.Sprintf("subject %q", id))
	}
	return err
}

// RecordConsent records a grant or a withdrawal of a registered subject.
// The subject's row is locked first, so that its records' seq order is
// their commit order.
func (c *Control) RecordConsent(ctx context.Context, k domicile.Consent) (domicile.Consent, error) {
	if k.Subject == "" || k.Purpose == "" {
		return k, domicile.Errorf(domicile.CodeInvalid, "a consent needs a subject and a purpose")
	}
	k.Seq, k.Erased, k.ErasedValues = 0, time.Time{}, 0
	given := k.At
	err := c.update(ctx, func(tx pgx.Tx) error {
		if err := controlLockSubject(ctx, tx, k.Subject); err != nil {
			return err
		}
		now := c.now()
		k.At = given
		if k.At.IsZero() {
			k.At = now
		}
		k.At = ctlFromMillis(ctlMillis(k.At))
		err := tx.QueryRow(ctx, `INSERT INTO consents (subject, purpose, granted, at, notice, channel)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq`, k.Subject, k.Purpose, k.Granted, ctlMillis(k.At), k.Notice, k.Channel).Scan(&k.Seq)
		if err != nil {
			return fmt.Errorf("record consent: %w", err)
		}
		kind := "consent.withdrawn"
		if k.Granted {
			kind = "consent.granted"
		}
		return controlAppend(ctx, tx, now, kind, k.Subject,
			map[string]any{"seq": k.Seq, "purpose": k.Purpose, "at": k.At, "notice": k.Notice, "channel": k.Channel})
	})
	return k, err
}

// FindConsents returns the subject's current consents, by purpose.
func (c *Control) FindConsents(ctx context.Context, subject string) ([]domicile.Consent, error) {
	return c.consents(ctx, `SELECT DISTINCT ON (purpose) `+controlConsentColumns+` FROM consents
		WHERE subject = $1 ORDER BY purpose, seq DESC`, subject)
}

// ListConsents returns every consent record of the subject, oldest first.
func (c *Control) ListConsents(ctx context.Context, subject string) ([]domicile.Consent, error) {
	return c.consents(ctx, `SELECT `+controlConsentColumns+` FROM consents WHERE subject = $1 ORDER BY seq`, subject)
}

func (c *Control) consents(ctx context.Context, q string, args ...any) ([]domicile.Consent, error) {
	rows, err := c.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domicile.Consent, error) { return controlScanConsent(row) })
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// RecordConsentErasure records that a withdrawal's erasure is done.
func (c *Control) RecordConsentErasure(ctx context.Context, e domicile.ConsentErasure) error {
	return c.update(ctx, func(tx pgx.Tx) error {
		now := c.now()
		tag, err := tx.Exec(ctx, `UPDATE consents SET erased = $1, erased_values = erased_values + $2
			WHERE seq = $3 AND subject = $4 AND purpose = $5 AND NOT granted`, ctlMillis(now), e.Values, e.Seq, e.Subject, e.Purpose)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ctlNotFound(fmt.Sprintf("withdrawal %d of %q for %q", e.Seq, e.Subject, e.Purpose))
		}
		return controlAppend(ctx, tx, now, "consent.erased", e.Subject, e)
	})
}

// RecordRefusal appends a refused write to the ledger.
func (c *Control) RecordRefusal(ctx context.Context, r domicile.Refusal) error {
	return c.AppendLedger(ctx, "consent.refused", r.Subject, r)
}

// BeginErasure marks the subject's placements Erasing. A move created at
// the same time either marks a placement Moving first, which this
// transaction then finds and refuses, or finds it Erasing and leaves the
// subject out.
func (c *Control) BeginErasure(ctx context.Context, subject string) ([]domicile.Placement, error) {
	var ps []domicile.Placement
	err := c.update(ctx, func(tx pgx.Tx) error {
		if err := controlLockSubject(ctx, tx, subject); err != nil {
			return err
		}
		var id string
		var state domicile.MoveState
		err := tx.QueryRow(ctx, `SELECT m.id, m.state FROM move_subjects ms JOIN moves m ON m.id = ms.move_id
			WHERE ms.subject = $1 AND m.state <> ALL($2) ORDER BY m.created LIMIT 1`,
			subject, []string{string(domicile.MovePurged), string(domicile.MoveRolledBack)}).Scan(&id, &state)
		switch {
		case err == nil:
			return domicile.ErasureBlocked(subject, id, state)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE placements SET state = $1 WHERE subject = $2 AND state = $3`, domicile.Erasing, subject, domicile.Active)
		if err != nil {
			return err
		}
		if ps, err = controlPlacementsIn(ctx, tx, subject); err != nil {
			return err
		}
		if err := domicile.CheckErasing(subject, ps); err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // begun before
		}
		return controlAppend(ctx, tx, c.now(), "subject.erasing", subject, map[string]any{"placements": len(ps)})
	})
	if err != nil {
		return nil, err
	}
	return ps, nil
}

// controlPlacementsIn returns every placement of a subject, read through q.
func controlPlacementsIn(ctx context.Context, q controlQuerier, subject string) ([]domicile.Placement, error) {
	rows, err := q.Query(ctx, `SELECT `+controlPlacementColumns+` FROM placements WHERE subject = $1 ORDER BY dataset`, subject)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (domicile.Placement, error) {
		var p domicile.Placement
		return p, controlScanPlacement(row, &p)
	})
}

// FinishErasure deletes the subject from the directory and the registry
// and appends the receipt to the ledger.
func (c *Control) FinishErasure(ctx context.Context, r *domicile.ErasureReceipt) error {
	return c.update(ctx, func(tx pgx.Tx) error {
		if err := controlLockSubject(ctx, tx, r.Subject); err != nil {
			return err
		}
		ps, err := controlPlacementsIn(ctx, tx, r.Subject)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.State != domicile.Erasing {
				return domicile.Errorf(domicile.CodeConflict, "subject %q is not being erased (its %s placement is %s)", r.Subject, p.Dataset, p.State)
			}
		}
		tag, err := tx.Exec(ctx, `DELETE FROM consents WHERE subject = $1`, r.Subject)
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		batch.Queue(`DELETE FROM placements WHERE subject = $1`, r.Subject)
		batch.Queue(`DELETE FROM subjects WHERE id = $1`, r.Subject)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		now := c.now()
		r.Placements, r.Consents, r.Finished = len(ps), int(tag.RowsAffected()), ctlFromMillis(ctlMillis(now))
		return controlAppend(ctx, tx, now, "subject.erased", r.Subject, r)
	})
}
