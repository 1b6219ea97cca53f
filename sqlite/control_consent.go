package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/domicile/domicile"
)

// consentSchema is the consent registry: every grant and withdrawal, the
// newest per (subject, purpose) being the current state. seq never reuses
// the number of a deleted record (AUTOINCREMENT), since ledger entries name
// records by it.
const consentSchema = `
CREATE TABLE IF NOT EXISTS consents (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	subject       TEXT NOT NULL,
	purpose       TEXT NOT NULL,
	granted       INTEGER NOT NULL,
	at            INTEGER NOT NULL,
	notice        TEXT NOT NULL DEFAULT '',
	channel       TEXT NOT NULL DEFAULT '',
	erased        INTEGER NOT NULL DEFAULT 0, -- a withdrawal: when its erasure was done
	erased_values INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS consents_subject ON consents (subject, purpose, seq);
`

const consentColumns = `seq, subject, purpose, granted, at, notice, channel, erased, erased_values`

func scanConsent(sc interface{ Scan(...any) error }) (domicile.Consent, error) {
	var k domicile.Consent
	var at, erased int64
	err := sc.Scan(&k.Seq, &k.Subject, &k.Purpose, &k.Granted, &at, &k.Notice, &k.Channel, &erased, &k.ErasedValues)
	k.At, k.Erased = fromMillis(at), fromMillis(erased)
	return k, err
}

// consentKind is the ledger kind of a consent record.
func consentKind(granted bool) string {
	if granted {
		return "consent.granted"
	}
	return "consent.withdrawn"
}

// consentEntry is the ledger body of a consent record: no personal data
// beyond the subject's id, which is the entry's ref.
func consentEntry(k domicile.Consent) map[string]any {
	return map[string]any{"seq": k.Seq, "purpose": k.Purpose, "at": k.At, "notice": k.Notice, "channel": k.Channel}
}

// subjectExists returns CodeNotFound unless the subject is registered.
func subjectExists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM subjects WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(fmt.Sprintf("subject %q", id))
	}
	return err
}

// RecordConsent records a grant or a withdrawal of a registered subject.
func (c *Control) RecordConsent(ctx context.Context, k domicile.Consent) (domicile.Consent, error) {
	if k.Subject == "" || k.Purpose == "" {
		return k, domicile.Errorf(domicile.CodeInvalid, "a consent needs a subject and a purpose")
	}
	k.Seq, k.Erased, k.ErasedValues = 0, time.Time{}, 0
	err := c.update(ctx, func(tx *sql.Tx) error {
		if err := subjectExists(ctx, tx, k.Subject); err != nil {
			return err
		}
		now := c.now()
		if k.At.IsZero() {
			k.At = now
		}
		k.At = fromMillis(millis(k.At))
		err := tx.QueryRowContext(ctx, `INSERT INTO consents (subject, purpose, granted, at, notice, channel)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`, k.Subject, k.Purpose, k.Granted, millis(k.At), k.Notice, k.Channel).Scan(&k.Seq)
		if err != nil {
			return fmt.Errorf("record consent: %w", err)
		}
		return appendLedger(ctx, tx, now, consentKind(k.Granted), k.Subject, consentEntry(k))
	})
	return k, err
}

// FindConsents returns the subject's current consents, by purpose.
func (c *Control) FindConsents(ctx context.Context, subject string) ([]domicile.Consent, error) {
	return c.consents(ctx, `SELECT `+consentColumns+` FROM consents k WHERE subject = ?
		AND seq = (SELECT max(seq) FROM consents WHERE subject = k.subject AND purpose = k.purpose) ORDER BY purpose`, subject)
}

// ListConsents returns every consent record of the subject, oldest first.
func (c *Control) ListConsents(ctx context.Context, subject string) ([]domicile.Consent, error) {
	return c.consents(ctx, `SELECT `+consentColumns+` FROM consents WHERE subject = ? ORDER BY seq`, subject)
}

