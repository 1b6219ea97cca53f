package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// describedDataset returns the dataset's tables with their columns, and
// their declarations here.
func (s *Store) describedDataset(ctx context.Context, ds *domicile.Dataset) ([]*domicile.Table, []*pgTable, error) {
	tables := make([]*domicile.Table, len(ds.Tables))
	decls := make([]*pgTable, len(ds.Tables))
	for i, t := range ds.Tables {
		d, pt, err := s.described(ctx, t)
		if err != nil {
			return nil, nil, err
		}
		tables[i], decls[i] = d, pt
	}
	return tables, decls, nil
}

// ReadSubjects reads every row of the subjects in every table of the
// dataset, on one snapshot, which the batch names for ChangedSince.
// Columns are in declaration order.
func (s *Store) ReadSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (*domicile.Batch, error) {
	return s.readSubjects(ctx, ds, subjects, true)
}

// readSubjects is ReadSubjects, naming the snapshot only when asked: a
// digest's read (DigestSubjects) has no use for it.
func (s *Store) readSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, snapshot bool) (*domicile.Batch, error) {
	tables, decls, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, err
	}
	b := &domicile.Batch{Tables: make([]domicile.TableRows, len(tables))}
	queries := make([]string, len(tables))
	for i, t := range tables {
		cond, err := s.subjectWhere(ctx, t, 1, true)
		if err != nil {
			return nil, err
		}
		b.Tables[i] = domicile.TableRows{Table: t.Name, Columns: t.ColumnNames()}
		queries[i] = "SELECT " + selectList(decls[i], b.Tables[i].Columns) + " FROM " + quoteIdent(t.Name) + " WHERE " + cond
	}
	err = s.view(ctx, func(tx pgx.Tx) error {
		// One round trip: the BEGIN, the snapshot's name, every table's
		// rows and the COMMIT.
		q := &pgx.Batch{}
		if snapshot {
			// The transaction's snapshot, taken by its first statement,
			// for ChangedSince.
			queueSnapshotToken(q, &b.Snapshot)
		}
		for i, t := range tables {
			q.Queue(queries[i], subjects).Query(func(rows pgx.Rows) (err error) {
				if b.Tables[i].Rows, err = scanRows(rows, nil); err != nil {
					return fmt.Errorf("read %s: %w", t.Name, err)
				}
				return nil
			})
		}
		return commitBatch(ctx, tx, q)
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// WriteSubjects deletes the subjects' rows left by an earlier attempt and
// copies the batch in with COPY, in one transaction that passes the
// triggers. COPY inserts as INSERT does: a key held by another subject
// fails the batch with CodeConflict.
//
// The rows go in COPY's binary format where every column is of a type
// copyBinary encodes and every value is of the column's own kind (the
// server then parses nothing), and otherwise in the text format, so that
// the server reads each value as the column's type, as it reads the
// literal of an INSERT: a timestamp or numeric travels as its text, which
// pgx's binary CopyFrom cannot encode from a string.
func (s *Store) WriteSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, b *domicile.Batch) error {
	set := make(map[string]struct{}, len(subjects))
	for _, id := range subjects {
		set[id] = struct{}{}
	}
	type plan struct {
		t    *domicile.Table
		decl *pgTable
		rows *domicile.TableRows
	}
	plans := make([]plan, 0, len(ds.Tables))
	for _, t := range ds.Tables {
		pt, err := s.table(ctx, t.Name)
		if err != nil {
			return err
		}
		plans = append(plans, plan{t: t, decl: pt})
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
		for _, c := range tr.Columns {
			if _, ok := plans[pi].decl.column(c); !ok {
				return domicile.Errorf(domicile.CodeInvalid, "table %s in region %s has no column %q", tr.Table, s.region, c)
			}
		}
		for _, row := range tr.Rows {
			if len(row) != len(tr.Columns) {
				return domicile.Errorf(domicile.CodeInvalid, "a row of %s has %d values for %d columns", tr.Table, len(row), len(tr.Columns))
			}
			if plans[pi].t.Via != nil {
				continue // checked once written: the row must reach a subject of the batch
			}
			id, ok := subjectString(row[si])
			if _, in := set[id]; !ok || !in {
				return domicile.Errorf(domicile.CodeInvalid, "a row of %s belongs to a subject outside the batch", tr.Table)
			}
		}
		plans[pi].rows = tr
	}
	// Encode before the transaction: a value that cannot be stored fails
	// the batch with the store's own error, not COPY's.
	data := make([][]byte, len(plans))
	bin := make([]bool, len(plans))
	for i, p := range plans {
		if p.rows == nil || len(p.rows.Rows) == 0 {
			continue
		}
		if data[i], bin[i] = copyBinary(p.decl, p.rows); bin[i] {
			continue
		}
		var err error
		if data[i], err = copyData(p.decl, p.rows); err != nil {
			return fmt.Errorf("write %s: %w", p.t.Name, err)
		}
	}
	clear, err := s.deleteSQL(ctx, ds.Tables)
	if err != nil {
		return err
	}
	err = s.update(ctx, func(tx pgx.Tx) error {
		// The check comes back before the clearing: a write that fails
		// it (a stale run's) touches no row of the subjects, which may be
		// live here.
		q, in, err := bypassUnder(ctx, tx, ds.Name, b.MoveID, domicile.Incoming, subjects)
		if err != nil {
			return err
		}
		if len(in) != len(subjects) {
			return &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrPrecondition,
				Message: fmt.Sprintf("%d of %d subjects are not incoming under move %s", len(subjects)-len(in), len(subjects), b.MoveID)}
		}
		if clear != "" {
			q.Queue(clear, subjects)
		}
		if err := tx.SendBatch(ctx, q).Close(); err != nil {
			return fmt.Errorf("clear: %w", err)
		}
		// Parents first: the foreign keys are checked at the end of each COPY.
		refs := func(t *domicile.Table) []string {
			return plans[slices.IndexFunc(plans, func(p plan) bool { return p.t == t })].decl.refs
		}
		for _, t := range ds.InsertOrder(refs) {
			i := slices.IndexFunc(plans, func(p plan) bool { return p.t == t })
			p := plans[i]
			if data[i] == nil {
				continue
			}
			quoted := make([]string, len(p.rows.Columns))
			for j, c := range p.rows.Columns {
				quoted[j] = quoteIdent(c)
			}
			q := "COPY " + quoteIdent(p.t.Name) + " (" + strings.Join(quoted, ", ") + ") FROM STDIN"
			if bin[i] {
				q += " WITH (FORMAT binary)"
			}
			if err := begin(ctx, tx); err != nil {
				return err
			}
			if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data[i]), q); err != nil {
				if isConflict(err) {
					return &domicile.Error{Code: domicile.CodeConflict,
						Message: fmt.Sprintf("a key of %s is held by another subject", p.t.Name), Err: err}
				}
				return fmt.Errorf("copy into %s: %w", p.t.Name, err)
			}
			if err := advanceSequences(ctx, tx, p.t.Name, p.decl.seqs, p.rows.Columns, p.rows.Rows); err != nil {
				return err
			}
		}
		// The rows of a path table must reach the batch's subjects.
		for _, p := range plans {
			if p.t.Via == nil || p.rows == nil || len(p.rows.Rows) == 0 {
				continue
			}
			n, err := s.countReached(ctx, tx, p.t, subjects)
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

// copyData encodes rows in COPY's text format, for the columns of t.
func copyData(t *pgTable, tr *domicile.TableRows) ([]byte, error) {
	kinds := make([]kind, len(tr.Columns))
	for i, c := range tr.Columns {
		kinds[i] = t.kindOf(c)
	}
	var buf []byte
	var err error
	for _, row := range tr.Rows {
		for i, v := range row {
			if i > 0 {
				buf = append(buf, '\t')
			}
			if buf, err = appendCopyText(buf, kinds[i], v); err != nil {
				return nil, fmt.Errorf("column %s: %w", tr.Columns[i], err)
			}
		}
		buf = append(buf, '\n')
	}
	return buf, nil
}

// canonicalNaN is the bits of the NaN PostgreSQL's float8in makes.
const canonicalNaN = 0x7ff8000000000000

// copyHeader begins COPY's binary format: the signature, no flags, no
// header extension.
const copyHeader = "PGCOPY\n\xff\r\n\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"

// copyBinary encodes rows in COPY's binary format, for the columns of t,
// or returns false: a column is of a type it does not encode (only the
// integers, double precision, boolean, bytea and the character types), or
// a value is not of its column's kind (a string for an integer column, a
// blob for a text one), which the text format leaves to the server's
// parser. Values that fail are reported by copyData, which then runs.
func copyBinary(t *pgTable, tr *domicile.TableRows) ([]byte, bool) {
	oids := make([]uint32, len(tr.Columns))
	kinds := make([]kind, len(tr.Columns))
	for i, name := range tr.Columns {
		c, _ := t.column(name)
		kinds[i] = c.kind
		switch c.oid {
		case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.Float8OID, pgtype.BoolOID, pgtype.ByteaOID,
			pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID:
			oids[i] = c.oid
		default:
			return nil, false
		}
	}
	buf := make([]byte, 0, 16*len(tr.Rows)*len(tr.Columns)+len(copyHeader)+2)
	buf = append(buf, copyHeader...)
	for _, row := range tr.Rows {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(row)))
		for i, v := range row {
			b, err := bindValue(kinds[i], v)
			if err != nil {
				return nil, false
			}
			var ok bool
			if buf, ok = appendCopyBinary(buf, oids[i], b); !ok {
				return nil, false
			}
		}
	}
	return binary.BigEndian.AppendUint16(buf, 0xffff), true
}

