package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// Row limits of FindRows.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// selectList returns the SELECT list reading cols of t as rows carry them.
func selectList(t *pgTable, cols []string) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(selectExpr(c, t.kindOf(c)))
	}
	return b.String()
}

// PutRow inserts or replaces one row of a subject.
func (s *Store) PutRow(ctx context.Context, t *domicile.Table, subject string, columns []string, row []any) error {
	t, pt, err := s.described(ctx, t)
	if err != nil {
		return err
	}
	if len(columns) != len(row) {
		return domicile.Errorf(domicile.CodeInvalid, "%d columns and %d values", len(columns), len(row))
	}
	for i, c := range columns {
		if !t.HasColumn(c) {
			return domicile.Errorf(domicile.CodeInvalid, "table %s has no column %q", t.Name, c)
		}
		if slices.Index(columns, c) != i {
			return domicile.Errorf(domicile.CodeInvalid, "column %q given twice", c)
		}
	}
	for _, k := range t.PrimaryKey {
		if !slices.Contains(columns, k) {
			return domicile.Errorf(domicile.CodeInvalid, "the row lacks the key column %s", k)
		}
	}
	args := make([]any, len(row))
	for i, v := range row {
		if args[i], err = bindValue(pt.kindOf(columns[i]), v); err != nil {
			return fmt.Errorf("column %s: %w", columns[i], err)
		}
	}
	if t.Via != nil {
		return s.putPathRow(ctx, t, pt, subject, columns, args)
	}
	si := slices.Index(columns, t.SubjectColumn)
	if si < 0 {
		return domicile.Errorf(domicile.CodeInvalid, "the row lacks the subject column %s", t.SubjectColumn)
	}
	if v, ok := subjectString(row[si]); !ok || v != subject {
		return domicile.Errorf(domicile.CodeInvalid, "the row's %s does not name the subject", t.SubjectColumn)
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + quoteIdent(t.Name) + " AS t (")
	for i, c := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(") VALUES (")
	for i := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
	}
	b.WriteString(") ON CONFLICT (")
	for i, k := range t.PrimaryKey {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(k))
	}
	b.WriteString(") DO UPDATE SET ")
	set := 0
	for _, c := range columns {
		if slices.Contains(t.PrimaryKey, c) {
			continue
		}
		if set > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c) + " = excluded." + quoteIdent(c))
		set++
	}
	if set == 0 {
		k := quoteIdent(t.PrimaryKey[0])
		b.WriteString(k + " = excluded." + k)
	}
	// A key held by another subject updates nothing: a conflict.
	sc := quoteIdent(t.SubjectColumn)
	b.WriteString(" WHERE t." + sc + " IS NOT DISTINCT FROM excluded." + sc)
	tag, err := s.pool.Exec(ctx, b.String(), args...)
	if err != nil {
		return s.writeErr(ctx, err, t.Name, subject)
	}
	if tag.RowsAffected() == 0 {
		// Nothing was written, so the guard saw nothing: a subject this
		// store does not hold is refused as such, not as a conflict.
		if r := s.refusedSubject(ctx, t.Name, subject); r != nil {
			return r
		}
		return domicile.Errorf(domicile.CodeConflict, "the key of this %s row belongs to another subject", t.Name)
	}
	return nil
}

// FindRows returns a subject's rows of a table in primary-key order, after
// checking on the same snapshot that the store holds the subject.
func (s *Store) FindRows(ctx context.Context, t *domicile.Table, subject string, q domicile.RowQuery) ([][]any, error) {
	t, query, args, err := s.rowsQuery(ctx, t, subject, q)
	if err != nil {
		return nil, err
	}
	var out [][]any
	err = s.view(ctx, func(tx pgx.Tx) error {
		ds, err := s.datasetOf(ctx, tx, t.Name)
		if err != nil {
			return err
		}
		if err := s.standing(ctx, tx, ds, subject, true); err != nil {
			return err
		}
		out, err = queryRows(ctx, tx, query, args, nil)
		return err
	})
	return out, err
}

