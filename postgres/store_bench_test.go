package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// BenchmarkPlainInsert measures INSERTs of an owned subject's rows by a
// plain writer, with domicile's triggers and without, committing every row
// (rows=1) or every 100 rows (rows=100): what the triggers cost a writer.
// Most of it is the row lock the guard takes (FOR SHARE), which the fence
// needs to drain writes in flight.
func BenchmarkPlainInsert(b *testing.B) {
	for _, c := range []struct {
		triggers bool
		perTx    int
	}{{false, 1}, {true, 1}, {false, 100}, {true, 100}} {
		name := "none"
		if c.triggers {
			name = "triggers"
		}
		b.Run(fmt.Sprintf("%s/rows=%d", name, c.perTx), func(b *testing.B) {
			ctx := context.Background()
			s, _ := openTestStore(b, "us-east")
			defer s.Close()
			if _, err := s.Pool().Exec(ctx, `CREATE TABLE t (id bigint PRIMARY KEY, user_id text NOT NULL, v text)`); err != nil {
				b.Fatal(err)
			}
			if c.triggers {
				ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{{Name: "t", SubjectColumn: "user_id"}}}
				if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
					b.Fatal(err)
				}
				if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "o", Dataset: "ds", State: domicile.Owned}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; {
				err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
					for range c.perTx {
						if _, err := tx.Exec(ctx, `INSERT INTO t (id, user_id, v) VALUES ($1, 'o', 'value')`, i); err != nil {
							return err
						}
						i++
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