// appendCopyBinary appends a value bound by bindValue as a field of
// COPY's binary format for a column of type oid (one copyBinary takes),
// or returns false if it is not of that type's kind or out of its range.
func appendCopyBinary(buf []byte, oid uint32, v any) ([]byte, bool) {
	be := binary.BigEndian
	switch x := v.(type) {
	case nil:
		return be.AppendUint32(buf, 0xffffffff), true
	case int64:
		switch {
		case oid == pgtype.Int8OID:
			return be.AppendUint64(be.AppendUint32(buf, 8), uint64(x)), true
		case oid == pgtype.Int4OID && x >= math.MinInt32 && x <= math.MaxInt32:
			return be.AppendUint32(be.AppendUint32(buf, 4), uint32(int32(x))), true
		case oid == pgtype.Int2OID && x >= math.MinInt16 && x <= math.MaxInt16:
			return be.AppendUint16(be.AppendUint32(buf, 2), uint16(int16(x))), true
		}
	case float64:
		if oid == pgtype.Float8OID {
			if math.IsNaN(x) {
				x = math.Float64frombits(canonicalNaN) // as float8in reads 'NaN'
			}
			return be.AppendUint64(be.AppendUint32(buf, 8), math.Float64bits(x)), true
		}
	case bool:
		if oid == pgtype.BoolOID {
			b := byte(0)
			if x {
				b = 1
			}
			return append(be.AppendUint32(buf, 1), b), true
		}
	case []byte:
		if oid == pgtype.ByteaOID && len(x) <= math.MaxInt32 {
			return append(be.AppendUint32(buf, uint32(len(x))), x...), true
		}
	case string:
		if (oid == pgtype.TextOID || oid == pgtype.VarcharOID || oid == pgtype.BPCharOID) && len(x) <= math.MaxInt32 {
			return append(be.AppendUint32(buf, uint32(len(x))), x...), true
		}
	}
	return buf, false
}