// rowsQuery returns the query of FindRows and its arguments.
func (s *Store) rowsQuery(ctx context.Context, t *domicile.Table, subject string, q domicile.RowQuery) (*domicile.Table, string, []any, error) {
	t, pt, err := s.described(ctx, t)
	if err != nil {
		return nil, "", nil, err
	}
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, "", nil, domicile.Errorf(domicile.CodeInvalid, "limit %d is negative", limit)
	case limit == 0:
		limit = defaultLimit
	case limit > maxLimit:
		limit = maxLimit
	}
	if q.After != nil && len(q.After) != len(t.PrimaryKey) {
		return nil, "", nil, domicile.Errorf(domicile.CodeInvalid, "after needs %d key values", len(t.PrimaryKey))
	}
	filters := make([]string, 0, len(q.Filter))
	for c := range q.Filter {
		if !slices.Contains(t.PrimaryKey, c) {
			return nil, "", nil, domicile.Errorf(domicile.CodeInvalid, "filter on %q: only primary-key columns can be filtered", c)
		}
		filters = append(filters, c)
	}
	slices.Sort(filters)

	cond, err := s.subjectWhere(ctx, t, 1, false)
	if err != nil {
		return nil, "", nil, err
	}
	var b strings.Builder
	b.WriteString("SELECT " + selectList(pt, t.ColumnNames()) + " FROM " + quoteIdent(t.Name) + " WHERE " + cond)
	args := []any{subject}
	bind := func(col string, v any) (string, error) {
		a, err := bindValue(pt.kindOf(col), v)
		if err != nil {
			return "", fmt.Errorf("column %s: %w", col, err)
		}
		args = append(args, a)
		return fmt.Sprintf("$%d", len(args)), nil
	}
	for _, c := range filters {
		p, err := bind(c, q.Filter[c])
		if err != nil {
			return nil, "", nil, err
		}
		b.WriteString(" AND " + quoteIdent(c) + " = " + p)
	}
	keys := make([]string, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		keys[i] = quoteIdent(k)
	}
	if q.After != nil {
		ps := make([]string, len(q.After))
		for i, v := range q.After {
			if ps[i], err = bind(t.PrimaryKey[i], v); err != nil {
				return nil, "", nil, err
			}
		}
		b.WriteString(" AND (" + strings.Join(keys, ", ") + ") > (" + strings.Join(ps, ", ") + ")")
	}
	args = append(args, limit)
	fmt.Fprintf(&b, " ORDER BY %s LIMIT $%d", strings.Join(keys, ", "), len(args))
	return t, b.String(), args, nil
}

// queryRows runs a query and appends its rows to out.
func queryRows(ctx context.Context, q querier, query string, args []any, out [][]any) ([][]any, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return out, err
	}
	return scanRows(rows, out)
}

// scanRows appends rows' rows to out, as queryRows does, and closes them.
func scanRows(rows pgx.Rows, out [][]any) ([][]any, error) {
	defer rows.Close()
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			return out, err
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// DeleteRow deletes a subject's row by its full primary key.
func (s *Store) DeleteRow(ctx context.Context, t *domicile.Table, subject string, key []any) (bool, error) {
	t, pt, err := s.described(ctx, t)
	if err != nil {
		return false, err
	}
	if len(key) != len(t.PrimaryKey) {
		return false, domicile.Errorf(domicile.CodeInvalid, "the key of %s has %d columns, not %d", t.Name, len(t.PrimaryKey), len(key))
	}
	cond, err := s.subjectWhere(ctx, t, 1, false)
	if err != nil {
		return false, err
	}
	q := "DELETE FROM " + quoteIdent(t.Name) + " WHERE " + cond
	args := make([]any, 0, 1+len(key))
	args = append(args, subject)
	for i, k := range t.PrimaryKey {
		a, err := bindValue(pt.kindOf(k), key[i])
		if err != nil {
			return false, fmt.Errorf("column %s: %w", k, err)
		}
		args = append(args, a)
		q += fmt.Sprintf(" AND %s = $%d", quoteIdent(k), len(args))
	}
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return false, s.writeErr(ctx, err, t.Name, subject)
	}
	return tag.RowsAffected() > 0, nil
}
