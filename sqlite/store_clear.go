package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/domicile/domicile"
)

// ClearColumns sets the columns to NULL in every row of the subject in t,
// after checking in the same write transaction that the store owns the
// subject, and returns how many values it erased.
func (s *Store) ClearColumns(ctx context.Context, t *domicile.Table, subject string, columns []string) (int64, error) {
	return s.clearColumns(ctx, t, subject, columns, false)
}

// ClearStaleColumns sets the columns to NULL in every row of the subject in
// t, passing the triggers, unless the store holds the subject (Owned, Fenced
// or Incoming), and returns how many values it erased.
func (s *Store) ClearStaleColumns(ctx context.Context, t *domicile.Table, subject string, columns []string) (int64, error) {
	return s.clearColumns(ctx, t, subject, columns, true)
}

func (s *Store) clearColumns(ctx context.Context, t *domicile.Table, subject string, columns []string, stale bool) (int64, error) {
	t, err := s.described(ctx, t)
	if err != nil {
		return 0, err
	}
	if err := domicile.CheckClearable(t, columns); err != nil {
		return 0, err
	}
	run := s.update
	if stale {
		run = s.bypass
	}
	var total int64
	err = run(ctx, func(tx *sql.Tx) error {
		total = 0
		ds, err := s.datasetOf(ctx, tx, t.Name)
		if err != nil {
			return err
		}
		if !stale {
			if err := s.checkWrite(ctx, tx, ds, subject); err != nil {
				return err
			}
		} else if held, err := s.holds(ctx, tx, ds, subject); err != nil || held {
			return err
		}
		// One statement per column: each counts the values it erases.
		for _, c := range columns {
			q := "UPDATE " + quoteIdent(t.Name) + " SET " + quoteIdent(c) + " = NULL WHERE " +
				subjectCond(t, "", " = ?") + " AND " + quoteIdent(c) + " IS NOT NULL"
			res, err := tx.ExecContext(ctx, q, subject)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		if _, ok := errors.AsType[*domicile.Error](err); ok {
			return 0, err
		}
		return 0, fmt.Errorf("clear %s of %s in region %s: %w", t.Name, subject, s.region, s.writeErr(ctx, err, t.Name, subject))
	}
	return total, nil
}

// checkWrite returns nil if the store may take writes of subject in
// dataset, read in the caller's write transaction: it owns the subject, or
// accepts unknown subjects and has no row for it. Otherwise it returns the
// refusal the triggers would raise.
func (s *Store) checkWrite(ctx context.Context, tx *sql.Tx, dataset, subject string) error {
	return s.checkOwner(ctx, tx, dataset, subject, false)
}

// holds reports whether the subject's ownership row in dataset, read in the
// caller's transaction, is Owned, Fenced or Incoming.
func (s *Store) holds(ctx context.Context, tx *sql.Tx, dataset, subject string) (bool, error) {
	var st domicile.OwnerState
	err := tx.QueryRowContext(ctx, `SELECT state FROM domicile_owner WHERE subject = ? AND dataset = ?`, subject, dataset).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil && st != domicile.Moved, err
}