// PurgeSubjects deletes every row of the subjects in the dataset's tables,
// passing the triggers, and returns how many rows it deleted.
func (s *Store) PurgeSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (int64, error) {
	var total int64
	if err := s.purge(ctx, ds, "", subjects, &total); err != nil {
		return 0, fmt.Errorf("purge %d subjects of %s in region %s: %w", len(subjects), ds.Name, s.region, err)
	}
	return total, nil
}

// PurgeMoved deletes the rows of those subjects whose ownership row here is
// Moved under moveID, passing the triggers, and returns how many rows it
// deleted. Subjects in any other state are left alone.
func (s *Store) PurgeMoved(ctx context.Context, ds *domicile.Dataset, moveID string, subjects []string) (int64, error) {
	var total int64
	if err := s.purge(ctx, ds, moveID, subjects, &total); err != nil {
		return 0, fmt.Errorf("purge move %s of %s in region %s: %w", moveID, ds.Name, s.region, err)
	}
	return total, nil
}

// purge deletes, in a transaction passing the triggers, the rows of the
// subjects (with moveID, of those Moved under it, locked while it runs),
// adding their number to total: two round trips, the BEGIN, the bypass and
// the ownership rows' read, then the deletion and the COMMIT (one without
// moveID).
func (s *Store) purge(ctx context.Context, ds *domicile.Dataset, moveID string, subjects []string, total *int64) error {
	del, err := s.deleteSQL(ctx, ds.Tables)
	if err != nil || del == "" {
		return err
	}
	return s.update(ctx, func(tx pgx.Tx) error {
		*total = 0
		b, in, err := bypassUnder(ctx, tx, ds.Name, moveID, domicile.Moved, subjects)
		if err != nil || len(in) == 0 {
			return err
		}
		b.Queue(del, in).QueryRow(func(row pgx.Row) error { return row.Scan(total) })
		return commitBatch(ctx, tx, b)
	})
}

