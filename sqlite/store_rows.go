package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/domicile/domicile"
)

// Row limits of FindRows.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// subjectOf returns the subject a subject column's value names.
func subjectOf(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	}
	return "", false
}

// described returns t with its columns, reading them if the caller's
// description has none.
func (s *Store) described(ctx context.Context, t *domicile.Table) (*domicile.Table, error) {
	if len(t.Columns) > 0 && len(t.PrimaryKey) > 0 {
		return t, nil
	}
	d, err := describeTable(ctx, s.rdb, t.Name)
	if err != nil {
		return nil, err
	}
	d.SubjectColumn, d.Via, d.Categories = t.SubjectColumn, t.Via, t.Categories
	return d, nil
}

// selectList returns the columns for a SELECT list. Each is prefixed with a
// unary plus, which SQLite defines as a no-op on every value: the result
// column then has no declared type, so the driver returns the stored value
// as it is, and does not turn the TEXT of a DATE, DATETIME or TIMESTAMP
// column into a time.Time, which would not round-trip.
func selectList(cols []string) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("+" + quoteIdent(c))
	}
	return b.String()
}

// PutRow inserts or replaces one row of a subject.
func (s *Store) PutRow(ctx context.Context, t *domicile.Table, subject string, columns []string, row []any) error {
	t, err := s.described(ctx, t)
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
	if t.Via != nil {
		return s.putPathRow(ctx, t, subject, columns, row)
	}
	si := slices.Index(columns, t.SubjectColumn)
	if si < 0 {
		return domicile.Errorf(domicile.CodeInvalid, "the row lacks the subject column %s", t.SubjectColumn)
	}
	if v, ok := subjectOf(row[si]); !ok || v != subject {
		return domicile.Errorf(domicile.CodeInvalid, "the row's %s does not name the subject", t.SubjectColumn)
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + quoteIdent(t.Name) + " (")
	for i, c := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(") VALUES (" + placeholders(len(columns)) + ") ON CONFLICT (")
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
	b.WriteString(" WHERE " + quoteIdent(t.Name) + "." + sc + " IS excluded." + sc)
	// In turn with the mover's writes, which take another connection.
	unlock, err := s.lockWrites(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.stmt(ctx, false, b.String())
	if err != nil {
		return err
	}
	args := make([]any, len(row))
	for i, v := range row {
		args[i] = bindValue(v)
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return s.writeErr(ctx, err, t.Name, subject)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return domicile.Errorf(domicile.CodeConflict, "the key of this %s row belongs to another subject", t.Name)
	}
	return nil
}

// FindRows returns a subject's rows of a table in primary-key order, after
// checking in the same read transaction that the store holds the subject.
func (s *Store) FindRows(ctx context.Context, t *domicile.Table, subject string, q domicile.RowQuery) ([][]any, error) {
	t, err := s.described(ctx, t)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, domicile.Errorf(domicile.CodeInvalid, "limit %d is negative", limit)
	case limit == 0:
		limit = defaultLimit
	case limit > maxLimit:
		limit = maxLimit
	}
	if q.After != nil && len(q.After) != len(t.PrimaryKey) {
		return nil, domicile.Errorf(domicile.CodeInvalid, "after needs %d key values", len(t.PrimaryKey))
	}
	filters := make([]string, 0, len(q.Filter))
	for c := range q.Filter {
		if !slices.Contains(t.PrimaryKey, c) {
			return nil, domicile.Errorf(domicile.CodeInvalid, "filter on %q: only primary-key columns can be filtered", c)
		}
		filters = append(filters, c)
	}
	slices.Sort(filters)

	var b strings.Builder
	b.WriteString("SELECT " + selectList(t.ColumnNames()) + " FROM " + quoteIdent(t.Name) + " WHERE " + subjectCond(t, "", " = ?"))
	args := []any{subject}
	for _, c := range filters {
		b.WriteString(" AND " + quoteIdent(c) + " = ?")
		args = append(args, bindValue(q.Filter[c]))
	}
	keys := make([]string, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		keys[i] = quoteIdent(k)
	}
	if q.After != nil {
		b.WriteString(" AND (" + strings.Join(keys, ", ") + ") > (" + placeholders(len(keys)) + ")")
		for _, v := range q.After {
			args = append(args, bindValue(v))
		}
	}
	b.WriteString(" ORDER BY " + strings.Join(keys, ", ") + " LIMIT ?")
	args = append(args, limit)
	st, err := s.stmt(ctx, true, b.String())
	if err != nil {
		return nil, err
	}
	var out [][]any
	err = s.view(ctx, func(tx *sql.Tx) error {
		ds, err := s.datasetOf(ctx, tx, t.Name)
		if err != nil {
			return err
		}
		if err := s.checkRead(ctx, tx, ds, subject); err != nil {
			return err
		}
		rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		out, err = scanRows(rows, len(t.Columns), nil)
		return err
	})
	return out, err
}

