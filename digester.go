package domicile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"slices"
	"sync"
)

// A Digester computes subjects' digests (SubjectDigest) from their rows,
// encoded as a store reads them, a table at a time, without a Batch:
//
//	d := NewDigester(subjects, len(tables))
//	defer d.Release()
//	for ti, t := range tables {
//		d.BeginTable()
//		for each row of t {
//			si, ok := d.Subject(id) // skip the row unless ok
//			buf := d.Row()
//			buf = AppendValue(buf, …) // the primary key's values, in key order
//			d.Key(buf)
//			buf = AppendValue(buf, …) // every column's value, in t's order
//			d.EndRow(si, buf, size)
//		}
//		d.FinishTable(ti, t.Name)
//	}
//	return d.Digests(tables)
//
// Rows are hashed per subject in the order of their encoded keys (and of
// their encoded values, where keys are equal), so every store and
// DigestBatch give the same digests.
type Digester struct {
	index     map[string]int // subject → its index below
	tableSums [][][sha256.Size]byte
	rows      [][]int64
	sizes     []int64

	buf     []byte        // encoded keys and rows of one table
	entries []digestEntry // one per row of one table
	off     int           // where the row being encoded starts in buf
	keyLen  int
	h       hash.Hash
}

// digestEntry locates one encoded row in Digester.buf: its key at
// buf[off:off+keyLen], its values right after, rowLen bytes.
type digestEntry struct {
	subject        int
	off            int
	keyLen, rowLen int
}

// digestBuffers keeps digesters' buffers from one digest to the next.
var digestBuffers sync.Pool

type digestBuffer struct {
	buf     []byte
	entries []digestEntry
}

// NewDigester returns a digester of the subjects' rows of n tables.
func NewDigester(subjects []string, n int) *Digester {
	index := make(map[string]int, len(subjects))
	for _, id := range subjects {
		if _, ok := index[id]; !ok {
			index[id] = len(index)
		}
	}
	d := &Digester{
		index:     index,
		tableSums: make([][][sha256.Size]byte, len(index)),
		rows:      make([][]int64, len(index)),
		sizes:     make([]int64, len(index)),
		h:         sha256.New(),
	}
	if b, ok := digestBuffers.Get().(*digestBuffer); ok {
		d.buf, d.entries = b.buf, b.entries
	}
	sums := make([][sha256.Size]byte, len(index)*n)
	rows := make([]int64, len(index)*n)
	for i := range d.tableSums {
		d.tableSums[i] = sums[i*n : (i+1)*n : (i+1)*n]
		d.rows[i] = rows[i*n : (i+1)*n : (i+1)*n]
	}
	return d
}

// Release keeps d's buffers for the next digester; d is not used after.
func (d *Digester) Release() {
	digestBuffers.Put(&digestBuffer{d.buf[:0], d.entries[:0]})
	d.buf, d.entries = nil, nil
}

// Subject returns the index of a subject of the digest, false for another.
func (d *Digester) Subject(id string) (int, bool) {
	si, ok := d.index[id]
	return si, ok
}

// SubjectOf is Subject of the subject whose id is the bytes b.
func (d *Digester) SubjectOf(b []byte) (int, bool) {
	si, ok := d.index[string(b)]
	return si, ok
}

// RowColumns returns, for a store that reads t's rows as t.ColumnNames()
// in order, those columns and where the subject column and the primary
// key's columns are among them.
func RowColumns(t *Table) (cols []string, subj int, pk []int, err error) {
	cols = t.ColumnNames()
	if subj = slices.Index(cols, t.SubjectColumn); subj < 0 {
		return nil, 0, nil, fmt.Errorf("table %s has no subject column %q", t.Name, t.SubjectColumn)
	}
	pk = make([]int, len(t.PrimaryKey))
	for i, c := range t.PrimaryKey {
		if pk[i] = slices.Index(cols, c); pk[i] < 0 {
			return nil, 0, nil, fmt.Errorf("table %s has no key column %q", t.Name, c)
		}
	}
	return cols, subj, pk, nil
}

// BeginTable readies d for the rows of the next table.
func (d *Digester) BeginTable() {
	d.buf, d.entries = d.buf[:0], d.entries[:0]
}

// Row begins a row: its key's values and then its values are appended to
// the buffer it returns.
func (d *Digester) Row() []byte {
	d.off = len(d.buf)
	return d.buf
}

