package domicile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"iter"
	"math"
	"slices"
	"time"
)

// SubjectDigest is the canonical digest of one subject's rows of a dataset,
// with the row count per table. Equal digests at two stores mean equal rows,
// whatever the engines.
type SubjectDigest struct {
	Sum    [sha256.Size]byte            // over every table
	Tables map[string][sha256.Size]byte // per table
	Rows   map[string]int64             // per table
	Bytes  int64                        // size of the values, as Batch.Bytes counts
}

func (d SubjectDigest) String() string { return hex.EncodeToString(d.Sum[:]) }

// Equal reports whether two digests cover the same rows.
func (d SubjectDigest) Equal(o SubjectDigest) bool { return d.Sum == o.Sum }

// DigestBatch computes the digest of every subject in subjects from a batch
// holding their rows of ds. Rows are encoded canonically (typed values, in
// the column order the dataset declares) and ordered by their encoded primary
// key, so that neither the engine nor SQL collation affects the result.
// The rows of a table with a path belong to the subject the path reaches
// through the batch's rows (see Path). Subjects with no rows still get a
// digest (of nothing).
func DigestBatch(ds *Dataset, subjects []string, b *Batch) (map[string]SubjectDigest, error) {
	// Every row's encoded key and values go into one buffer; a row is its
	// place there.
	type keyed struct{ off, keyLen, rowLen int }
	var buf []byte
	index := make(map[string]int, len(subjects)) // subject → its slot below
	for _, s := range subjects {
		if _, ok := index[s]; !ok {
			index[s] = len(index)
		}
	}
	perSubject := make([][][]keyed, len(index))
	sizes := make([]int64, len(index))
	for i := range perSubject {
		perSubject[i] = make([][]keyed, len(ds.Tables))
	}
	byName := make(map[string]*TableRows, len(b.Tables))
	for i := range b.Tables {
		byName[b.Tables[i].Table] = &b.Tables[i]
	}
	for _, tr := range b.Tables {
		ti := slices.IndexFunc(ds.Tables, func(t *Table) bool { return t.Name == tr.Table })
		if ti < 0 {
			return nil, fmt.Errorf("digest: table %q is not in dataset %q", tr.Table, ds.Name)
		}
		t := ds.Tables[ti]
		order, err := columnOrder(t, tr.Columns)
		if err != nil {
			return nil, err
		}
		subj := -1
		var reached []string // the subjects of a path table's rows
		if t.Via != nil {
			if reached, err = batchSubjects(t, tr, byName); err != nil {
				return nil, err
			}
		} else if subj = slices.Index(tr.Columns, t.SubjectColumn); subj < 0 {
			return nil, fmt.Errorf("digest: batch of %s lacks subject column %q", t.Name, t.SubjectColumn)
		}
		pk := make([]int, len(t.PrimaryKey))
		for i, c := range t.PrimaryKey {
			if pk[i] = slices.Index(tr.Columns, c); pk[i] < 0 {
				return nil, fmt.Errorf("digest: batch of %s lacks key column %q", t.Name, c)
			}
		}
		for r, row := range tr.Rows {
			var s string
			if reached != nil {
				if s = reached[r]; s == "" {
					return nil, fmt.Errorf("digest: a row of %s reaches no subject of the batch through its path", t.Name)
				}
			} else if s, err = SubjectKey(row[subj]); err != nil {
				return nil, fmt.Errorf("digest: %s: %w", t.Name, err)
			}
			si, ok := index[s]
			if !ok {
				continue // a row of a subject outside the batch
			}
			e := keyed{off: len(buf)}
			for _, i := range pk {
				if buf, err = AppendValue(buf, row[i]); err != nil {
					return nil, fmt.Errorf("digest: %s.%s: %w", t.Name, tr.Columns[i], err)
				}
			}
			e.keyLen = len(buf) - e.off
			for _, i := range order {
				if buf, err = AppendValue(buf, row[i]); err != nil {
					return nil, fmt.Errorf("digest: %s.%s: %w", t.Name, tr.Columns[i], err)
				}
			}
			e.rowLen = len(buf) - e.off - e.keyLen
			perSubject[si][ti] = append(perSubject[si][ti], e)
			var size int64
			for _, v := range row {
				size += ValueSize(v)
			}
			sizes[si] += size
		}
	}
	key := func(e keyed) []byte { return buf[e.off : e.off+e.keyLen] }
	out := make(map[string]SubjectDigest, len(index))
	h := sha256.New()
	sums := make([][sha256.Size]byte, len(ds.Tables))
	counts := make([]int64, len(ds.Tables))
	for s, si := range index {
		for ti, rows := range perSubject[si] {
			slices.SortFunc(rows, func(a, b keyed) int { return bytes.Compare(key(a), key(b)) })
			sums[ti] = TableSum(h, ds.Tables[ti].Name, len(rows), func(yield func([]byte) bool) {
				for _, r := range rows {
					start := r.off + r.keyLen
					if !yield(buf[start : start+r.rowLen]) {
						return
					}
				}
			})
			counts[ti] = int64(len(rows))
		}
		out[s] = NewSubjectDigest(h, ds.Tables, sums, counts, sizes[si])
	}
	return out, nil
}

