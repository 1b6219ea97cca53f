package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/domicile/domicile"
)

// The benchmark's data: 60 rows per subject in three tables, moved 100
// subjects per batch, like the measurements' users (~61 rows each).
const (
	benchBatch    = 100
	benchBatches  = 20
	benchProfiles = 1
	benchMessages = 24
	benchOrders   = 35
	benchRowsPer  = benchProfiles + benchMessages + benchOrders
)

var benchDDL = []string{
	`CREATE TABLE accounts (user_id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, email TEXT, imei TEXT, created DATETIME, balance REAL)`,
	`CREATE TABLE messages (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, peer TEXT NOT NULL, body TEXT, sent INTEGER NOT NULL, attachment BLOB)`,
	`CREATE TABLE orders (order_id INTEGER NOT NULL, line INTEGER NOT NULL, user_id TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL, price REAL, PRIMARY KEY (order_id, line))`,
	`CREATE INDEX messages_user ON messages (user_id, sent)`,
}

func benchSubjects(batch int) []string {
	out := make([]string, benchBatch)
	for i := range out {
		out[i] = fmt.Sprintf("user-%06d", batch*benchBatch+i)
	}
	return out
}

func benchRows(batch int) *domicile.Batch {
	b := &domicile.Batch{Tables: []domicile.TableRows{
		{Table: "accounts", Columns: []string{"user_id", "name", "email", "imei", "created", "balance"}},
		{Table: "messages", Columns: []string{"id", "user_id", "peer", "body", "sent", "attachment"}},
		{Table: "orders", Columns: []string{"order_id", "line", "user_id", "sku", "qty", "price"}},
	}}
	for i, s := range benchSubjects(batch) {
		n := int64(batch*benchBatch + i)
		b.Tables[0].Rows = append(b.Tables[0].Rows, []any{s, "Name " + s, s + "@example.com", fmt.Sprintf("35%013d", n), "2024-01-02 03:04:05", float64(n) / 3})
		for m := range int64(benchMessages) {
			var att any
			if m%6 == 0 {
				att = []byte(strings.Repeat("a", 64))
			}
			b.Tables[1].Rows = append(b.Tables[1].Rows, []any{n*1000 + m, s, fmt.Sprintf("user-%06d", (n+m)%5000), strings.Repeat("hello ", 10), 1700000000 + n*100 + m, att})
		}
		for o := range int64(benchOrders) {
			b.Tables[2].Rows = append(b.Tables[2].Rows, []any{n*10 + o/5, o%5 + 1, s, fmt.Sprintf("sku-%05d", o*37%1000), o%3 + 1, 9.99 + float64(o)})
		}
	}
	return b
}

