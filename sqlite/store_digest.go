package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"hash"
	"slices"
	"sync"

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
	d := newDigester(subjects, len(tables))
	defer d.release()
	err = s.moverView(ctx, func(tx *sql.Tx) error {
		for ti, t := range tables {
			if err := d.table(ctx, tx, ti, t, subjects); err != nil {
				return fmt.Errorf("digest %s: %w", t.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d.digests(tables), nil
}

// newDigester returns a digester for the subjects' rows of n tables.
func newDigester(subjects []string, n int) *digester {
	index := make(map[string]int, len(subjects))
	for _, id := range subjects {
		if _, ok := index[id]; !ok {
			index[id] = len(index)
		}
	}
	d := &digester{
		index:     index,
		tableSums: make([][][sha256.Size]byte, len(index)),
		rows:      make([][]int64, len(index)),
		sizes:     make([]int64, len(index)),
	}
	if b, ok := digestBuffers.Get().(*digestBuffer); ok {
		d.buf, d.entries = b.buf, b.entries
	}
	for i := range d.tableSums {
		d.tableSums[i] = make([][sha256.Size]byte, n)
		d.rows[i] = make([]int64, n)
	}
	return d
}

// release keeps d's buffers for the next digester.
func (d *digester) release() {
	digestBuffers.Put(&digestBuffer{d.buf[:0], d.entries[:0]})
	d.buf, d.entries = nil, nil
}

// digests returns each subject's digest over the tables, in order.
func (d *digester) digests(tables []*domicile.Table) map[string]domicile.SubjectDigest {
	out := make(map[string]domicile.SubjectDigest, len(d.index))
	h := sha256.New()
	for id, si := range d.index {
		out[id] = domicile.NewSubjectDigest(h, tables, d.tableSums[si], d.rows[si], d.sizes[si])
	}
	return out
}

// digester holds the per-subject results of DigestSubjects, by subject
// index and table index, and the buffers reused from table to table.
type digester struct {
	index     map[string]int // subject → its index below
	tableSums [][][sha256.Size]byte
	rows      [][]int64
	sizes     []int64

	buf     []byte     // encoded keys and rows of one table
	entries []rowEntry // one per row of one table
}

// digestBuffer is the buffers of a digester, kept for the next.
type digestBuffer struct {
	buf     []byte
	entries []rowEntry
}

var digestBuffers sync.Pool

// rowEntry locates one encoded row in digester.buf: its key at
// buf[off:off+keyLen], its values right after, rowLen bytes.
type rowEntry struct {
	subject        int
	off            int
	keyLen, rowLen int
}

// table reads and encodes the subjects' rows of t, then hashes them per
// subject in the order of their encoded primary keys, as DigestBatch does.
func (d *digester) table(ctx context.Context, tx *sql.Tx, ti int, t *domicile.Table, subjects []string) error {
	sc, err := d.begin(t)
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
		return d.scan(sc, rows)
	})
	if err != nil {
		return err
	}
	d.finish(ti, t)
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

// begin readies d for the rows of t, selected as t.ColumnNames() in order.
func (d *digester) begin(t *domicile.Table) (*tableScan, error) {
	sc := &tableScan{cols: t.ColumnNames()}
	if sc.subj = slices.Index(sc.cols, t.SubjectColumn); sc.subj < 0 {
		return nil, fmt.Errorf("table %s has no subject column %q", t.Name, t.SubjectColumn)
	}
	sc.pk = make([]int, len(t.PrimaryKey))
	for i, c := range t.PrimaryKey {
		if sc.pk[i] = slices.Index(sc.cols, c); sc.pk[i] < 0 {
			return nil, fmt.Errorf("table %s has no key column %q", t.Name, c)
		}
	}
	d.buf, d.entries = d.buf[:0], d.entries[:0]
	sc.vals = make([]any, len(sc.cols))
	sc.ptrs = make([]any, len(sc.cols))
	for i := range sc.vals {
		sc.ptrs[i] = &sc.vals[i]
	}
	return sc, nil
}

// scan encodes the rows, each of the subject at its index.
func (d *digester) scan(sc *tableScan, rows *sql.Rows) error {
	for rows.Next() {
		if err := rows.Scan(sc.ptrs...); err != nil {
			return err
		}
		id, err := domicile.SubjectKey(sc.vals[sc.subj])
		if err != nil {
			return err
		}
		si, ok := d.index[id]
		if !ok {
			continue // matched by the IN list after a conversion, as ReadSubjects would return it
		}
		e := rowEntry{subject: si, off: len(d.buf)}
		for _, i := range sc.pk {
			if d.buf, err = domicile.AppendValue(d.buf, normalize(sc.vals[i])); err != nil {
				return fmt.Errorf("%s: %w", sc.cols[i], err)
			}
		}
		e.keyLen = len(d.buf) - e.off
		for i, v := range sc.vals {
			v = normalize(v)
			if d.buf, err = domicile.AppendValue(d.buf, v); err != nil {
				return fmt.Errorf("%s: %w", sc.cols[i], err)
			}
			d.sizes[si] += domicile.ValueSize(v)
		}
		e.rowLen = len(d.buf) - e.off - e.keyLen
		d.entries = append(d.entries, e)
	}
	return rows.Err()
}

// finish hashes the rows scanned since begin, per subject, into table ti.
func (d *digester) finish(ti int, t *domicile.Table) {
	buf := d.buf
	key := func(e rowEntry) []byte { return buf[e.off : e.off+e.keyLen] }
	slices.SortFunc(d.entries, func(a, b rowEntry) int {
		if a.subject != b.subject {
			return a.subject - b.subject
		}
		return bytes.Compare(key(a), key(b))
	})
	th := sha256.New()
	hashed := make([]bool, len(d.tableSums))
	for lo := 0; lo < len(d.entries); {
		si := d.entries[lo].subject
		hi := lo
		for hi < len(d.entries) && d.entries[hi].subject == si {
			hi++
		}
		d.tableSums[si][ti] = tableSum(th, t.Name, d.entries[lo:hi], buf)
		d.rows[si][ti] = int64(hi - lo)
		hashed[si] = true
		lo = hi
	}
	var empty [sha256.Size]byte
	for si, ok := range hashed {
		if !ok {
			if empty == ([sha256.Size]byte{}) {
				empty = tableSum(th, t.Name, nil, nil)
			}
			d.tableSums[si][ti] = empty
		}
	}
}

// tableSum is domicile.TableSum of one subject's rows of one table.
func tableSum(h hash.Hash, name string, entries []rowEntry, buf []byte) [sha256.Size]byte {
	return domicile.TableSum(h, name, len(entries), func(yield func([]byte) bool) {
		for _, e := range entries {
			start := e.off + e.keyLen
			if !yield(buf[start : start+e.rowLen]) {
				return
			}
		}
	})
}
