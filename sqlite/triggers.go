package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// The mover's own writes must pass domicile's triggers. They run on a
// connection of their own, the mover's (Store.mdb), whose triggers are
// switched off (SQLITE_DBCONFIG_ENABLE_TRIGGER) when every trigger in the
// database is domicile's own: a statement prepared there has no trigger
// program at all, where a bypass row still runs every trigger once per row
// to find the row and skip the check. The flag belongs to that connection
// alone: every other connection, the store's own write connection and any
// other process's, keeps its triggers, and a fence refuses their writes.
// The mover's connection is never switched back: switching expires every
// statement prepared on the connection, and the mover keeps its statements
// (moverStmt). Nothing but the mover's writes (Store.bypass: Transition,
// the copy, WriteSubjects, ApplyRows, the purge, ClearStaleColumns) ever
// runs on it.
//
// The driver does not export sqlite3_db_config, so triggersSwitch reaches the
// connection's handle by reflection. If a driver upgrade changes the
// connection's shape, the switch reports unsupported and moverTx falls back
// to the bypass row, which every SQLite writer understands
// (TestTriggersSwitch fails loudly in that case, so it is noticed).

// triggersSwitch sets the trigger flag of a modernc.org/sqlite driver
// connection. ok is false, with nothing changed, when dc is not the
// connection it knows.
func triggersSwitch(dc any, on bool) (ok bool, err error) {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false, nil
	}
	e := v.Elem()
	fdb, ftls := e.FieldByName("db"), e.FieldByName("tls")
	if !fdb.IsValid() || !ftls.IsValid() || fdb.Kind() != reflect.Uintptr || ftls.Type() != reflect.TypeFor[*libc.TLS]() {
		return false, nil
	}
	db := *(*uintptr)(unsafe.Pointer(fdb.UnsafeAddr()))
	tls := *(**libc.TLS)(unsafe.Pointer(ftls.UnsafeAddr()))
	if db == 0 || tls == nil {
		return false, nil
	}
	const slot = 8 // a va_list argument's stride
	bp := libc.Xmalloc(tls, types.Size_t(3*slot))
	if bp == 0 {
		return false, fmt.Errorf("sqlite3_db_config: out of memory")
	}
	defer libc.Xfree(tls, bp)
	res := bp + 2*slot // where SQLite writes the flag's new value
	libc.Xmemset(tls, res, 0xff, 4)
	var want int32
	if on {
		want = 1
	}
	if rc := sqlite3.Xsqlite3_db_config(tls, db, sqlite3.SQLITE_DBCONFIG_ENABLE_TRIGGER, libc.VaList(bp, want, res)); rc != sqlite3.SQLITE_OK {
		return true, fmt.Errorf("sqlite3_db_config(ENABLE_TRIGGER, %d): code %d", want, rc)
	}
	if got := int32(binary.NativeEndian.Uint32(libc.GoBytes(res, 4))); got != want {
		return true, fmt.Errorf("sqlite3_db_config(ENABLE_TRIGGER, %d) left it at %d", want, got)
	}
	return true, nil
}

// foreignTriggers counts the triggers in the main schema that are not
// domicile's own.
const foreignTriggers = `SELECT count(*) FROM main.sqlite_schema
	WHERE type = 'trigger' AND name NOT LIKE 'domicile\_%' ESCAPE '\'`

// schemaFacts counts, in the main schema, the triggers that are not
// domicile's own and the foreign keys.
const schemaFacts = `SELECT (` + foreignTriggers + `),
	(SELECT count(*) FROM main.sqlite_schema AS s, pragma_foreign_key_list(s.name) WHERE s.type = 'table')`

// errForeignTriggers ends a moverTx attempt made with triggers off that
// found triggers of the application's: it is made again with them on.
var errForeignTriggers = errors.New("the database has triggers of its own")

// moverTx runs fn in a write transaction on conn, the mover's connection,
// that passes domicile's triggers: with the connection's triggers off, or,
// when the database has triggers that are not domicile's own (an audit
// table, a full-text index that the purge must clean), with them on and a
// bypass row, inserted first and deleted before the commit, so that those
// fire for the mover's writes as for anyone's and no other transaction
// ever sees the row. Which triggers there are is read inside the
// transaction, where no one can change them; the caller holds lockWrites.
func (s *Store) moverTx(ctx context.Context, conn *sql.Conn, fn func(*sql.Tx) error) error {
	s.mu.Lock()
	on := s.foreign
	s.mu.Unlock()
	err := s.moverTxOnce(ctx, conn, on, fn)
	if errors.Is(err, errForeignTriggers) {
		err = s.moverTxOnce(ctx, conn, true, fn)
	}
	return err
}

