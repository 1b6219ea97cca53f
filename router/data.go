package router

import (
	"context"
	"fmt"
	"slices"

	"github.com/domicile/domicile"
)

// Query selects and pages a subject's rows of a table.
type Query struct {
	// Filter holds equality filters on primary-key columns. Strings are
	// read as the column's type ("42" for an integer column).
	Filter map[string]any
	// After is the Next of the previous page; "" for the first page.
	After string
	// Limit is the page size: 0 for DefaultLimit, at most MaxLimit.
	Limit int
}

// Page is one page of a subject's rows.
type Page struct {
	Region string           `json:"region"` // the region that answered
	Rows   []map[string]any `json:"rows"`   // column → value, in primary-key order
	Next   string           `json:"next"`   // cursor for the next page; "" on the last page
}

// Put inserts or replaces one row of a subject in the subject's home region
// and returns that region. The row must hold the table's whole primary key
// and name only the table's columns; a column it omits is set to NULL (a NOT
// NULL column must be given). The subject column, if given, must name the
// subject, and is filled in if not. A key held by another subject is
// CodeConflict. A value of a column whose categories a purpose gates
// (Config.ConsentRules) needs the subject's current consent to a purpose
// gating it: otherwise nothing is written, the refusal is recorded in the
// ledger, and the answer is CodeConsentRequired.
func (r *Router) Put(ctx context.Context, dataset, table, subject string, row map[string]any) (string, error) {
	t, err := r.table(dataset, table)
	if err != nil {
		return "", err
	}
	if subject == "" {
		return "", domicile.Errorf(domicile.CodeInvalid, "missing subject")
	}
	cols, vals, err := rowValues(t, subject, row)
	if err != nil {
		return "", err
	}
	gated := r.gatedValues(t, cols, vals)
	if len(gated) > 0 {
		if err := r.checkConsent(ctx, dataset, t, subject, gated); err != nil {
			return "", err
		}
	}
	region, err := r.run(ctx, subject, dataset, func(st domicile.Store) error {
		return st.PutRow(ctx, t, subject, cols, vals)
	})
	if err != nil || len(gated) == 0 {
		return region, err
	}
	return region, r.recheckConsent(ctx, t, subject, gated)
}

// rowValues checks and converts a row for t, returning every column of the
// table, in the table's order, and its value.
func rowValues(t *domicile.Table, subject string, row map[string]any) ([]string, []any, error) {
	for name := range row {
		if !t.HasColumn(name) {
			return nil, nil, domicile.Errorf(domicile.CodeInvalid, "unknown column %q in table %q", name, t.Name)
		}
	}
	var cols []string
	var vals []any
	for _, c := range t.Columns {
		v, ok := row[c.Name]
		if c.Name == t.SubjectColumn {
			want, err := subjectValue(t, subject)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				got, err := rowValue(c, v)
				if err != nil {
					return nil, nil, err
				}
				if !sameValue(got, want) {
					return nil, nil, domicile.Errorf(domicile.CodeInvalid, "column %q names another subject than %q", c.Name, subject)
				}
			}
			cols, vals = append(cols, c.Name), append(vals, want)
			continue
		}
		isKey := slices.Contains(t.PrimaryKey, c.Name)
		if !ok && isKey {
			return nil, nil, domicile.Errorf(domicile.CodeInvalid, "missing primary-key column %q", c.Name)
		}
		cv, err := rowValue(c, v) // an omitted column is NULL: the row is replaced
		if err != nil {
			return nil, nil, err
		}
		switch {
		case cv == nil && isKey:
			return nil, nil, domicile.Errorf(domicile.CodeInvalid, "primary-key column %q is null", c.Name)
		case cv == nil && c.NotNull && !ok:
			return nil, nil, domicile.Errorf(domicile.CodeInvalid, "missing column %q, which may not be null", c.Name)
		case cv == nil && c.NotNull:
			return nil, nil, domicile.Errorf(domicile.CodeInvalid, "column %q may not be null", c.Name)
		}
		cols, vals = append(cols, c.Name), append(vals, cv)
	}
	return cols, vals, nil
}