// Key ends the row's key: buf is Row's buffer with the key's values.
func (d *Digester) Key(buf []byte) {
	d.buf = buf
	d.keyLen = len(buf) - d.off
}

// EndRow ends the row of subject si: buf is Key's buffer with the row's
// values, size their size (ValueSize, summed).
func (d *Digester) EndRow(si int, buf []byte, size int64) {
	d.buf = buf
	d.entries = append(d.entries, digestEntry{subject: si, off: d.off, keyLen: d.keyLen, rowLen: len(buf) - d.off - d.keyLen})
	d.sizes[si] += size
}

// FinishTable hashes the rows given since BeginTable, per subject, as the
// rows of table ti, named name.
func (d *Digester) FinishTable(ti int, name string) {
	buf := d.buf
	key := func(e digestEntry) []byte { return buf[e.off : e.off+e.keyLen] }
	row := func(e digestEntry) []byte { return buf[e.off+e.keyLen : e.off+e.keyLen+e.rowLen] }
	slices.SortFunc(d.entries, func(a, b digestEntry) int {
		if a.subject != b.subject {
			return a.subject - b.subject
		}
		if c := bytes.Compare(key(a), key(b)); c != 0 {
			return c
		}
		// Rows with equal keys (a NULL in a SQLite key) in the order of
		// their values, so that neither the order they were read in nor
		// the other subjects' rows change the digest.
		return bytes.Compare(row(a), row(b))
	})
	hashed := make([]bool, len(d.tableSums))
	for lo := 0; lo < len(d.entries); {
		si := d.entries[lo].subject
		hi := lo
		for hi < len(d.entries) && d.entries[hi].subject == si {
			hi++
		}
		d.tableSums[si][ti] = d.tableSum(name, d.entries[lo:hi])
		d.rows[si][ti] = int64(hi - lo)
		hashed[si] = true
		lo = hi
	}
	var empty [sha256.Size]byte
	for si, ok := range hashed {
		if !ok {
			if empty == ([sha256.Size]byte{}) {
				empty = d.tableSum(name, nil)
			}
			d.tableSums[si][ti] = empty
		}
	}
}

// tableSum is TableSum of one subject's rows of one table.
func (d *Digester) tableSum(name string, entries []digestEntry) [sha256.Size]byte {
	return TableSum(d.h, name, len(entries), func(yield func([]byte) bool) {
		for _, e := range entries {
			start := e.off + e.keyLen
			if !yield(d.buf[start : start+e.rowLen]) {
				return
			}
		}
	})
}

// Digests returns each subject's digest over the tables, in order: the
// tables whose rows FinishTable hashed at their indexes.
func (d *Digester) Digests(tables []*Table) map[string]SubjectDigest {
	out := make(map[string]SubjectDigest, len(d.index))
	for id, si := range d.index {
		out[id] = NewSubjectDigest(d.h, tables, d.tableSums[si], d.rows[si], d.sizes[si])
	}
	return out
}

// The canonical encodings of AppendValue, by kind of value, for stores that
// encode what they read without making an any of it.

// AppendNull appends the encoding of NULL.
func AppendNull(buf []byte) []byte { return append(buf, tagNull) }

// AppendInt appends the encoding of an integer of any width.
func AppendInt(buf []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, tagInt), uint64(v)^signFlip)
}

// AppendFloat appends the encoding of a float32 or float64.
func AppendFloat(buf []byte, v float64) []byte {
	bits := math.Float64bits(v)
	if bits&floatSign != 0 {
		bits = ^bits
	} else {
		bits |= floatSign
	}
	return binary.BigEndian.AppendUint64(append(buf, tagFloat), bits)
}

// AppendText appends the encoding of a string whose bytes are v.
func AppendText(buf []byte, v []byte) []byte {
	buf = binary.AppendUvarint(append(buf, tagText), uint64(len(v)))
	return append(buf, v...)
}

// AppendBlob appends the encoding of a []byte.
func AppendBlob(buf []byte, v []byte) []byte {
	buf = binary.AppendUvarint(append(buf, tagBlob), uint64(len(v)))
	return append(buf, v...)
}

// AppendBool appends the encoding of a bool.
func AppendBool(buf []byte, v bool) []byte {
	if v {
		return append(buf, tagBool, 1)
	}
	return append(buf, tagBool, 0)
}
