package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/domicile/domicile"
)

// DigestSubjects computes the canonical digest of each subject's rows, the
// one domicile.DigestBatch computes from ReadSubjects' batch, without
// building the batch: rows are encoded as they are read, into one buffer per
// table, and only their offsets are sorted. The verify step of every move
// reads both ends, so this is on the move's critical path.
func (s *Store) DigestSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (map[string]domicile.SubjectDigest, error) {
	tables, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(tables, func(t *domicile.Table) bool { return t.Via != nil }) {
		// Rows of path tables find their subjects through the batch's
		// other rows.
		described := &domicile.Dataset{Name: ds.Name, Tables: tables}
		b, err := s.ReadSubjects(ctx, described, subjects)
		if err != nil {
			return nil, err
		}
		return domicile.DigestBatch(described, subjects, b)
	}
	d := domicile.NewDigester(subjects, len(tables))
	defer d.Release()
	err = s.moverView(ctx, func(tx *sql.Tx) error {
		for ti, t := range tables {
			if err := digestTable(ctx, tx, d, ti, t, subjects); err != nil {
				return fmt.Errorf("digest %s: %w", t.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d.Digests(tables), nil
}

// digestTable reads and encodes the subjects' rows of t, table ti of the
// digest, and hashes them.
func digestTable(ctx context.Context, tx *sql.Tx, d *domicile.Digester, ti int, t *domicile.Table, subjects []string) error {
	sc, err := beginScan(d, t)
	if err != nil {
		return err
	}
	prefix := "SELECT " + selectList(sc.cols) + " FROM " + quoteIdent(t.Name) + " WHERE " + quoteIdent(t.SubjectColumn) + " IN ("
	err = inChunks(nil, subjects, func(n int, args []any) error {
		rows, err := tx.QueryContext(ctx, prefix+placeholders(n)+")", args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		return sc.scan(d, rows)
	})
	if err != nil {
		return err
	}
	d.FinishTable(ti, t.Name)
	return nil
}

// tableScan is where the columns that the digest needs are in a row of one
// table, and the row being scanned.
type tableScan struct {
	cols       []string
	subj       int
	pk         []int
	vals, ptrs []any
}

// beginScan readies d for the rows of t, selected as t.ColumnNames() in
// order.
func beginScan(d *domicile.Digester, t *domicile.Table) (*tableScan, error) {
	sc := &tableScan{}
	var err error
	if sc.cols, sc.subj, sc.pk, err = domicile.RowColumns(t); err != nil {
		return nil, err
	}
	d.BeginTable()
	sc.vals = make([]any, len(sc.cols))
	sc.ptrs = make([]any, len(sc.cols))
	for i := range sc.vals {
		sc.ptrs[i] = &sc.vals[i]
	}
	return sc, nil
}

// scan encodes the rows, each of the subject at its index.
func (sc *tableScan) scan(d *domicile.Digester, rows *sql.Rows) error {
	for rows.Next() {
		if err := rows.Scan(sc.ptrs...); err != nil {
			return err
		}
		id, err := domicile.SubjectKey(sc.vals[sc.subj])
		if err != nil {
			return err
		}
		si, ok := d.Subject(id)
		if !ok {
			continue // matched by the IN list after a conversion, as ReadSubjects would return it
		}
		buf := d.Row()
		for _, i := range sc.pk {
			if buf, err = domicile.AppendValue(buf, normalize(sc.vals[i])); err != nil {
				return fmt.Errorf("%s: %w", sc.cols[i], err)
			}
		}
		d.Key(buf)
		var size int64
		for i, v := range sc.vals {
			v = normalize(v)
			if buf, err = domicile.AppendValue(buf, v); err != nil {
				return fmt.Errorf("%s: %w", sc.cols[i], err)
			}
			size += domicile.ValueSize(v)
		}
		d.EndRow(si, buf, size)
	}
	return rows.Err()
}