// Get returns a page of a subject's rows of a table, read in the subject's
// home region in a transaction that checks the region still owns the
// subject: never stale, never empty because the subject moved.
func (r *Router) Get(ctx context.Context, dataset, table, subject string, q Query) (Page, error) {
	t, err := r.table(dataset, table)
	if err != nil {
		return Page{}, err
	}
	if subject == "" {
		return Page{}, domicile.Errorf(domicile.CodeInvalid, "missing subject")
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return Page{}, domicile.Errorf(domicile.CodeInvalid, "limit must be between 1 and %d", MaxLimit)
	}
	rq := domicile.RowQuery{Limit: limit + 1} // one more tells whether a next page exists
	if len(q.Filter) > 0 {
		rq.Filter = make(map[string]any, len(q.Filter))
		for name, v := range q.Filter {
			c, ok := column(t, name)
			if !ok {
				return Page{}, domicile.Errorf(domicile.CodeInvalid, "unknown column %q in table %q", name, t.Name)
			}
			if !slices.Contains(t.PrimaryKey, name) {
				return Page{}, domicile.Errorf(domicile.CodeInvalid, "column %q is not part of the primary key; only key columns filter", name)
			}
			if rq.Filter[name], err = keyValue(c, v); err != nil {
				return Page{}, err
			}
		}
	}
	if q.After != "" {
		if rq.After, err = decodeCursor(q.After, len(t.PrimaryKey)); err != nil {
			return Page{}, err
		}
	}
	var rows [][]any
	region, err := r.run(ctx, subject, dataset, func(st domicile.Store) error {
		var err error
		rows, err = st.FindRows(ctx, t, subject, rq)
		return err
	})
	if err != nil {
		return Page{}, err
	}
	page := Page{Region: region, Rows: make([]map[string]any, 0, min(len(rows), limit))}
	names := t.ColumnNames()
	pk := make([]int, len(t.PrimaryKey))
	for i, c := range t.PrimaryKey {
		pk[i] = slices.Index(names, c)
	}
	for i, row := range rows {
		if i == limit {
			last := rows[limit-1]
			key := make([]any, len(pk))
			for j, k := range pk {
				key[j] = last[k]
			}
			if page.Next, err = encodeCursor(key); err != nil {
				return Page{}, fmt.Errorf("encode cursor: %w", err)
			}
			break
		}
		if len(row) != len(names) {
			return Page{}, fmt.Errorf("store returned %d values for the %d columns of %s", len(row), len(names), t.Name)
		}
		m := make(map[string]any, len(names))
		for j, name := range names {
			m[name] = row[j]
		}
		page.Rows = append(page.Rows, m)
	}
	return page, nil
}

// Delete deletes a subject's row by its full primary key (the subject
// column, if part of the key, may be left out), reporting whether a row was
// deleted.
func (r *Router) Delete(ctx context.Context, dataset, table, subject string, key map[string]any) (bool, error) {
	t, err := r.table(dataset, table)
	if err != nil {
		return false, err
	}
	if subject == "" {
		return false, domicile.Errorf(domicile.CodeInvalid, "missing subject")
	}
	for name := range key {
		if !t.HasColumn(name) {
			return false, domicile.Errorf(domicile.CodeInvalid, "unknown column %q in table %q", name, t.Name)
		}
		if !slices.Contains(t.PrimaryKey, name) {
			return false, domicile.Errorf(domicile.CodeInvalid, "column %q is not part of the primary key", name)
		}
	}
	vals := make([]any, len(t.PrimaryKey))
	for i, name := range t.PrimaryKey {
		c, _ := column(t, name)
		v, ok := key[name]
		if name == t.SubjectColumn {
			want, err := subjectValue(t, subject)
			if err != nil {
				return false, err
			}
			if ok {
				got, err := keyValue(c, v)
				if err != nil {
					return false, err
				}
				if !sameValue(got, want) {
					return false, domicile.Errorf(domicile.CodeInvalid, "column %q names another subject than %q", name, subject)
				}
			}
			vals[i] = want
			continue
		}
		if !ok {
			return false, domicile.Errorf(domicile.CodeInvalid, "missing primary-key column %q", name)
		}
		if vals[i], err = keyValue(c, v); err != nil {
			return false, err
		}
	}
	var deleted bool
	_, err = r.run(ctx, subject, dataset, func(st domicile.Store) error {
		var err error
		deleted, err = st.DeleteRow(ctx, t, subject, vals)
		return err
	})
	return deleted, err
}
