package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// The mover's own writes must pass domicile's triggers. The fast way, when
// every trigger in the database is domicile's own, is to switch triggers
// off on the mover's connection for the length of its transaction
// (SQLITE_DBCONFIG_ENABLE_TRIGGER): a statement prepared then
// has no trigger program at all, where a bypass row still runs every
// trigger once per row to find the row and skip the check. No other
// connection is affected, and the store's single write connection is
// switched back on before anyone else gets it; if that fails, the connection
// is discarded.
//
// The driver does not export sqlite3_db_config, so triggersSwitch reaches the
// connection's handle by reflection. If a driver upgrade changes the
// connection's shape, the switch reports unsupported and bypassOn falls back
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

// withTriggersOff runs fn on conn with its triggers switched off, if the
// driver allows it; off reports whether it did. The triggers are switched on
// again after fn; if that fails, the connection is discarded.
func withTriggersOff(conn *sql.Conn, fn func(off bool) error) error {
	var off bool
	if err := conn.Raw(func(dc any) (err error) {
		off, err = triggersSwitch(dc, false)
		if err != nil {
			// Leave no doubt about the connection's state.
			return driver.ErrBadConn
		}
		return nil
	}); err != nil {
		return fmt.Errorf("switch triggers off: %w", err)
	}
	if !off {
		return fn(false)
	}
	defer conn.Raw(func(dc any) error {
		if ok, err := triggersSwitch(dc, true); !ok || err != nil {
			return driver.ErrBadConn // discarded: never handed out with triggers off
		}
		return nil
	})
	return fn(true)
}

// foreignTriggers counts the triggers in the main schema that are not
// domicile's own.
const foreignTriggers = `SELECT count(*) FROM main.sqlite_schema
	WHERE type = 'trigger' AND name NOT LIKE 'domicile\_%' ESCAPE '\'`

// bypassOn runs fn in a write transaction begun on db that passes
// domicile's triggers: with the triggers switched off on its connection, or
// else with a bypass row, inserted first and deleted before the commit, so
// that no other transaction ever sees it.
func bypassOn(ctx context.Context, db beginner, fn func(*sql.Tx) error) error {
	conn, ok := db.(*sql.Conn)
	if !ok {
		pool, ok := db.(*sql.DB)
		if !ok {
			return fmt.Errorf("bypass on a %T", db)
		}
		c, err := pool.Conn(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		conn = c
	}
	// Switching triggers off would silence the application's own triggers
	// too (an audit table, a full-text index that the purge must clean):
	// with any trigger in the database that is not domicile's, the mover
	// uses the bypass row, which lets those fire.
	var foreign int
	if err := conn.QueryRowContext(ctx, foreignTriggers).Scan(&foreign); err != nil {
		return fmt.Errorf("bypass: %w", err)
	}
	run := withTriggersOff
	if foreign > 0 {
		run = func(_ *sql.Conn, fn func(off bool) error) error { return fn(false) }
	}
	return run(conn, func(off bool) error {
		return updateOn(ctx, conn, func(tx *sql.Tx) error {
			if off {
				return fn(tx)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO domicile_bypass (id) VALUES (NULL)`); err != nil {
				return fmt.Errorf("bypass: %w", err)
			}
			if err := fn(tx); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM domicile_bypass`)
			return err
		})
	})
}
