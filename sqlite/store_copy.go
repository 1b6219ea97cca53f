package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/domicile/domicile"
)

var _ domicile.SubjectCopier = (*Store)(nil)

// maxAttached bounds the source files a store keeps attached to its write
// connection; SQLite's own limit is 10 by default.
const maxAttached = 6

// CopySubjectsFrom copies the subjects' rows of ds from src, a Store on
// another SQLite file, with WriteSubjects' semantics, without passing the
// rows through Go: in one write transaction on this store's write
// connection, with the source file attached read-only, it checks that every
// subject is Incoming under moveID here, deletes the subjects' rows left by
// an earlier attempt, and runs one INSERT … SELECT per table. A key held by
// another subject fails the copy with CodeConflict, nothing written.
//
// It returns an error wrapping domicile.ErrNotSupported, having changed
// nothing, when src is not a *Store, is this store's own file, or cannot be
// attached.
func (s *Store) CopySubjectsFrom(ctx context.Context, src domicile.Store, ds *domicile.Dataset, moveID string, subjects []string) (int64, error) {
	from, ok := src.(*Store)
	if !ok {
		return 0, fmt.Errorf("copy into region %s from a %T: %w", s.region, src, domicile.ErrNotSupported)
	}
	if moveID == "" {
		return 0, domicile.Errorf(domicile.CodeInvalid, "a copy needs a move id")
	}
	srcInfo, err := os.Stat(from.path)
	if err != nil {
		return 0, fmt.Errorf("copy into region %s: source file: %v: %w", s.region, err, domicile.ErrNotSupported)
	}
	if dstInfo, err := os.Stat(s.path); err != nil || os.SameFile(srcInfo, dstInfo) {
		return 0, fmt.Errorf("copy into region %s from its own file: %w", s.region, domicile.ErrNotSupported)
	}
	tables, err := s.describedDataset(ctx, ds)
	if err != nil {
		return 0, err
	}
	if len(subjects) == 0 {
		return 0, nil
	}
	// ATTACH is refused inside a transaction: take the mover's
	// connection, attach (once per connection), then begin on it.
	unlock, err := s.lockWrites(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	conn, err := s.mdb.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	schema, err := s.attach(ctx, conn, from.path, srcInfo)
	if err != nil {
		return 0, fmt.Errorf("copy into region %s: attach %s: %v: %w", s.region, from.path, err, domicile.ErrNotSupported)
	}
	var total int64
	err = s.moverTx(ctx, conn, func(tx *sql.Tx) error {
		total = 0
		q := s.cached(tx)
		in, err := subjectsIn(ctx, q, ds.Name, moveID, domicile.Incoming, subjects)
		if err != nil {
			return err
		}
		if len(in) != len(subjects) {
			return &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrPrecondition,
				Message: fmt.Sprintf("%d of %d subjects are not incoming under move %s", len(subjects)-len(in), len(subjects), moveID)}
		}
		if err := deferKeys(ctx, q); err != nil {
			return err
		}
		described := &domicile.Dataset{Name: ds.Name, Tables: tables}
		if _, err := deleteDataset(ctx, q, ds, tables, subjects); err != nil {
			return fmt.Errorf("clear: %w", err)
		}
		for _, t := range described.InsertOrder(nil) {
			n, err := copyTable(ctx, tx, schema, t, subjects)
			if err != nil {
				if isConflict(err) {
					return &domicile.Error{Code: domicile.CodeConflict,
						Message: fmt.Sprintf("a key of %s is held by another subject", t.Name), Err: err}
				}
				return fmt.Errorf("copy %s: %w", t.Name, err)
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("copy %d subjects of %s from region %s to %s: %w", len(subjects), ds.Name, from.region, s.region, err)
	}
	return total, nil
}

// copyTable inserts the subjects' rows of t from the attached schema into
// main, naming the columns of the dataset's description at both ends.
func copyTable(ctx context.Context, tx *sql.Tx, schema string, t *domicile.Table, subjects []string) (int64, error) {
	prefix := copyPrefix(schema, t)
	return execSubjects(ctx, tx, func(n int) string { return prefix + subjectIn(t, schema, n) }, subjects)
}

// copyPrefix is the INSERT … SELECT of t's columns from the attached schema
// into main, up to the WHERE that picks the subjects.
func copyPrefix(schema string, t *domicile.Table) string {
	quoted := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		quoted[i] = quoteIdent(c.Name)
	}
	cols := strings.Join(quoted, ", ")
	return "INSERT INTO main." + quoteIdent(t.Name) + " (" + cols + ") SELECT " + cols +
		" FROM " + quoteIdent(schema) + "." + quoteIdent(t.Name) + " WHERE "
}

// attachedFile is a source file attached to the write connection.
type attachedFile struct {
	path string
	info os.FileInfo
}

// attach makes the file at path readable on conn under a schema name of its
// own, so that copies from several sources share the connection, and returns
// the name. The file stays attached for later copies; it is attached again
// if the file at path was replaced, and the other sources are detached when
// too many are. Attached read-only, the source takes no write lock when the
// connection begins a write transaction.
func (s *Store) attach(ctx context.Context, conn *sql.Conn, path string, info os.FileInfo) (string, error) {
	sum := sha256.Sum256([]byte(path))
	schema := "domicile_src_" + hex.EncodeToString(sum[:6])
	attached, err := attachedSchemas(ctx, conn)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	known, ok := s.attached[schema]
	s.mu.Unlock()
	if attached[schema] && ok && known.path == path && os.SameFile(known.info, info) {
		return schema, nil
	}
	var detach []string
	if attached[schema] {
		detach = append(detach, schema)
	}
	if len(attached) >= maxAttached {
		for name := range attached {
			if name != schema {
				detach = append(detach, name)
			}
		}
	}
	for _, name := range detach {
		if _, err := conn.ExecContext(ctx, `DETACH DATABASE `+quoteIdent(name)); err != nil {
			return "", err
		}
	}
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS `+quoteIdent(schema), "file:"+p+"?mode=ro"); err != nil {
		return "", err
	}
	// Reading the schema now reports a file that is not a database here,
	// not in the middle of the copy.
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM `+quoteIdent(schema)+`.sqlite_schema`).Scan(&n); err != nil {
		_, derr := conn.ExecContext(ctx, `DETACH DATABASE `+quoteIdent(schema))
		return "", errors.Join(err, derr)
	}
	s.mu.Lock()
	s.attached[schema] = attachedFile{path: path, info: info}
	s.mu.Unlock()
	return schema, nil
}

// attachedSchemas returns the names of domicile's source schemas attached
// to conn.
func attachedSchemas(ctx context.Context, conn *sql.Conn) (map[string]bool, error) {
	rows, err := conn.QueryContext(ctx, `SELECT name FROM pragma_database_list`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]bool)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		if strings.HasPrefix(name, "domicile_src_") {
			out[name] = true
		}
	}
	return out, rows.Err()
}