// CountRows returns, per table, how many rows the subject has here.
func (s *Store) CountRows(ctx context.Context, ds *domicile.Dataset, subject string) (map[string]int64, error) {
	out := make(map[string]int64, len(ds.Tables))
	err := s.view(ctx, func(tx pgx.Tx) error {
		for _, t := range ds.Tables {
			var n int64
			cond, err := s.subjectWhere(ctx, t, 1, false)
			if err != nil {
				return err
			}
			q := "SELECT count(*) FROM " + quoteIdent(t.Name) + " WHERE " + cond
			if err := tx.QueryRow(ctx, q, subject).Scan(&n); err != nil {
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
	rows, err := s.pool.Query(ctx, query)
	if err != nil {
		return domicile.Errorf(domicile.CodeInvalid, "discover query: %v", err)
	}
	defer rows.Close()
	if n := len(rows.FieldDescriptions()); n != 2 {
		return domicile.Errorf(domicile.CodeInvalid, "the discover query returns %d columns, not 2 (id, country)", n)
	}
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			return err
		}
		id, ok := discovered(row[0])
		if !ok || id == "" {
			return domicile.Errorf(domicile.CodeInvalid, "the discover query returned a subject id of type %T", row[0])
		}
		country, ok := discovered(row[1])
		if !ok {
			return domicile.Errorf(domicile.CodeInvalid, "the discover query returned a country of type %T", row[1])
		}
		if err := fn(id, country); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		if pgCode(err) != "" {
			return domicile.Errorf(domicile.CodeInvalid, "discover query: %v", err)
		}
		return err
	}
	return nil
}

// discovered converts a value of a discover query to a string; NULL is "".
func discovered(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	}
	return subjectString(v)
}

// ListRowSubjects calls fn once for every subject that has rows in the
// table, in the order of the subject column.
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
	return s.view(ctx, func(tx pgx.Tx) error {
		if t.Via != nil {
			return listPathSubjects(ctx, tx, t, cond, fn)
		}
		col := quoteIdent(t.SubjectColumn)
		if cond != "" {
			cond = " WHERE " + cond
		}
		rows, err := tx.Query(ctx, `SELECT DISTINCT `+col+` FROM `+quoteIdent(t.Name)+` AS `+hopAlias(0)+cond+` ORDER BY `+col)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			row, err := scanRow(rows)
			if err != nil {
				return err
			}
			subject, ok := subjectString(row[0])
			if !ok {
				return fmt.Errorf("%s.%s: subject value of type %T", t.Name, t.SubjectColumn, row[0])
			}
			if err := fn(subject); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// MeasureSubjects returns how many rows the subjects have in the dataset's
// tables, and the size of their values as domicile.Batch.Bytes counts it:
// the bytes of text and bytea values, of the text form of values that rows
// carry as text, and 8 for the others.
func (s *Store) MeasureSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (rows, bytes int64, err error) {
	decls := make([]*pgTable, len(ds.Tables))
	for i, t := range ds.Tables {
		if decls[i], err = s.table(ctx, t.Name); err != nil {
			return 0, 0, err
		}
	}
	err = s.view(ctx, func(tx pgx.Tx) error {
		for i, t := range ds.Tables {
			sizes := make([]string, 0, len(decls[i].columns))
			for _, c := range decls[i].columns {
				q := quoteIdent(c.Name)
				switch c.kind {
				case kindInt, kindFloat, kindBool:
					sizes = append(sizes, `CASE WHEN `+q+` IS NULL THEN 0 ELSE 8 END`)
				case kindText, kindBytea:
					sizes = append(sizes, `coalesce(octet_length(`+q+`), 0)`)
				default:
					sizes = append(sizes, `coalesce(octet_length(`+selectExpr(c.Name, c.kind)+`), 0)`)
				}
			}
			cond, err := s.subjectWhere(ctx, t, 1, true)
			if err != nil {
				return err
			}
			query := `SELECT count(*), coalesce(sum(` + strings.Join(sizes, " + ") + `), 0)::bigint FROM ` + quoteIdent(t.Name) +
				` WHERE ` + cond
			var r, b int64
			if err := tx.QueryRow(ctx, query, subjects).Scan(&r, &b); err != nil {
				return fmt.Errorf("measure %s: %w", t.Name, err)
			}
			rows += r
			bytes += b
		}
		return nil
	})
	return rows, bytes, err
}

// subjectsIn returns those of the subjects whose ownership row is in state
// with the move's id, locking their rows (FOR SHARE) so that no transition
// changes them before the caller's transaction ends.
func subjectsIn(ctx context.Context, tx pgx.Tx, dataset, moveID string, state domicile.OwnerState, subjects []string) ([]string, error) {
	var out []string
	b := &pgx.Batch{}
	queueSubjectsIn(b, dataset, moveID, state, subjects, &out)
	err := tx.SendBatch(ctx, b).Close()
	return out, err
}

// bypassUnder begins a transaction that passes the triggers on the
// subjects that are in state under moveID, which it returns: it sends the
// bypass and the read of their ownership rows (locked FOR SHARE, as
// subjectsIn), and returns a batch for the caller's next statements.
// Without a moveID it sends nothing: the batch holds the bypass, and every
// subject is returned.
func bypassUnder(ctx context.Context, tx pgx.Tx, dataset, moveID string, state domicile.OwnerState, subjects []string) (*pgx.Batch, []string, error) {
	b := &pgx.Batch{}
	queueBypass(b)
	if moveID == "" {
		return b, subjects, nil
	}
	var in []string
	queueSubjectsIn(b, dataset, moveID, state, subjects, &in)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, err
	}
	return &pgx.Batch{}, in, nil
}

// queueSubjectsIn queues subjectsIn's statement, which sets out.
func queueSubjectsIn(b *pgx.Batch, dataset, moveID string, state domicile.OwnerState, subjects []string, out *[]string) {
	b.Queue(`SELECT subject FROM domicile_owner
		WHERE dataset = $1 AND subject = ANY($2::text[]) AND state = $3 AND move_id = $4 FOR SHARE`,
		dataset, subjects, string(state), moveID).Query(func(rows pgx.Rows) error {
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		in := make(map[string]bool, len(found))
		for _, s := range found {
			in[s] = true
		}
		*out = (*out)[:0]
		for _, s := range subjects {
			if in[s] {
				*out = append(*out, s)
			}
		}
		return nil
	})
}
