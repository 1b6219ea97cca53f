package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/domicile/domicile"
)

// maxInsertArgs bounds the values bound into one multi-row INSERT; SQLite
// allows 32766, and larger statements gain nothing.
const maxInsertArgs = 2000

// describedDataset returns the dataset's tables with their columns.
func (s *Store) describedDataset(ctx context.Context, ds *domicile.Dataset) ([]*domicile.Table, error) {
	tables := make([]*domicile.Table, len(ds.Tables))
	for i, t := range ds.Tables {
		d, err := s.described(ctx, t)
		if err != nil {
			return nil, err
		}
		tables[i] = d
	}
	return tables, nil
}

// ReadSubjects reads every row of the subjects in every table of the
// dataset, in one read transaction. Columns are in declaration order.
func (s *Store) ReadSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (*domicile.Batch, error) {
	tables, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, err
	}
	b := &domicile.Batch{Tables: make([]domicile.TableRows, len(tables))}
	err = s.view(ctx, func(tx *sql.Tx) error {
		for i, t := range tables {
			cols := t.ColumnNames()
			tr := domicile.TableRows{Table: t.Name, Columns: cols}
			prefix := "SELECT " + selectList(cols) + " FROM " + quoteIdent(t.Name) + " WHERE "
			err := inChunks(nil, subjects, func(n int, args []any) error {
				rows, err := tx.QueryContext(ctx, prefix+subjectIn(t, "", n), args...)
				if err != nil {
					return err
				}
				tr.Rows, err = scanRows(rows, len(cols), tr.Rows)
				return err
			})
			if err != nil {
				return fmt.Errorf("read %s: %w", t.Name, err)
			}
			b.Tables[i] = tr
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// WriteSubjects deletes the subjects' rows left by an earlier attempt and
// inserts the batch, in one transaction that passes the triggers.
func (s *Store) WriteSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, b *domicile.Batch) error {
	set := make(map[string]struct{}, len(subjects))
	for _, id := range subjects {
		set[id] = struct{}{}
	}
	type plan struct {
		t    *domicile.Table
		rows *domicile.TableRows
	}
	plans := make([]plan, 0, len(ds.Tables))
	for _, t := range ds.Tables {
		plans = append(plans, plan{t: t})
	}
	for i := range b.Tables {
		tr := &b.Tables[i]
		pi := slices.IndexFunc(plans, func(p plan) bool { return p.t.Name == tr.Table })
		if pi < 0 {
			return domicile.Errorf(domicile.CodeInvalid, "table %s is not in dataset %s", tr.Table, ds.Name)
		}
		if plans[pi].rows != nil {
			return domicile.Errorf(domicile.CodeInvalid, "table %s appears twice in the batch", tr.Table)
		}
		si := slices.Index(tr.Columns, plans[pi].t.SubjectColumn)
		if si < 0 && len(tr.Rows) > 0 && plans[pi].t.Via == nil {
			return domicile.Errorf(domicile.CodeInvalid, "the rows of %s lack the subject column", tr.Table)
		}
		for _, row := range tr.Rows {
			if len(row) != len(tr.Columns) {
				return domicile.Errorf(domicile.CodeInvalid, "a row of %s has %d values for %d columns", tr.Table, len(row), len(tr.Columns))
			}
			if plans[pi].t.Via != nil {
				continue // checked once written: the row must reach a subject of the batch
			}
			id, ok := subjectOf(row[si])
			if _, in := set[id]; !ok || !in {
				return domicile.Errorf(domicile.CodeInvalid, "a row of %s belongs to a subject outside the batch", tr.Table)
			}
		}
		plans[pi].rows = tr
	}
	err := s.bypass(ctx, func(tx *sql.Tx) error {
		if b.MoveID != "" {
			in, err := subjectsIn(ctx, tx, ds.Name, b.MoveID, domicile.Incoming, subjects)
			if err != nil {
				return err
			}
			if len(in) != len(subjects) {
				return &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrPrecondition,
					Message: fmt.Sprintf("%d of %d subjects are not incoming under move %s", len(subjects)-len(in), len(subjects), b.MoveID)}
			}
		}
		if err := deferKeys(ctx, tx); err != nil {
			return err
		}
		if _, err := deleteDataset(ctx, tx, ds, ds.Tables, subjects); err != nil {
			return fmt.Errorf("clear: %w", err)
		}
		for _, t := range ds.InsertOrder(nil) {
			p := plans[slices.IndexFunc(plans, func(p plan) bool { return p.t == t })]
			if p.rows == nil || len(p.rows.Rows) == 0 {
				continue
			}
			if err := insertRows(ctx, tx, p.t.Name, p.rows.Columns, p.rows.Rows); err != nil {
				if isConflict(err) {
					return &domicile.Error{Code: domicile.CodeConflict,
						Message: fmt.Sprintf("a key of %s is held by another subject", p.t.Name), Err: err}
				}
				return fmt.Errorf("insert into %s: %w", p.t.Name, err)
			}
		}
		// The rows of a path table must reach the batch's subjects.
		for _, p := range plans {
			if p.t.Via == nil || p.rows == nil || len(p.rows.Rows) == 0 {
				continue
			}
			n, err := countReached(ctx, tx, p.t, subjects)
			if err != nil {
				return fmt.Errorf("check %s: %w", p.t.Name, err)
			}
			if n != int64(len(p.rows.Rows)) {
				return domicile.Errorf(domicile.CodeInvalid, "%d of the %d rows of %s reach no subject of the batch through %s",
					int64(len(p.rows.Rows))-n, len(p.rows.Rows), p.t.Name, strings.Join(p.t.Via.Tables(), ", "))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %d subjects of %s in region %s: %w", len(subjects), ds.Name, s.region, err)
	}
	return nil
}

// insertRows inserts rows with multi-row INSERT statements, each prepared
// once: one for full chunks, one for the remainder.
func insertRows(ctx context.Context, tx *sql.Tx, table string, cols []string, rows [][]any) error {
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = quoteIdent(c)
	}
	prefix := "INSERT INTO " + quoteIdent(table) + " (" + strings.Join(quoted, ", ") + ") VALUES "
	tuple := "(" + placeholders(len(cols)) + ")"
	stmtFor := func(n int) string {
		var b strings.Builder
		b.Grow(len(prefix) + n*(len(tuple)+2))
		b.WriteString(prefix)
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(tuple)
		}
		return b.String()
	}
	per := max(1, maxInsertArgs/max(1, len(cols)))
	args := make([]any, 0, min(per, len(rows))*len(cols))
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	for len(rows) > 0 {
		n := min(per, len(rows))
		args = args[:0]
		for _, row := range rows[:n] {
			for _, v := range row {
				args = append(args, bindValue(v))
			}
		}
		var err error
		if n == per {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, stmtFor(n)); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, stmtFor(n), args...)
		}
		if err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// deleteSubjects deletes the subjects' rows of a table and counts them.
func deleteSubjects(ctx context.Context, tx querierCtx, t *domicile.Table, subjects []string) (int64, error) {
	return execSubjects(ctx, tx, func(n int) string {
		return "DELETE FROM " + quoteIdent(t.Name) + " WHERE " + subjectIn(t, "", n)
	}, subjects)
}

// execSubjects runs the statement that query returns for n subjects, for
// the subjects in chunks, and returns the rows it affected.
func execSubjects(ctx context.Context, tx querierCtx, query func(n int) string, subjects []string) (int64, error) {
	var total int64
	err := inChunks(nil, subjects, func(n int, args []any) error {
		res, err := tx.ExecContext(ctx, query(n), args...)
		if err != nil {
			return err
		}
		k, err := res.RowsAffected()
		total += k
		return err
	})
	return total, err
}

// PurgeSubjects deletes every row of the subjects in the dataset's tables,
// passing the triggers, and returns how many rows it deleted.
func (s *Store) PurgeSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (int64, error) {
	var total int64
	err := s.bypass(ctx, func(tx *sql.Tx) error {
		if err := deferKeys(ctx, tx); err != nil {
			return err
		}
		n, err := deleteDataset(ctx, tx, ds, ds.Tables, subjects)
		total = n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge %d subjects of %s in region %s: %w", len(subjects), ds.Name, s.region, err)
	}
	return total, nil
}

// PurgeMoved deletes the rows of those subjects whose ownership row here is
// Moved under moveID, passing the triggers, and returns how many rows it
// deleted. Subjects in any other state are left alone.
func (s *Store) PurgeMoved(ctx context.Context, ds *domicile.Dataset, moveID string, subjects []string) (int64, error) {
	var total int64
	err := s.bypass(ctx, func(tx *sql.Tx) error {
		total = 0
		q := s.cached(tx)
		moved, err := subjectsIn(ctx, q, ds.Name, moveID, domicile.Moved, subjects)
		if err != nil || len(moved) == 0 {
			return err
		}
		if err := deferKeys(ctx, q); err != nil {
			return err
		}
		total, err = deleteDataset(ctx, q, ds, ds.Tables, moved)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge move %s of %s in region %s: %w", moveID, ds.Name, s.region, err)
	}
	return total, nil
}

// CountRows returns, per table, how many rows the subject has here.
func (s *Store) CountRows(ctx context.Context, ds *domicile.Dataset, subject string) (map[string]int64, error) {
	out := make(map[string]int64, len(ds.Tables))
	err := s.view(ctx, func(tx *sql.Tx) error {
		for _, t := range ds.Tables {
			var n int64
			q := "SELECT count(*) FROM " + quoteIdent(t.Name) + " WHERE " + subjectCond(t, "", " = ?")
			if err := tx.QueryRowContext(ctx, q, subject).Scan(&n); err != nil {
				return fmt.Errorf("count %s: %w", t.Name, err)
			}
			out[t.Name] = n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Discover runs a query returning (subject id, country) pairs.
func (s *Store) Discover(ctx context.Context, query string, fn func(id, country string) error) error {
	rows, err := s.rdb.QueryContext(ctx, query)
	if err != nil {
		return domicile.Errorf(domicile.CodeInvalid, "discover query: %v", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	if len(cols) != 2 {
		return domicile.Errorf(domicile.CodeInvalid, "the discover query returns %d columns, not 2 (id, country)", len(cols))
	}
	var id, country any
	for rows.Next() {
		if err := rows.Scan(&id, &country); err != nil {
			return err
		}
		ids, ok := discovered(id)
		if !ok || ids == "" {
			return domicile.Errorf(domicile.CodeInvalid, "the discover query returned a subject id of type %T", id)
		}
		cs, ok := discovered(country)
		if !ok {
			return domicile.Errorf(domicile.CodeInvalid, "the discover query returned a country of type %T", country)
		}
		if err := fn(ids, cs); err != nil {
			return err
		}
	}
	return rows.Err()
}

// discovered converts a value of a discover query to a string; NULL is "".
func discovered(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	}
	return subjectOf(v)
}