func (c *Control) consents(ctx context.Context, q string, args ...any) ([]domicile.Consent, error) {
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []domicile.Consent
	for rows.Next() {
		k, err := scanConsent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RecordConsentErasure records that a withdrawal's erasure is done.
func (c *Control) RecordConsentErasure(ctx context.Context, e domicile.ConsentErasure) error {
	return c.update(ctx, func(tx *sql.Tx) error {
		now := c.now()
		res, err := tx.ExecContext(ctx, `UPDATE consents SET erased = ?, erased_values = erased_values + ?
			WHERE seq = ? AND subject = ? AND purpose = ? AND granted = 0`, millis(now), e.Values, e.Seq, e.Subject, e.Purpose)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound(fmt.Sprintf("withdrawal %d of %q for %q", e.Seq, e.Subject, e.Purpose))
		}
		return appendLedger(ctx, tx, now, "consent.erased", e.Subject, e)
	})
}

// RecordRefusal appends a refused write to the ledger.
func (c *Control) RecordRefusal(ctx context.Context, r domicile.Refusal) error {
	return c.AppendLedger(ctx, "consent.refused", r.Subject, r)
}

// BeginErasure marks the subject's placements Erasing.
func (c *Control) BeginErasure(ctx context.Context, subject string) ([]domicile.Placement, error) {
	var ps []domicile.Placement
	err := c.update(ctx, func(tx *sql.Tx) error {
		if err := subjectExists(ctx, tx, subject); err != nil {
			return err
		}
		var id string
		var state domicile.MoveState
		err := tx.QueryRowContext(ctx, `SELECT m.id, m.state FROM move_subjects ms JOIN moves m ON m.id = ms.move_id
			WHERE ms.subject = ? AND m.state NOT IN (?, ?) ORDER BY m.created LIMIT 1`,
			subject, domicile.MovePurged, domicile.MoveRolledBack).Scan(&id, &state)
		switch {
		case err == nil:
			return domicile.ErasureBlocked(subject, id, state)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE placements SET state = ? WHERE subject = ? AND state = ?`, domicile.Erasing, subject, domicile.Active)
		if err != nil {
			return err
		}
		if ps, err = placementsIn(ctx, tx, subject); err != nil {
			return err
		}
		if err := domicile.CheckErasing(subject, ps); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // begun before
		}
		return appendLedger(ctx, tx, c.now(), "subject.erasing", subject, map[string]any{"placements": len(ps)})
	})
	if err != nil {
		return nil, err
	}
	return ps, nil
}

// placementsIn returns every placement of a subject, read through q.
func placementsIn(ctx context.Context, q querier, subject string) ([]domicile.Placement, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+placementColumns+` FROM placements WHERE subject = ? ORDER BY dataset`, subject)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ps []domicile.Placement
	for rows.Next() {
		var p domicile.Placement
		if err := scanPlacement(rows, &p); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

// FinishErasure deletes the subject from the directory and the registry
// and appends the receipt to the ledger.
func (c *Control) FinishErasure(ctx context.Context, r *domicile.ErasureReceipt) error {
	return c.update(ctx, func(tx *sql.Tx) error {
		if err := subjectExists(ctx, tx, r.Subject); err != nil {
			return err
		}
		ps, err := placementsIn(ctx, tx, r.Subject)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.State != domicile.Erasing {
				return domicile.Errorf(domicile.CodeConflict, "subject %q is not being erased (its %s placement is %s)", r.Subject, p.Dataset, p.State)
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM consents WHERE subject = ?`, r.Subject)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if _, err := tx.ExecContext(ctx, `DELETE FROM placements WHERE subject = ?`, r.Subject); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM subjects WHERE id = ?`, r.Subject); err != nil {
			return err
		}
		now := c.now()
		r.Placements, r.Consents, r.Finished = len(ps), int(n), fromMillis(millis(now))
		return appendLedger(ctx, tx, now, "subject.erased", r.Subject, r)
	})
}
