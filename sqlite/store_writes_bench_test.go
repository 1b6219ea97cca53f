package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/domicile/domicile"
)

// BenchmarkPlainWrites: an application's writes through its own
// connection, with domicile's triggers (installed) and without (the same
// tables, not installed): each op inserts a message, updates it and
// deletes it, for an owned subject, in one transaction of 100 such rows.
func BenchmarkPlainWrites(b *testing.B) {
	for _, c := range []struct{ installed, prepared bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		installed, prepared := c.installed, c.prepared
		b.Run(fmt.Sprintf("triggers=%v/prepared=%v", installed, prepared), func(b *testing.B) {
			ctx := context.Background()
			path := filepath.Join(b.TempDir(), "a.db")
			s, err := OpenStore(path, "cn-beijing")
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			app, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)")
			if err != nil {
				b.Fatal(err)
			}
			defer app.Close()
			app.SetMaxOpenConns(1)
			for _, q := range benchDDL {
				if _, err := app.Exec(q); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := app.Exec(`CREATE UNIQUE INDEX accounts_email ON accounts (email)`); err != nil {
				b.Fatal(err)
			}
			if installed {
				ds := &domicile.Dataset{Name: "shop"}
				for _, n := range []string{"accounts", "messages", "orders"} {
					tb, err := s.DescribeTable(ctx, n)
					if err != nil {
						b.Fatal(err)
					}
					tb.SubjectColumn = "user_id"
					ds.Tables = append(ds.Tables, tb)
				}
				if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
					b.Fatal(err)
				}
				var own []domicile.Ownership
				for i := range 100 {
					own = append(own, domicile.Ownership{Subject: fmt.Sprintf("u%d", i), Dataset: "shop", State: domicile.Owned})
				}
				if err := s.SetOwnership(ctx, own); err != nil {
					b.Fatal(err)
				}
			}
			queries := []string{
				`INSERT INTO messages (id, user_id, peer, body, sent) VALUES (?, ?, 'p', 'hello', 1)`,
				`INSERT INTO accounts (user_id, name, email) VALUES (?, 'n', ?) ON CONFLICT (user_id) DO UPDATE SET name = excluded.name`,
				`UPDATE messages SET body = 'changed' WHERE id = ?`,
				`DELETE FROM messages WHERE id = ?`,
			}
			var stmts []*sql.Stmt
			if prepared {
				for _, q := range queries {
					st, err := app.Prepare(q)
					if err != nil {
						b.Fatal(err)
					}
					defer st.Close()
					stmts = append(stmts, st)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				tx, err := app.Begin()
				if err != nil {
					b.Fatal(err)
				}
				for r := range 100 {
					id := i*100 + r
					u := fmt.Sprintf("u%d", r)
					for k, args := range [][]any{{id, u}, {u, u + "@x"}, {id}, {id}} {
						var err error
						if prepared {
							_, err = tx.Stmt(stmts[k]).Exec(args...)
						} else {
							_, err = tx.Exec(queries[k], args...)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