// TableSum is the digest of one subject's rows of one table, as
// SubjectDigest.Tables holds it: the table's name, the row count, then each
// row's length and values (encoded with AppendValue, in the order the table
// declares its columns), the rows in the order of their encoded primary
// keys. Every store's digests are made of it, so that equal rows digest
// alike whatever the engine. h is a SHA-256 hash to reuse; TableSum resets
// it first.
func TableSum(h hash.Hash, name string, rows int, values iter.Seq[[]byte]) [sha256.Size]byte {
	var n [8]byte
	h.Reset()
	h.Write([]byte(name))
	binary.BigEndian.PutUint64(n[:], uint64(rows))
	h.Write(n[:])
	for v := range values {
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write(v)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// NewSubjectDigest makes a subject's digest from its TableSums, its row
// counts per table (both in the order of tables) and the size of its
// values. h is a SHA-256 hash to reuse.
func NewSubjectDigest(h hash.Hash, tables []*Table, sums [][sha256.Size]byte, rows []int64, size int64) SubjectDigest {
	d := SubjectDigest{
		Tables: make(map[string][sha256.Size]byte, len(tables)),
		Rows:   make(map[string]int64, len(tables)),
		Bytes:  size,
	}
	h.Reset()
	for ti, t := range tables {
		d.Tables[t.Name] = sums[ti]
		d.Rows[t.Name] = rows[ti]
		h.Write(sums[ti][:])
	}
	h.Sum(d.Sum[:0])
	return d
}

// columnOrder maps the table's declared columns to their positions in cols.
func columnOrder(t *Table, cols []string) ([]int, error) {
	order := make([]int, len(t.Columns))
	for i, c := range t.Columns {
		if order[i] = slices.Index(cols, c.Name); order[i] < 0 {
			return nil, fmt.Errorf("digest: batch of %s lacks column %q", t.Name, c.Name)
		}
	}
	return order, nil
}

// SubjectKey returns the subject a subject column's value names: the one
// reading every digest uses, so that all of them agree.
func SubjectKey(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case int64:
		return fmt.Sprint(v), nil
	}
	return "", fmt.Errorf("subject value of type %T", v)
}

// Type tags of the canonical encoding.
const (
	tagNull   = 0
	tagInt    = 1
	tagFloat  = 2
	tagText   = 3
	tagBlob   = 4
	tagBool   = 5
	tagTime   = 6
	signFlip  = 1 << 63
	floatSign = 1 << 63
)

// AppendValue appends the canonical, engine-independent encoding of v to
// buf. Integers of every width encode alike, as do float32 and float64; the
// encoding of integers and floats sorts in numeric order.
func AppendValue(buf []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(buf, tagNull), nil
	case int64:
		return binary.BigEndian.AppendUint64(append(buf, tagInt), uint64(v)^signFlip), nil
	case int:
		return AppendValue(buf, int64(v))
	case int32:
		return AppendValue(buf, int64(v))
	case int16:
		return AppendValue(buf, int64(v))
	case int8:
		return AppendValue(buf, int64(v))
	case uint32:
		return AppendValue(buf, int64(v))
	case float64:
		bits := math.Float64bits(v)
		if bits&floatSign != 0 {
			bits = ^bits
		} else {
			bits |= floatSign
		}
		return binary.BigEndian.AppendUint64(append(buf, tagFloat), bits), nil
	case float32:
		return AppendValue(buf, float64(v))
	case string:
		buf = binary.AppendUvarint(append(buf, tagText), uint64(len(v)))
		return append(buf, v...), nil
	case []byte:
		buf = binary.AppendUvarint(append(buf, tagBlob), uint64(len(v)))
		return append(buf, v...), nil
	case bool:
		if v {
			return append(buf, tagBool, 1), nil
		}
		return append(buf, tagBool, 0), nil
	case time.Time:
		return binary.BigEndian.AppendUint64(append(buf, tagTime), uint64(v.UTC().UnixNano())^signFlip), nil
	}
	return buf, fmt.Errorf("no canonical encoding for %T", v)
}

// BatchDigest combines the per-subject digests of one table (or of whole
// subjects, for table "") into one digest, in subject order: what a receipt
// reports.
func BatchDigest(digests map[string]SubjectDigest, table string) string {
	ids := make([]string, 0, len(digests))
	for id := range digests {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
		if table == "" {
			sum := digests[id].Sum
			h.Write(sum[:])
		} else {
			sum := digests[id].Tables[table]
			h.Write(sum[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
