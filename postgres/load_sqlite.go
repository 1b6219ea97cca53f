package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// CopyFromer is what a pool, a connection and a transaction have in common
// for COPY … FROM STDIN.
type CopyFromer interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// CopyTableFrom copies every row of table t from db, another database/sql
// database with the same table (a SQLite file the example population was
// made in, say), into dst with COPY, and returns how many rows it copied.
// For tools that seed a store (the demo, the benchmark): domicile's
// triggers check the rows as they check any writer's, so seed a table
// before Install puts them in, or for subjects the store owns.
func CopyTableFrom(ctx context.Context, dst CopyFromer, db *sql.DB, t *domicile.Table) (int64, error) {
	cols := make([]string, len(t.Columns))
	quoted := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i], quoted[i] = c.Name, `"`+strings.ReplaceAll(c.Name, `"`, `""`)+`"`
	}
	rs, err := db.QueryContext(ctx, "SELECT "+strings.Join(quoted, ", ")+` FROM "`+strings.ReplaceAll(t.Name, `"`, `""`)+`"`)
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	var rows [][]any
	for rs.Next() {
		row := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return 0, err
		}
		rows = append(rows, row)
	}
	if err := rs.Err(); err != nil {
		return 0, err
	}
	n, err := dst.CopyFrom(ctx, pgx.Identifier{t.Name}, cols, pgx.CopyFromRows(rows))
	if err != nil {
		return n, fmt.Errorf("copy %s: %w", t.Name, err)
	}
	if n != int64(len(rows)) {
		return n, fmt.Errorf("copy %s: %d rows of %d", t.Name, n, len(rows))
	}
	return n, nil
}