func (s *Store) moverTxOnce(ctx context.Context, conn *sql.Conn, on bool, fn func(*sql.Tx) error) error {
	var switched bool
	if err := conn.Raw(func(dc any) (err error) {
		// A no-op, expiring nothing, when the flag is already so.
		switched, err = triggersSwitch(dc, on)
		if err != nil {
			// Leave no doubt about the connection's state.
			return driver.ErrBadConn
		}
		return nil
	}); err != nil {
		return fmt.Errorf("switch triggers: %w", err)
	}
	off := switched && !on
	return updateOn(ctx, conn, func(tx *sql.Tx) error {
		foreign, err := s.readSchemaFacts(ctx, tx)
		if err != nil {
			return fmt.Errorf("bypass: %w", err)
		}
		if off {
			if foreign {
				return errForeignTriggers
			}
			return fn(tx)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO domicile_bypass (id) VALUES (NULL)`); err != nil {
			return fmt.Errorf("bypass: %w", err)
		}
		if err := fn(tx); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM domicile_bypass`)
		return err
	})
}

// readSchemaFacts reads, in tx (a transaction on the mover's connection,
// holding the write lock, so the schema cannot change under it), whether the
// database has triggers that are not domicile's own, and records that and
// whether it has foreign keys (keys). Counting them scans the schema and
// every table's foreign keys; the schema cookie (schema_version, which
// every change of the schema bumps) tells when the last count still holds.
func (s *Store) readSchemaFacts(ctx context.Context, tx *sql.Tx) (foreign bool, err error) {
	q := s.cached(tx)
	var version int64
	if err := q.QueryRowContext(ctx, `PRAGMA main.schema_version`).Scan(&version); err != nil {
		return false, err
	}
	s.mu.Lock()
	if s.factsAt == version+1 {
		foreign = s.foreign
		s.mu.Unlock()
		return foreign, nil
	}
	s.mu.Unlock()
	var nforeign, nkeys int
	if err := q.QueryRowContext(ctx, schemaFacts).Scan(&nforeign, &nkeys); err != nil {
		return false, err
	}
	s.mu.Lock()
	s.foreign, s.fkeys, s.factsAt = nforeign > 0, nkeys > 0, version+1
	s.mu.Unlock()
	return nforeign > 0, nil
}

// keys reports whether the database had foreign keys when the mover's
// transaction in progress began (moverTx); no one else can add one before
// it ends.
func (s *Store) keys() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fkeys
}

// maxMoverStmts bounds the statements the mover's pool keeps prepared.
const maxMoverStmts = 256

// cached returns tx, a transaction on the mover's connection, with its
// statements prepared once and kept (moverStmt).
func (s *Store) cached(tx *sql.Tx) querierCtx { return cachedTx{tx, s} }

// cachedTx runs statements of a transaction on the mover's connection with
// the statements moverStmt keeps.
type cachedTx struct {
	tx *sql.Tx
	s  *Store
}

func (c cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.s.moverStmt(ctx, c.tx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (c cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.s.moverStmt(ctx, c.tx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (c cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.s.moverStmt(ctx, c.tx, query)
	if err != nil {
		// A Row carrying the error: the query fails again, unprepared.
		return c.tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// moverStmt returns query prepared for tx, a transaction on the mover's
// connection, from a statement the store keeps: prepared once on the pool,
// then by database/sql once per connection, and reused by every later
// transaction on it. Preparing costs as much as running one of the mover's
// statements over a batch. Pool statements are prepared on a connection
// that is free, and tx holds one: the pool has a second, which prepares
// them (once each) and is otherwise idle. The mover's statements bind
// their subjects in IN lists padded to a few lengths (inChunks), so that
// few texts recur.
func (s *Store) moverStmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	st, ok := s.mstmts[query]
	s.mu.Unlock()
	if !ok {
		var err error
		if st, err = s.mdb.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if len(s.mstmts) >= maxMoverStmts {
			for q, old := range s.mstmts {
				old.Close()
				delete(s.mstmts, q)
			}
		}
		s.mstmts[query] = st
		s.mu.Unlock()
	}
	return tx.StmtContext(ctx, st), nil
}
