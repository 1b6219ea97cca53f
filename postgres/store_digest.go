package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// DigestSubjects computes the canonical digest of each subject's rows: the
// one domicile.DigestBatch computes from ReadSubjects' batch, over the
// dataset's columns as declared here when the caller's description lacks
// them. Values are read as every engine's store reads them (see the
// package's documentation), so equal rows digest alike in any store.
//
// The rows are encoded as they arrive, from the bytes the server sent,
// without a batch (appendRaw): the verify step of every move reads both
// ends, so this is on the move's critical path. A dataset with path tables
// is read as a batch, whose other rows give those tables' rows their
// subjects.
func (s *Store) DigestSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string) (map[string]domicile.SubjectDigest, error) {
	tables, decls, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, err
	}
	described := &domicile.Dataset{Name: ds.Name, Tables: tables}
	if slices.ContainsFunc(tables, func(t *domicile.Table) bool { return t.Via != nil }) {
		b, err := s.readSubjects(ctx, described, subjects, false)
		if err != nil {
			return nil, err
		}
		return domicile.DigestBatch(described, subjects, b)
	}
	queries := make([]string, len(tables))
	for i, t := range tables {
		cond, err := s.subjectWhere(ctx, t, 1, true)
		if err != nil {
			return nil, err
		}
		queries[i] = "SELECT " + selectList(decls[i], t.ColumnNames()) + " FROM " + quoteIdent(t.Name) + " WHERE " + cond
	}
	d := domicile.NewDigester(subjects, len(tables))
	defer d.Release()
	err = s.view(ctx, func(tx pgx.Tx) error {
		// One round trip, as readSubjects; the results are read in order.
		q := &pgx.Batch{}
		for i, t := range tables {
			q.Queue(queries[i], subjects).Query(func(rows pgx.Rows) error {
				d.BeginTable()
				if err := digestRows(d, t, rows); err != nil {
					return fmt.Errorf("digest %s: %w", t.Name, err)
				}
				d.FinishTable(i, t.Name)
				return nil
			})
		}
		return commitBatch(ctx, tx, q)
	})
	if err != nil {
		return nil, err
	}
	return d.Digests(tables), nil
}

// digestRows gives d the rows of t, selected as t.ColumnNames() in order.
func digestRows(d *domicile.Digester, t *domicile.Table, rows pgx.Rows) error {
	defer rows.Close()
	cols, subj, pk, err := domicile.RowColumns(t)
	if err != nil {
		return err
	}
	m := rows.Conn().TypeMap()
	fds := rows.FieldDescriptions()
	if len(fds) != len(cols) {
		return fmt.Errorf("%d columns read, %d selected", len(fds), len(cols))
	}
	for rows.Next() {
		raw := rows.RawValues()
		si, ok, err := rawSubject(d, m, fds[subj], raw[subj])
		if err != nil {
			return err
		}
		if !ok {
			continue // a row of a subject outside the digest
		}
		buf := d.Row()
		for _, i := range pk {
			if buf, _, err = appendRaw(buf, m, fds[i], raw[i]); err != nil {
				return fmt.Errorf("%s: %w", cols[i], err)
			}
		}
		d.Key(buf)
		var size int64
		for i := range cols {
			var n int64
			if buf, n, err = appendRaw(buf, m, fds[i], raw[i]); err != nil {
				return fmt.Errorf("%s: %w", cols[i], err)
			}
			size += n
		}
		d.EndRow(si, buf, size)
	}
	return rows.Err()
}

// rawSubject returns the digest's index of the subject a subject column's
// bytes name, as domicile.SubjectKey names it from the decoded value.
func rawSubject(d *domicile.Digester, m *pgtype.Map, fd pgconn.FieldDescription, raw []byte) (int, bool, error) {
	if raw != nil && decodesToBytes(fd) {
		si, ok := d.SubjectOf(raw)
		return si, ok, nil
	}
	v, err := decodeValue(m, fd, raw)
	if err != nil {
		return 0, false, err
	}
	id, err := domicile.SubjectKey(v)
	if err != nil {
		return 0, false, err
	}
	si, ok := d.Subject(id)
	return si, ok, nil
}

// decodesToBytes reports whether decodeValue decodes a value of the field
// to a string of its bytes: the character types in either format, and
// every type in the text format but the integers, floats, booleans and
// bytea, which it parses.
func decodesToBytes(fd pgconn.FieldDescription) bool {
	switch fd.DataTypeOID {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		return true
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.Float4OID, pgtype.Float8OID, pgtype.BoolOID, pgtype.ByteaOID:
		return false
	}
	return fd.Format == pgtype.TextFormatCode
}

// appendRaw appends to buf the canonical encoding (domicile.AppendValue)
// of the value decodeValue decodes from raw, and returns the value's size
// (domicile.ValueSize), without making the value where its kind allows.
func appendRaw(buf []byte, m *pgtype.Map, fd pgconn.FieldDescription, raw []byte) ([]byte, int64, error) {
	if raw == nil {
		return domicile.AppendNull(buf), 0, nil
	}
	if fd.Format == pgtype.BinaryFormatCode {
		switch {
		case fd.DataTypeOID == pgtype.Int8OID && len(raw) == 8:
			return domicile.AppendInt(buf, int64(binary.BigEndian.Uint64(raw))), 8, nil
		case fd.DataTypeOID == pgtype.Int4OID && len(raw) == 4:
			return domicile.AppendInt(buf, int64(int32(binary.BigEndian.Uint32(raw)))), 8, nil
		case fd.DataTypeOID == pgtype.Int2OID && len(raw) == 2:
			return domicile.AppendInt(buf, int64(int16(binary.BigEndian.Uint16(raw)))), 8, nil
		case fd.DataTypeOID == pgtype.Float8OID && len(raw) == 8:
			return domicile.AppendFloat(buf, math.Float64frombits(binary.BigEndian.Uint64(raw))), 8, nil
		case fd.DataTypeOID == pgtype.Float4OID && len(raw) == 4:
			return domicile.AppendFloat(buf, float64(math.Float32frombits(binary.BigEndian.Uint32(raw)))), 8, nil
		case fd.DataTypeOID == pgtype.BoolOID && len(raw) == 1:
			return domicile.AppendBool(buf, raw[0] == 1), 8, nil
		case fd.DataTypeOID == pgtype.ByteaOID:
			return domicile.AppendBlob(buf, raw), int64(len(raw)), nil
		}
	}
	if decodesToBytes(fd) {
		return domicile.AppendText(buf, raw), int64(len(raw)), nil
	}
	v, err := decodeValue(m, fd, raw)
	if err != nil {
		return buf, 0, err
	}
	buf, err = domicile.AppendValue(buf, v)
	return buf, domicile.ValueSize(v), err
}
