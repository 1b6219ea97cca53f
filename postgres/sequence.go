package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// A column filled from a sequence (serial, or GENERATED … AS IDENTITY) at
// the destination of a move must not later hand out a number the move
// copied in: the copied rows carry the source's numbers, and the
// destination's sequence knows nothing of them. So every write of copied
// rows (WriteSubjects, ApplyRows) advances the sequences of the columns it
// wrote past the largest value written, in its transaction (setval itself
// is not undone by a rollback: a failed batch leaves a gap, nothing worse).
//
// The advance takes a number first (nextval) and sets the sequence only if
// that number is below the value written: a writer that took a number at
// the same moment took it either before, then below ours and no harm, or
// after, then above the value written. The sequences found are those
// owned by their column (pg_get_serial_sequence) and those a column's
// default depends on (a default calling nextval on a sequence of its own,
// as dumps of older schemas declare serial columns).

// sequences returns the table's columns filled from a sequence, each with
// its sequence's name.
func sequences(ctx context.Context, q querier, table string) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT a.attname::text, s
		FROM pg_attribute a CROSS JOIN LATERAL pg_get_serial_sequence($1, a.attname) s
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND s IS NOT NULL
		UNION
		SELECT a.attname::text, d.refobjid::regclass::text
		FROM pg_attrdef ad
		JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
		JOIN pg_class c ON c.oid = d.refobjid AND c.relkind = 'S'
		JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
		WHERE ad.adrelid = to_regclass($1) AND NOT a.attisdropped`, quoteIdent(table))
	if err != nil {
		return nil, fmt.Errorf("sequences of %s: %w", table, err)
	}
	defer rows.Close()
	out := make(map[string]string)
	for rows.Next() {
		var col, seq string
		if err := rows.Scan(&col, &seq); err != nil {
			return nil, err
		}
		out[col] = seq
	}
	return out, rows.Err()
}

// advanceSequences advances the sequences of table's columns past the
// largest values of rows (values in the order of columns).
func advanceSequences(ctx context.Context, tx pgx.Tx, table string, seqs map[string]string, columns []string, rows [][]any) error {
	for col, seq := range seqs {
		i := slices.Index(columns, col)
		if i < 0 {
			continue
		}
		var top int64
		found := false
		for _, row := range rows {
			if n, ok := row[i].(int64); ok && (!found || n > top) {
				top, found = n, true
			}
		}
		if !found {
			continue
		}
		if _, err := tx.Exec(ctx, `SELECT setval($1::regclass, $2) FROM (SELECT nextval($1::regclass) AS n) x WHERE n < $2`, seq, top); err != nil {
			return fmt.Errorf("advance sequence %s of %s: %w", seq, table, err)
		}
	}
	return nil
}

// NumberedColumns returns the columns of the datasets' tables that a
// sequence fills here, as "table.column", sorted. A region that numbers
// rows of a dataset table from a sequence of its own needs a key range of
// its own (see docs/moves.md): a row it numbers may otherwise collide
// with a row that a later move brings from another region.
func (s *Store) NumberedColumns(ctx context.Context, datasets []*domicile.Dataset) ([]string, error) {
	var out []string
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			seqs, err := sequences(ctx, s.pool, t.Name)
			if err != nil {
				return nil, err
			}
			for col := range seqs {
				out = append(out, t.Name+"."+col)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
