package domicile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"iter"
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
// key (then by their encoded values, where keys are equal), so that
// neither the engine, the order of the rows nor SQL collation affects the
// result.
// The rows of a table with a path belong to the subject the path reaches
// through the batch's rows (see Path). Subjects with no rows still get a
// digest (of nothing).
func DigestBatch(ds *Dataset, subjects []string, b *Batch) (map[string]SubjectDigest, error) {
	byName := make(map[string]*TableRows, len(b.Tables))
	of := make(map[string][]*TableRows, len(b.Tables))
	for i := range b.Tables {
		tr := &b.Tables[i]
		if ds.Table(tr.Table) == nil {
			return nil, fmt.Errorf("digest: table %q is not in dataset %q", tr.Table, ds.Name)
		}
		byName[tr.Table] = tr
		of[tr.Table] = append(of[tr.Table], tr)
	}
	d := NewDigester(subjects, len(ds.Tables))
	defer d.Release()
	for ti, t := range ds.Tables {
		d.BeginTable()
		for _, tr := range of[t.Name] {
			if err := digestRows(d, t, tr, byName); err != nil {
				return nil, err
			}
		}
		d.FinishTable(ti, t.Name)
	}
	return d.Digests(ds.Tables), nil
}

// digestRows gives d the rows of tr, a batch's rows of t.
func digestRows(d *Digester, t *Table, tr *TableRows, byName map[string]*TableRows) error {
	order, err := columnOrder(t, tr.Columns)
	if err != nil {
		return err
	}
	subj := -1
	var reached []string // the subjects of a path table's rows
	if t.Via != nil {
		if reached, err = batchSubjects(t, *tr, byName); err != nil {
			return err
		}
	} else if subj = slices.Index(tr.Columns, t.SubjectColumn); subj < 0 {
		return fmt.Errorf("digest: batch of %s lacks subject column %q", t.Name, t.SubjectColumn)
	}
	pk := make([]int, len(t.PrimaryKey))
	for i, c := range t.PrimaryKey {
		if pk[i] = slices.Index(tr.Columns, c); pk[i] < 0 {
			return fmt.Errorf("digest: batch of %s lacks key column %q", t.Name, c)
		}
	}
	for r, row := range tr.Rows {
		var s string
		if reached != nil {
			if s = reached[r]; s == "" {
				return fmt.Errorf("digest: a row of %s reaches no subject of the batch through its path", t.Name)
			}
		} else if s, err = SubjectKey(row[subj]); err != nil {
			return fmt.Errorf("digest: %s: %w", t.Name, err)
		}
		si, ok := d.Subject(s)
		if !ok {
			continue // a row of a subject outside the batch
		}
		buf := d.Row()
		for _, i := range pk {
			if buf, err = AppendValue(buf, row[i]); err != nil {
				return fmt.Errorf("digest: %s.%s: %w", t.Name, tr.Columns[i], err)
			}
		}
		d.Key(buf)
		for _, i := range order {
			if buf, err = AppendValue(buf, row[i]); err != nil {
				return fmt.Errorf("digest: %s.%s: %w", t.Name, tr.Columns[i], err)
			}
		}
		var size int64
		for _, v := range row {
			size += ValueSize(v)
		}
		d.EndRow(si, buf, size)
	}
	return nil
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
		return AppendNull(buf), nil
	case int64:
		return AppendInt(buf, v), nil
	case int:
		return AppendInt(buf, int64(v)), nil
	case int32:
		return AppendInt(buf, int64(v)), nil
	case int16:
		return AppendInt(buf, int64(v)), nil
	case int8:
		return AppendInt(buf, int64(v)), nil
	case uint32:
		return AppendInt(buf, int64(v)), nil
	case float64:
		return AppendFloat(buf, v), nil
	case float32:
		return AppendFloat(buf, float64(v)), nil
	case string:
		buf = binary.AppendUvarint(append(buf, tagText), uint64(len(v)))
		return append(buf, v...), nil
	case []byte:
		return AppendBlob(buf, v), nil
	case bool:
		return AppendBool(buf, v), nil
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
