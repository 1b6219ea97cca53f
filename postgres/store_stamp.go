package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

var _ domicile.RowStamper = (*Store)(nil)

// A row version's identity on PostgreSQL is its ctid (where the version
// lies) and xmin (the transaction that wrote it). An UPDATE writes a new
// version, with the updating transaction's xmin; an INSERT adds one, a
// DELETE removes one: each changes the set of (ctid, xmin) of the subject's
// visible rows. A committed transaction that was not visible to the first
// read cannot have written a version that read saw, so its versions are
// new ones. Versions move only by VACUUM FULL or CLUSTER (and xmin changes
// when a version is frozen): the stamp then differs and the subject is
// copied again, which is safe.

// stampColumns are the columns a stamped read adds after a table's own:
// the version's identity and the subject it belongs to, as text.
func stampColumns(t *domicile.Table) string {
	return "ctid, xmin, " + quoteIdent(t.SubjectColumn) + "::text"
}

// ReadSubjectsStamped is ReadSubjects, and the stamps of the rows read, in
// the same snapshot.
func (s *Store) ReadSubjectsStamped(ctx context.Context, ds *domicile.Dataset, subjects []string) (*domicile.Batch, map[string]domicile.RowStamp, error) {
	b, st, err := s.readStamped(ctx, ds, subjects, true)
	if err != nil {
		return nil, nil, err
	}
	return b, st.stamps(), nil
}

// RowStamps returns the stamps of the subjects' rows now.
func (s *Store) RowStamps(ctx context.Context, ds *domicile.Dataset, subjects []string) (map[string]domicile.RowStamp, error) {
	_, st, err := s.readStamped(ctx, ds, subjects, false)
	if err != nil {
		return nil, err
	}
	return st.stamps(), nil
}

// readStamped reads the version identities of the subjects' rows, and with
// withRows the rows as ReadSubjects does, on one snapshot.
func (s *Store) readStamped(ctx context.Context, ds *domicile.Dataset, subjects []string, withRows bool) (*domicile.Batch, *stamper, error) {
	tables, decls, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, nil, err
	}
	if slices.ContainsFunc(tables, func(t *domicile.Table) bool { return t.Via != nil }) {
		return nil, nil, fmt.Errorf("row stamps of dataset %s, which has path tables: %w", ds.Name, domicile.ErrNotSupported)
	}
	st := newStamper(subjects)
	var b *domicile.Batch
	if withRows {
		b = &domicile.Batch{Tables: make([]domicile.TableRows, len(tables))}
	}
	err = s.view(ctx, func(tx pgx.Tx) error {
		for i, t := range tables {
			cols := t.ColumnNames()
			cond, err := s.subjectWhere(ctx, t, 1, true)
			if err != nil {
				return err
			}
			list := stampColumns(t)
			if withRows {
				list = selectList(decls[i], cols) + ", " + list
			}
			rows, err := tx.Query(ctx, "SELECT "+list+" FROM "+quoteIdent(t.Name)+" WHERE "+cond, subjects)
			if err != nil {
				return fmt.Errorf("read %s: %w", t.Name, err)
			}
			var out [][]any
			if withRows {
				out, err = stampedRows(rows, i, len(cols), st)
			} else {
				_, err = stampedRows(rows, i, 0, st)
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", t.Name, err)
			}
			if withRows {
				b.Tables[i] = domicile.TableRows{Table: t.Name, Columns: cols, Rows: out}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return b, st, nil
}

// stampedRows reads rows whose first n columns are a table's and whose last
// three are stampColumns', adding each version to st under table ti, and
// returns the rows' first n columns decoded (none when n is 0).
func stampedRows(rows pgx.Rows, ti, n int, st *stamper) ([][]any, error) {
	defer rows.Close()
	m := rows.Conn().TypeMap()
	fds := rows.FieldDescriptions()
	var out [][]any
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != n+3 {
			return nil, fmt.Errorf("%d columns, want %d", len(raw), n+3)
		}
		if err := st.add(ti, raw[n], raw[n+1], raw[n+2]); err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		row := make([]any, n)
		for i, r := range raw[:n] {
			v, err := decodeValue(m, fds[i], r)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", fds[i].Name, err)
			}
			row[i] = v
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// stamper gathers the version identities of subjects' rows.
type stamper struct {
	index    map[string]int // subject → its index in versions
	versions [][][]byte     // per subject: one entry per version
}

func newStamper(subjects []string) *stamper {
	st := &stamper{index: make(map[string]int, len(subjects))}
	for _, s := range subjects {
		if _, ok := st.index[s]; !ok {
			st.index[s] = len(st.index)
		}
	}
	st.versions = make([][][]byte, len(st.index))
	return st
}

// add records a version of a row of table ti of subject (the raw values of
// stampColumns). A row whose subject, as text, is none of those asked for
// (a subject column whose type spells the id otherwise) cannot be
// attributed: the stamps cannot be trusted, and the read fails.
func (st *stamper) add(ti int, ctid, xmin, subject []byte) error {
	si, ok := st.index[string(subject)]
	if !ok || ctid == nil || xmin == nil {
		return fmt.Errorf("a row version of subject %q cannot be attributed: %w", subject, domicile.ErrNotSupported)
	}
	e := binary.AppendUvarint(nil, uint64(ti))
	e = binary.AppendUvarint(e, uint64(len(ctid)))
	e = append(e, ctid...)
	e = append(e, xmin...)
	st.versions[si] = append(st.versions[si], e)
	return nil
}

// stamps returns each subject's stamp: the digest of its versions, sorted.
func (st *stamper) stamps() map[string]domicile.RowStamp {
	out := make(map[string]domicile.RowStamp, len(st.index))
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for s, si := range st.index {
		vs := st.versions[si]
		slices.SortFunc(vs, bytes.Compare)
		h.Reset()
		for _, v := range vs {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
			h.Write(v)
		}
		var d domicile.RowStamp
		h.Sum(d[:0])
		out[s] = d
	}
	return out
}