// checkRead returns nil if the store may serve reads of subject in dataset:
// it owns the subject, or holds it fenced (reads continue during a fence),
// or accepts unknown subjects and has no row for it.
func (s *Store) checkRead(ctx context.Context, tx *sql.Tx, dataset, subject string) error {
	return s.checkOwner(ctx, tx, dataset, subject, true)
}

// checkOwner reads subject's ownership row of dataset in tx and returns nil
// if the store owns the subject (or holds it fenced, if fencedOK), or has no
// row for it and accepts unknown subjects; otherwise the refusal the
// triggers would raise.
func (s *Store) checkOwner(ctx context.Context, tx *sql.Tx, dataset, subject string, fencedOK bool) error {
	var o domicile.Ownership
	err := tx.QueryRowContext(ctx, `SELECT state, region, epoch FROM domicile_owner WHERE subject = ? AND dataset = ?`,
		subject, dataset).Scan(&o.State, &o.Region, &o.Epoch)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		var accept sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT value FROM domicile_settings WHERE key = 'accept_unknown'`).Scan(&accept)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if accept.String == "1" {
			return nil
		}
		return domicile.RefusalError(domicile.ErrUnknown, s.region, nil)
	case err != nil:
		return err
	}
	o.Subject, o.Dataset = subject, dataset
	return domicile.Standing(o, fencedOK, s.region)
}

// scanRows reads every row of rows, of n columns, appending them to out.
func scanRows(rows *sql.Rows, n int, out [][]any) ([][]any, error) {
	defer rows.Close()
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return out, err
		}
		row := make([]any, n)
		for i, v := range vals {
			row[i] = normalize(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// DeleteRow deletes a subject's row by its full primary key.
func (s *Store) DeleteRow(ctx context.Context, t *domicile.Table, subject string, key []any) (bool, error) {
	t, err := s.described(ctx, t)
	if err != nil {
		return false, err
	}
	if len(key) != len(t.PrimaryKey) {
		return false, domicile.Errorf(domicile.CodeInvalid, "the key of %s has %d columns, not %d", t.Name, len(t.PrimaryKey), len(key))
	}
	q := "DELETE FROM " + quoteIdent(t.Name) + " WHERE " + subjectCond(t, "", " = ?")
	args := make([]any, 0, 1+len(key))
	args = append(args, subject)
	for i, k := range t.PrimaryKey {
		q += " AND " + quoteIdent(k) + " = ?"
		args = append(args, bindValue(key[i]))
	}
	unlock, err := s.lockWrites(ctx)
	if err != nil {
		return false, err
	}
	defer unlock()
	st, err := s.stmt(ctx, false, q)
	if err != nil {
		return false, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return false, s.writeErr(ctx, err, t.Name, subject)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// bindValue returns v as the driver should bind it. A time.Time, which the
// driver would write in Go's String format (with a monotonic clock reading),
// is written as UTC RFC 3339 text, which SQLite's date functions read.
func bindValue(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return v
}
