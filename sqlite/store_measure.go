package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/domicile/domicile"
)

// ownershipOf reads the ownership rows of the subjects in a dataset.
func ownershipOf(ctx context.Context, q querierCtx, dataset string, subjects []string) (map[string]domicile.Ownership, error) {
	cur := make(map[string]domicile.Ownership, len(subjects))
	err := inChunks([]any{dataset}, subjects, func(n int, args []any) error {
		rows, err := q.QueryContext(ctx, `SELECT `+ownerColumns+` FROM domicile_owner WHERE dataset = ? AND subject IN (`+placeholders(n)+`)`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o domicile.Ownership
			if err := scanOwnership(rows, &o); err != nil {
				return err
			}
			cur[o.Subject] = o
		}
		return rows.Err()
	})
	return cur, err
}

// subjectsIn returns those of the subjects whose ownership row is in state
// with the move's id.
func subjectsIn(ctx context.Context, q querierCtx, dataset, moveID string, state domicile.OwnerState, subjects []string) ([]string, error) {
	cur, err := ownershipOf(ctx, q, dataset, subjects)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range subjects {
		if o, ok := cur[s]; ok && o.State == state && o.MoveID == moveID {
			out = append(out, s)
		}
	}
	return out, nil
}

// MeasureSubjects returns how many rows the subjects have in the dataset's
// tables, and the size of their values as domicile.Batch.Bytes counts it.
func (s *Store) MeasureSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (rows, bytes int64, err error) {
	err = s.view(ctx, func(tx *sql.Tx) error {
		for _, t := range ds.Tables {
			sizes := make([]string, len(t.Columns))
			for i, c := range t.Columns {
				q := quoteIdent(c.Name)
				sizes[i] = `CASE typeof(` + q + `) WHEN 'text' THEN length(CAST(` + q + ` AS BLOB)) WHEN 'blob' THEN length(` + q + `) WHEN 'null' THEN 0 ELSE 8 END`
			}
			query := `SELECT count(*), coalesce(sum(` + strings.Join(sizes, " + ") + `), 0) FROM ` + quoteIdent(t.Name) + ` WHERE `
			err := inChunks(nil, subjects, func(n int, args []any) error {
				var r, b int64
				if err := tx.QueryRowContext(ctx, query+subjectIn(t, "", n), args...).Scan(&r, &b); err != nil {
					return err
				}
				rows += r
				bytes += b
				return nil
			})
			if err != nil {
				return fmt.Errorf("measure %s: %w", t.Name, err)
			}
		}
		return nil
	})
	return rows, bytes, err
}

// ListRowSubjects calls fn once for every subject that has rows in the table.
func (s *Store) ListRowSubjects(ctx context.Context, t *domicile.Table, fn func(subject string) error) error {
	return s.listSubjects(ctx, t, "", fn)
}

// ListValueSubjects calls fn once for every subject with a row whose column
// holds a value.
func (s *Store) ListValueSubjects(ctx context.Context, t *domicile.Table, column string, fn func(subject string) error) error {
	if !t.HasColumn(column) && len(t.Columns) > 0 {
		return domicile.Errorf(domicile.CodeInvalid, "table %s has no column %q", t.Name, column)
	}
	return s.listSubjects(ctx, t, hopAlias(0)+"."+quoteIdent(column)+" IS NOT NULL", fn)
}

// listSubjects calls fn for every subject with rows in the table for which
// cond holds (a condition on its columns, the table aliased domicile_h0;
// "" for every row).
func (s *Store) listSubjects(ctx context.Context, t *domicile.Table, cond string, fn func(subject string) error) error {
	return s.view(ctx, func(tx *sql.Tx) error {
		if t.Via != nil {
			return listPathSubjects(ctx, tx, t, cond, fn)
		}
		col := quoteIdent(t.SubjectColumn)
		if cond != "" {
			cond = " WHERE " + cond
		}
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT `+col+` FROM `+quoteIdent(t.Name)+` AS `+hopAlias(0)+cond+` ORDER BY `+col)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v any
			if err := rows.Scan(&v); err != nil {
				return err
			}
			subject, ok := subjectOf(v)
			if !ok {
				return fmt.Errorf("%s.%s: subject value of type %T", t.Name, t.SubjectColumn, v)
			}
			if err := fn(subject); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}
