// Package sqlite implements domicile's stores on SQLite files: a regional
// Store holding the datasets' tables with the ownership table and triggers
// that enforce fences inside the database, and the control store.
//
// It uses the pure-Go driver modernc.org/sqlite (driver name "sqlite").
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/domicile/domicile"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dsnParams are set on every pooled connection through the DSN, so that a
// connection database/sql opens later gets them too:
//
//   - busy_timeout first, so that the other pragmas wait for locks;
//   - WAL, so readers never block the writer nor the writer readers;
//   - synchronous=NORMAL: in WAL mode a commit survives a process crash and
//     only the last commits may be lost on power failure;
//   - _txlock=immediate: BeginTx takes the write lock at BEGIN, so a write
//     transaction never has to upgrade a read lock, which in WAL mode fails
//     at once with SQLITE_BUSY(_SNAPSHOT) instead of waiting. Transactions
//     begun with sql.TxOptions{ReadOnly: true} stay DEFERRED and take no
//     write lock: use them for reads.
var dsnParams = []string{
	"_pragma=busy_timeout(10000)",
	"_pragma=journal_mode(WAL)",
	"_pragma=synchronous(NORMAL)",
	"_pragma=foreign_keys(ON)",
	"_txlock=immediate",
}

// openDB opens the SQLite database at path, creating it if it is missing,
// with the connection settings of dsnParams.
func openDB(path string) (*sql.DB, error) {
	return openPool(path)
}

func openPool(path string, extra ...string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	// A file: URI; escape what would end the path early.
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	dsn := "file:" + p + "?" + strings.Join(append(append([]string(nil), dsnParams...), extra...), "&")
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.PingContext(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteString quotes an SQL string literal.
func quoteString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// sqliteCode returns the extended result code of a driver error, or 0.
func sqliteCode(err error) int {
	if e, ok := errors.AsType[*msqlite.Error](err); ok {
		return e.Code()
	}
	return 0
}

// refusals are the trigger refusals, by the fixed message each raises.
var refusals = []error{domicile.ErrFenced, domicile.ErrIncoming, domicile.ErrMoved, domicile.ErrUnknown, errKeyHeld}

// errKeyHeld is the refusal of a write that conflicts on a unique key with
// a row of a subject not owned here, which a REPLACE would take away
// (conflictChecks): a conflict for the writer, whose own state it does not
// tell, and which does not name the other subject's.
var errKeyHeld = errors.New("domicile: the key is held by a row of a subject not owned here")

// refusal returns the sentinel whose fixed message a trigger raised in err,
// or nil. RAISE(ABORT, msg) fails the statement with
// SQLITE_CONSTRAINT_TRIGGER, and the driver reports it as
// "<errstr>: <msg> (<code>)"; the message is the one text compared.
func refusal(err error) error {
	e, ok := errors.AsType[*msqlite.Error](err)
	if !ok || e.Code() != sqlite3.SQLITE_CONSTRAINT_TRIGGER {
		return nil
	}
	text, ok := strings.CutSuffix(e.Error(), fmt.Sprintf(" (%d)", e.Code()))
	if !ok {
		return nil
	}
	for _, r := range refusals {
		if text == r.Error() || strings.HasSuffix(text, ": "+r.Error()) {
			return r
		}
	}
	return nil
}

// isConflict reports whether err is a primary key or unique constraint
// violation.
func isConflict(err error) bool {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_ROWID:
		return true
	}
	return false
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// readTx is the option for read transactions: DEFERRED, no write lock.
var readTx = &sql.TxOptions{ReadOnly: true}

// rollback ends tx after a failure; the failure is what the caller reports.
func rollback(tx *sql.Tx) { _ = tx.Rollback() }

// querierCtx is what *sql.DB, *sql.Conn and *sql.Tx have in common.
type querierCtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// normalize returns a value read from SQLite as one of the types rows carry
// across domicile.Store: nil, int64, float64, string or []byte. The driver
// returns an empty BLOB as a nil []byte; it becomes an empty, non-nil one so
// that it is written back as a BLOB, not NULL.
func normalize(v any) any {
	switch x := v.(type) {
	case []byte:
		if x == nil {
			return []byte{}
		}
	case int:
		return int64(x)
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	}
	return v
}
