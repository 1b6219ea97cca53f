package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// ClearColumns sets the columns to NULL in every row of the subject in t,
// after checking in the same transaction that the store owns the subject,
// and returns how many values it erased. The check locks the ownership row
// FOR SHARE, as the triggers do, so that a fence waits for it; a subject
// without a row is refused, or accepted, by the triggers' own function.
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
	t, _, err := s.described(ctx, t)
	if err != nil {
		return 0, err
	}
	if err := domicile.CheckClearable(t, columns); err != nil {
		return 0, err
	}
	cond, err := s.subjectWhere(ctx, t, 1, false)
	if err != nil {
		return 0, err
	}
	run := s.update
	if stale {
		run = s.bypass
	}
	var total int64
	err = run(ctx, func(tx pgx.Tx) error {
		total = 0
		ds, err := s.datasetOf(ctx, tx, t.Name)
		if err != nil {
			return err
		}
		var st *string
		err = tx.QueryRow(ctx, `SELECT state FROM domicile_owner WHERE subject = $1 AND dataset = $2 FOR SHARE`, subject, ds).Scan(&st)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if stale {
			if st != nil && *st != string(domicile.Moved) {
				return nil // the live rows, or a copy of them
			}
		} else if st == nil || *st != string(domicile.Owned) {
			if _, err := tx.Exec(ctx, `SELECT domicile_refuse($1, $2, $3)`, st, ds, subject); err != nil {
				return err
			}
		}
		// One statement per column: each counts the values it erases.
		for _, c := range columns {
			tag, err := tx.Exec(ctx, "UPDATE "+quoteIdent(t.Name)+" SET "+quoteIdent(c)+" = NULL WHERE "+cond+
				" AND "+quoteIdent(c)+" IS NOT NULL", subject)
			if err != nil {
				return err
			}
			total += tag.RowsAffected()
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