// benchStore opens a store with the benchmark's tables, holding batches
// [0, fill) of subjects.
func benchStore(b *testing.B, region string, fill int) (*Store, *domicile.Dataset, string) {
	b.Helper()
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), region+".db")
	s, err := OpenStore(path, region)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for _, q := range benchDDL {
		if _, err := s.DB().ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	ds := &domicile.Dataset{Name: "bench"}
	for _, name := range []string{"accounts", "messages", "orders"} {
		t, err := s.DescribeTable(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		t.SubjectColumn = "user_id"
		ds.Tables = append(ds.Tables, t)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		b.Fatal(err)
	}
	for i := range fill {
		if err := s.WriteSubjects(ctx, ds, benchSubjects(i), benchRows(i)); err != nil {
			b.Fatal(err)
		}
	}
	return s, ds, path
}

func reportRows(b *testing.B, rows int64) {
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkWriteSubjects measures the copy's insert side: each batch
// replaces rows an earlier iteration wrote.
func BenchmarkWriteSubjects(b *testing.B) {
	ctx := context.Background()
	s, ds, _ := benchStore(b, "t", 0)
	batches := make([]*domicile.Batch, benchBatches)
	for i := range batches {
		batches[i] = benchRows(i)
	}
	var rows int64
	i := 0
	for b.Loop() {
		k := i % benchBatches
		if err := s.WriteSubjects(ctx, ds, benchSubjects(k), batches[k]); err != nil {
			b.Fatal(err)
		}
		rows += batches[k].Rows()
		i++
	}
	reportRows(b, rows)
}

func BenchmarkReadSubjects(b *testing.B) {
	ctx := context.Background()
	s, ds, _ := benchStore(b, "s", benchBatches)
	var rows int64
	i := 0
	for b.Loop() {
		batch, err := s.ReadSubjects(ctx, ds, benchSubjects(i%benchBatches))
		if err != nil {
			b.Fatal(err)
		}
		if batch.Rows() != benchBatch*benchRowsPer {
			b.Fatalf("read %d rows", batch.Rows())
		}
		rows += batch.Rows()
		i++
	}
	reportRows(b, rows)
}

// BenchmarkMove moves batches through the Store interface, as the mover
// does: read at the source, write at the destination, digest both ends,
// purge the source. Batches go back and forth between two stores.
func BenchmarkMove(b *testing.B) {
	b.Run("store", func(b *testing.B) { benchMove(b, true, true) })
	b.Run("store-nodigest", func(b *testing.B) { benchMove(b, true, false) })
	b.Run("copy", func(b *testing.B) { benchCopy(b, true) })
	b.Run("copy-nodigest", func(b *testing.B) { benchCopy(b, false) })
	// The raw limit: ATTACH, INSERT INTO … SELECT and DELETE per table, in
	// one transaction on the source's connection.
	b.Run("raw", func(b *testing.B) { benchMove(b, false, false) })
}

func benchMove(b *testing.B, store, digest bool) {
	ctx := context.Background()
	src, ds, srcPath := benchStore(b, "s", benchBatches)
	dst, _, dstPath := benchStore(b, "d", 0)
	ends := [2]*Store{src, dst}
	paths := [2]string{srcPath, dstPath}
	var rows int64
	i := 0
	for b.Loop() {
		k := i % benchBatches
		from := (i / benchBatches) % 2
		s, t := ends[from], ends[1-from]
		subjects := benchSubjects(k)
		if store {
			batch, err := s.ReadSubjects(ctx, ds, subjects)
			if err != nil {
				b.Fatal(err)
			}
			if err := t.WriteSubjects(ctx, ds, subjects, batch); err != nil {
				b.Fatal(err)
			}
			if digest {
				ds1, err := s.DigestSubjects(ctx, ds, subjects)
				if err != nil {
					b.Fatal(err)
				}
				ds2, err := t.DigestSubjects(ctx, ds, subjects)
				if err != nil {
					b.Fatal(err)
				}
				for _, id := range subjects {
					if !ds1[id].Equal(ds2[id]) {
						b.Fatalf("digest of %s differs", id)
					}
				}
			}
			n, err := s.PurgeSubjects(ctx, ds, subjects)
			if err != nil {
				b.Fatal(err)
			}
			rows += n
		} else {
			rows += rawMove(b, s, paths[1-from], ds, subjects)
		}
		i++
	}
	reportRows(b, rows)
}

// benchCopy moves batches as the mover does when both ends are SQLite
// files: CopySubjectsFrom, digests at both ends, PurgeMoved.
func benchCopy(b *testing.B, digest bool) {
	ctx := context.Background()
	src, ds, _ := benchStore(b, "s", benchBatches)
	dst, _, _ := benchStore(b, "d", 0)
	ends := [2]*Store{src, dst}
	var rows int64
	i := 0
	for b.Loop() {
		k := i % benchBatches
		from := (i / benchBatches) % 2
		s, t := ends[from], ends[1-from]
		subjects := benchSubjects(k)
		moveID := fmt.Sprintf("m%d", i)
		b.StopTimer()
		var in, moved []domicile.Ownership
		for _, id := range subjects {
			in = append(in, domicile.Ownership{Subject: id, Dataset: ds.Name, State: domicile.Incoming, MoveID: moveID})
			moved = append(moved, domicile.Ownership{Subject: id, Dataset: ds.Name, State: domicile.Moved, MoveID: moveID})
		}
		if err := t.SetOwnership(ctx, in); err != nil {
			b.Fatal(err)
		}
		if err := s.SetOwnership(ctx, moved); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := t.CopySubjectsFrom(ctx, s, ds, moveID, subjects); err != nil {
			b.Fatal(err)
		}
		if digest {
			ds1, err := s.DigestSubjects(ctx, ds, subjects)
			if err != nil {
				b.Fatal(err)
			}
			ds2, err := t.DigestSubjects(ctx, ds, subjects)
			if err != nil {
				b.Fatal(err)
			}
			for _, id := range subjects {
				if !ds1[id].Equal(ds2[id]) {
					b.Fatalf("digest of %s differs", id)
				}
			}
		}
		n, err := s.PurgeMoved(ctx, ds, moveID, subjects)
		if err != nil {
			b.Fatal(err)
		}
		if n != benchBatch*benchRowsPer {
			b.Fatalf("purged %d rows", n)
		}
		rows += n
		i++
	}
	reportRows(b, rows)
}

func rawMove(b *testing.B, s *Store, dstPath string, ds *domicile.Dataset, subjects []string) int64 {
	ctx := context.Background()
	conn, err := s.DB().Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS dst`, dstPath); err != nil {
		b.Fatal(err)
	}
	defer conn.ExecContext(ctx, `DETACH DATABASE dst`)
	in := "(" + placeholders(len(subjects)) + ")"
	args := make([]any, len(subjects))
	for i, s := range subjects {
		args[i] = s
	}
	var total int64
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO main.domicile_bypass (id) VALUES (NULL)`); err != nil {
		b.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO dst.domicile_bypass (id) VALUES (NULL)`); err != nil {
		b.Fatal(err)
	}
	for _, t := range ds.Tables {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dst.`+quoteIdent(t.Name)+` SELECT * FROM main.`+quoteIdent(t.Name)+` WHERE user_id IN `+in, args...); err != nil {
			b.Fatal(err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM main.`+quoteIdent(t.Name)+` WHERE user_id IN `+in, args...)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	tx.ExecContext(ctx, `DELETE FROM main.domicile_bypass`)
	tx.ExecContext(ctx, `DELETE FROM dst.domicile_bypass`)
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return total
}

func BenchmarkDigestSubjects(b *testing.B) {
	ctx := context.Background()
	s, ds, _ := benchStore(b, "s", benchBatches)
	var rows int64
	i := 0
	for b.Loop() {
		d, err := s.DigestSubjects(ctx, ds, benchSubjects(i%benchBatches))
		if err != nil {
			b.Fatal(err)
		}
		for _, sd := range d {
			for _, n := range sd.Rows {
				rows += n
			}
		}
		i++
	}
	reportRows(b, rows)
}
