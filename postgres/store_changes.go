package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// ChangedSince tells which subjects' rows may have changed since a batch
// ReadSubjects read, from the rows' creating transactions (xmin) and their
// number, without reading their values.
//
// The batch's Snapshot is the xmin of the snapshot it was read on: every
// transaction with an id below it had ended when the batch was read. A row
// version visible now whose xmin is below it was therefore committed
// before the read, and has not been deleted since (it is visible now): the
// read saw it. So when none of a subject's rows in a table has a newer
// xmin, the rows there now are among those the batch holds, and when their
// number is the batch's too, they are the same rows, with the same values
// (a row version never changes; an UPDATE makes a new one, with its own
// xmin). A subject with a newer xmin anywhere, or another number of rows,
// is reported. A newer xmin may be a transaction that the read did see
// (one that ended before it, but began after the oldest one still
// running): reported all the same, which costs only a read.
//
// Transaction ids are compared as PostgreSQL does, modulo 2^32 within
// half the range: an xmin more than 2^31 transactions older than the
// snapshot (a frozen row's original id, after a wraparound) may read as
// newer, and its subject is reported. Ids are never taken for older than
// they are.
//
// Rows that reach their subject through a path are attributed by the rows
// of other tables, whose changes move them from one subject to another
// without a new version of their own: such datasets get ErrNotSupported,
// and the caller reads the values.
func (s *Store) ChangedSince(ctx context.Context, ds *domicile.Dataset, snapshot string, subjects []string, read map[string]domicile.SubjectDigest) ([]string, error) {
	xmin, err := strconv.ParseUint(snapshot, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", snapshot, domicile.ErrNotSupported)
	}
	for _, t := range ds.Tables {
		if t.Via != nil {
			return nil, fmt.Errorf("table %s reaches its subject through a path: %w", t.Name, domicile.ErrNotSupported)
		}
	}
	changed := make(map[string]bool)
	err = s.view(ctx, func(tx pgx.Tx) error {
		for _, t := range ds.Tables {
			decl, err := s.table(ctx, t.Name)
			if err != nil {
				return err
			}
			now, err := subjectRowVersions(ctx, tx, decl, t, subjects, xmin&0xffffffff)
			if err != nil {
				return fmt.Errorf("rows of %s: %w", t.Name, err)
			}
			for _, id := range subjects {
				v := now[id]
				if v.newer || v.rows != read[id].Rows[t.Name] {
					changed[id] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("changes in region %s: %w", s.region, err)
	}
	var out []string
	for _, id := range subjects {
		if changed[id] {
			out = append(out, id)
			delete(changed, id) // a subject named twice is reported once
		}
	}
	return out, nil
}

// rowVersions is what subjectRowVersions finds of a subject in a table.
type rowVersions struct {
	rows  int64
	newer bool // a row's xmin is not older than the snapshot's
}

// subjectRowVersions counts the rows of each subject in a table with a
// subject column, and tells whether any was written by a transaction not
// older than xmin (the low 32 bits of a snapshot's xmin).
func subjectRowVersions(ctx context.Context, tx pgx.Tx, decl *pgTable, t *domicile.Table, subjects []string, xmin uint64) (map[string]rowVersions, error) {
	c, ok := decl.column(t.SubjectColumn)
	if !ok {
		return nil, domicile.Errorf(domicile.CodeInvalid, "table %s has no column %s", t.Name, t.SubjectColumn)
	}
	id := "s.id"
	if c.kind != kindText {
		id = "CAST(s.id AS " + c.Type + ")"
	}
	q := `SELECT s.id, count(*), bool_or(((domicile_t.xmin::text::bigint - $2) & 4294967295) < 2147483648)
		FROM unnest($1::text[]) AS s(id) JOIN ` + quoteIdent(t.Name) + ` AS domicile_t ON domicile_t.` + quoteIdent(t.SubjectColumn) + ` = ` + id + `
		GROUP BY s.id`
	rows, err := tx.Query(ctx, q, subjects, int64(xmin))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]rowVersions)
	for rows.Next() {
		var id string
		var v rowVersions
		if err := rows.Scan(&id, &v.rows, &v.newer); err != nil {
			return nil, err
		}
		out[id] = v
	}
	return out, rows.Err()
}
