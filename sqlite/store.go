package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/domicile/domicile"
)

// Store is a region's store in one SQLite file.
//
// It keeps four connection pools on the file. Writes go through a pool of
// one connection, with domicile's triggers, or, for the mover's own writes
// (ownership transitions, copies, purges), through the mover's connection,
// whose triggers are off (see moverTx); a lock (lockWrites, a writeTurn),
// which every write of the store takes, transactions and single-statement
// row writes alike, lets one of the two write at a time: SQLite admits one
// writer at a time anyway, and queueing writers in Go is fairer and much
// faster than letting them spin in SQLite's busy handler, which sleeps in
// steps of milliseconds. The mover's ownership transitions go before the
// writers waiting. Reads use a pool of their own, and the mover's digests
// another (moverView), in DEFERRED transactions, in parallel with the
// writer (WAL). Other processes writing the file wait for the lock under
// busy_timeout.
type Store struct {
	db     *sql.DB   // writes: one connection
	mdb    *sql.DB   // the mover's writes: one connection at a time (see moverStmt)
	turn   writeTurn // one writer at a time, on db or mdb
	rdb    *sql.DB   // reads
	mrdb   *sql.DB   // the mover's reads (digests), apart from the others (see moverView)
	region string
	path   string // absolute path of the file, for ATTACH by another store
	ckpt   *checkpointer

	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	stmts    map[stmtKey]*sql.Stmt
	mstmts   map[string]*sql.Stmt    // prepared on mdb
	foreign  bool                    // the last moverTx found triggers not domicile's own
	fkeys    bool                    // and foreign keys
	factsAt  int64                   // the schema_version foreign and fkeys were read at, +1 (0: never read)
	datasets map[string]string       // table → dataset, as installed
	attached map[string]attachedFile // schema → source file attached to the write connection
}

type stmtKey struct {
	read  bool
	query string
}

var _ domicile.Store = (*Store)(nil)

// OpenStore opens the store of region in the SQLite file at path, creating
// the file if it is missing. Install creates domicile's tables.
func OpenStore(path, region string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The write connection never checkpoints in a commit; the
	// checkpointer does, beside it.
	db, err := openPool(path, noAutoCheckpoint)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	// The mover's pool: its transactions run one at a time (turn), on a
	// connection of their own; a second one is opened only to prepare the
	// statements that moverStmt keeps (see there).
	mdb, err := openPool(path, noAutoCheckpoint)
	if err != nil {
		db.Close()
		return nil, err
	}
	mdb.SetMaxOpenConns(2)
	mdb.SetMaxIdleConns(2)
	mdb.SetConnMaxLifetime(0)
	mdb.SetConnMaxIdleTime(0)
	rdb, err := openReadPool(path, max(4, 2*runtime.GOMAXPROCS(0)))
	if err != nil {
		mdb.Close()
		db.Close()
		return nil, err
	}
	mrdb, err := openReadPool(path, moverReaders)
	if err != nil {
		rdb.Close()
		mdb.Close()
		db.Close()
		return nil, err
	}
	ckpt, err := startCheckpointer(path, slog.Default())
	if err != nil {
		mrdb.Close()
		rdb.Close()
		mdb.Close()
		db.Close()
		return nil, err
	}
	return &Store{
		db:       db,
		mdb:      mdb,
		rdb:      rdb,
		mrdb:     mrdb,
		ckpt:     ckpt,
		region:   region,
		path:     abs,
		stmts:    make(map[stmtKey]*sql.Stmt),
		mstmts:   make(map[string]*sql.Stmt),
		datasets: make(map[string]string),
		attached: make(map[string]attachedFile),
	}, nil
}

// DB returns the store's write pool (one connection, with domicile's
// triggers), for tests and for tooling. Holding a transaction or open rows
// on it blocks the store's writes until they end; the mover's, on a
// connection of their own, wait for its write lock in SQLite's busy
// handler (busy_timeout).
func (s *Store) DB() *sql.DB { return s.db }

// Region names the region the store belongs to.
func (s *Store) Region() string { return s.region }

// Close stops the checkpointer and closes the store's statements and
// connections. Calling it again returns the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	ckptErr := s.ckpt.stop()
	s.mu.Lock()
	stmts, mstmts := s.stmts, s.mstmts
	s.stmts, s.mstmts = make(map[stmtKey]*sql.Stmt), make(map[string]*sql.Stmt)
	s.mu.Unlock()
	var errs []error
	for _, st := range stmts {
		errs = append(errs, st.Close())
	}
	for _, st := range mstmts {
		errs = append(errs, st.Close())
	}
	errs = append(errs, ckptErr, s.mrdb.Close(), s.rdb.Close(), s.mdb.Close(), s.db.Close())
	return errors.Join(errs...)
}

// stmt returns a prepared statement for query on the write pool (or the read
// pool if read is set), preparing it once.
func (s *Store) stmt(ctx context.Context, read bool, query string) (*sql.Stmt, error) {
	k := stmtKey{read, query}
	s.mu.Lock()
	st, ok := s.stmts[k]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	db := s.db
	if read {
		db = s.rdb
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.stmts[k]; ok {
		st.Close()
		return prev, nil
	}
	s.stmts[k] = st
	return st, nil
}

// beginner is what *sql.DB and *sql.Conn have in common for transactions.
type beginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// update runs fn in a write transaction (BEGIN IMMEDIATE), rolling back on
// error or panic.
func (s *Store) update(ctx context.Context, fn func(*sql.Tx) error) error {
	unlock, err := s.lockWrites(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return updateOn(ctx, s.db, fn)
}

// lockWrites waits for the store's turn to write, on the write connection
// or the mover's, and returns the function that ends it. Take it before a
// connection of either pool, never while holding one.
func (s *Store) lockWrites(ctx context.Context) (unlock func(), err error) {
	return s.lockWritesFor(ctx, false)
}

// lockWritesFor is lockWrites; with first, the write goes before the
// writers waiting (writeTurn).
func (s *Store) lockWritesFor(ctx context.Context, first bool) (unlock func(), err error) {
	if err := s.turn.lock(ctx, first); err != nil {
		return nil, err
	}
	return s.turn.unlock, nil
}

// updateOn runs fn in a write transaction begun on db.
func updateOn(ctx context.Context, db beginner, fn func(*sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			rollback(tx)
			panic(p)
		}
		if err != nil {
			rollback(tx)
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// bypass runs fn in a write transaction on the mover's connection, which
// passes domicile's triggers (see moverTx).
func (s *Store) bypass(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.bypassFor(ctx, false, fn)
}

// bypassFor is bypass; with first, the transaction goes before the writers
// waiting (writeTurn).
func (s *Store) bypassFor(ctx context.Context, first bool, fn func(*sql.Tx) error) error {
	unlock, err := s.lockWritesFor(ctx, first)
	if err != nil {
		return err
	}
	defer unlock()
	conn, err := s.mdb.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return s.moverTx(ctx, conn, fn)
}

// openReadPool opens a pool of at most n read-only connections on path.
func openReadPool(path string, n int) (*sql.DB, error) {
	db, err := openPool(path, "_pragma=query_only(1)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	return db, nil
}

// moverReaders is the size of the mover's read pool: the digests of as
// many workers at once (two by default), each inside a fence or after a
// copy; more wait for one of these, never for the API's reads.
const moverReaders = 4

// view runs fn in a read transaction.
func (s *Store) view(ctx context.Context, fn func(*sql.Tx) error) error {
	return viewOn(ctx, s.rdb, fn)
}

// moverView is view on the mover's own read pool: the digests a move reads
// inside its fence (and at the destination after its copy) do not wait
// for a connection that the API's reads hold.
func (s *Store) moverView(ctx context.Context, fn func(*sql.Tx) error) error {
	return viewOn(ctx, s.mrdb, fn)
}

func viewOn(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, readTx)
	if err != nil {
		return err
	}
	defer rollback(tx)
	return fn(tx)
}

// DescribeTable reads a table's columns and primary key.
func (s *Store) DescribeTable(ctx context.Context, name string) (*domicile.Table, error) {
	return describeTable(ctx, s.rdb, name)
}

func describeTable(ctx context.Context, q querierCtx, name string) (*domicile.Table, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid`, name)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	defer rows.Close()
	t := &domicile.Table{Name: name}
	var pk []string
	var pkPos []int
	for rows.Next() {
		var c domicile.Column
		var pos int
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &pos); err != nil {
			return nil, fmt.Errorf("describe %s: %w", name, err)
		}
		t.Columns = append(t.Columns, c)
		if pos > 0 {
			pk = append(pk, c.Name)
			pkPos = append(pkPos, pos)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	if len(t.Columns) == 0 {
		return nil, &domicile.Error{Code: domicile.CodeNotFound, Message: fmt.Sprintf("table %s not found", name), Err: domicile.ErrNotFound}
	}
	if len(pk) == 0 {
		return nil, domicile.Errorf(domicile.CodeInvalid, "table %s has no primary key", name)
	}
	t.PrimaryKey = make([]string, len(pk))
	for i, p := range pkPos {
		t.PrimaryKey[p-1] = pk[i]
	}
	refs, err := q.QueryContext(ctx, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?) ORDER BY 1`, name)
	if err != nil {
		return nil, fmt.Errorf("describe %s: foreign keys: %w", name, err)
	}
	defer refs.Close()
	for refs.Next() {
		var ref string
		if err := refs.Scan(&ref); err != nil {
			return nil, fmt.Errorf("describe %s: foreign keys: %w", name, err)
		}
		t.References = append(t.References, ref)
	}
	return t, refs.Err()
}

// Indexes returns the CREATE INDEX statements of a table, leaving out the
// indexes SQLite creates for constraints and domicile's own.
func (s *Store) Indexes(ctx context.Context, table string) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT sql FROM sqlite_schema
		WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL AND name NOT LIKE 'domicile\_%' ESCAPE '\'
		ORDER BY name`, table)
	if err != nil {
		return nil, fmt.Errorf("indexes of %s: %w", table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var q string
		if err := rows.Scan(&q); err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

const ownerColumns = `subject, dataset, state, region, epoch, move_id`

func scanOwnership(sc interface{ Scan(...any) error }, o *domicile.Ownership) error {
	return sc.Scan(&o.Subject, &o.Dataset, &o.State, &o.Region, &o.Epoch, &o.MoveID)
}

// FindOwnership returns a subject's ownership row for a dataset.
func (s *Store) FindOwnership(ctx context.Context, dataset, subject string) (domicile.Ownership, error) {
	var o domicile.Ownership
	st, err := s.stmt(ctx, true, `SELECT `+ownerColumns+` FROM domicile_owner WHERE subject = ? AND dataset = ?`)
	if err != nil {
		return o, err
	}
	err = scanOwnership(st.QueryRowContext(ctx, subject, dataset), &o)
	if errors.Is(err, sql.ErrNoRows) {
		return o, &domicile.Error{Code: domicile.CodeNotFound, Message: "ownership not found", Err: domicile.ErrNotFound}
	}
	return o, err
}

// ListOwnership calls fn for every ownership row of the dataset, in subject
// order.
func (s *Store) ListOwnership(ctx context.Context, dataset string, fn func(domicile.Ownership) error) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+ownerColumns+` FROM domicile_owner WHERE dataset = ? ORDER BY subject`, dataset)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var o domicile.Ownership
		if err := scanOwnership(rows, &o); err != nil {
			return err
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return rows.Err()
}

// SetOwnership writes the ownership rows in one transaction.
func (s *Store) SetOwnership(ctx context.Context, rows []domicile.Ownership) error {
	for _, o := range rows {
		if !o.State.Valid() {
			return domicile.Errorf(domicile.CodeInvalid, "ownership state %q is not one of owned, incoming, fenced, moved", o.State)
		}
		if o.Subject == "" || o.Dataset == "" {
			return domicile.Errorf(domicile.CodeInvalid, "ownership row needs a subject and a dataset")
		}
	}
	return s.update(ctx, func(tx *sql.Tx) error {
		if err := upsertOwnership(ctx, tx, rows); err != nil {
			return fmt.Errorf("set ownership: %w", err)
		}
		return nil
	})
}

// DeleteOwnership removes the ownership rows of the subjects.
func (s *Store) DeleteOwnership(ctx context.Context, dataset string, subjects []string) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		return inChunks([]any{dataset}, subjects, func(n int, args []any) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM domicile_owner WHERE dataset = ? AND subject IN (`+placeholders(n)+`)`, args...)
			return err
		})
	})
}

// chunkSize bounds the subjects bound into one IN list.
const chunkSize = 500

// paddedLen is n rounded up to a power of two, at most chunkSize.
func paddedLen(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return min(p, max(n, chunkSize))
}

// inChunks calls fn with the subjects in chunks of at most chunkSize: n
// subjects, bound after the lead arguments in args. n is padded to a power
// of two (or chunkSize) by repeating the chunk's last subject, which an IN
// list ignores: the statements then have a few texts, which the mover's
// connection prepares once each (moverStmt).
func inChunks(lead []any, subjects []string, fn func(n int, args []any) error) error {
	args := make([]any, 0, len(lead)+paddedLen(min(len(subjects), chunkSize)))
	args = append(args, lead...)
	for len(subjects) > 0 {
		n := min(len(subjects), chunkSize)
		args = args[:len(lead)]
		for _, s := range subjects[:n] {
			args = append(args, s)
		}
		for range paddedLen(n) - n {
			args = append(args, subjects[n-1])
		}
		if err := fn(len(args)-len(lead), args); err != nil {
			return err
		}
		subjects = subjects[n:]
	}
	return nil
}

// datasetOf returns the dataset that Install recorded for table.
func (s *Store) datasetOf(ctx context.Context, q querierCtx, table string) (string, error) {
	s.mu.Lock()
	ds, ok := s.datasets[table]
	s.mu.Unlock()
	if ok {
		return ds, nil
	}
	err := q.QueryRowContext(ctx, `SELECT value FROM domicile_settings WHERE key = ?`, tableKey(table)).Scan(&ds)
	if errors.Is(err, sql.ErrNoRows) || sqliteCode(err) == 1 /* SQLITE_ERROR: no such table */ {
		return "", domicile.Errorf(domicile.CodeInvalid, "table %s is not installed in region %s", table, s.region)
	}
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.datasets[table] = ds
	s.mu.Unlock()
	return ds, nil
}

func tableKey(table string) string { return "table:" + table + ":dataset" }

// refused returns the *Error for a trigger's refusal r of subject's write to
// a table of dataset; for Moved it reads where the subject went (the
// refusal rolled its statement back).
func (s *Store) refused(ctx context.Context, r error, dataset, subject string) error {
	var tomb *domicile.Ownership
	if r == domicile.ErrMoved && dataset != "" {
		if o, err := s.FindOwnership(ctx, dataset, subject); err == nil {
			tomb = &o
		}
	}
	return domicile.RefusalError(r, s.region, tomb)
}

// writeErr maps an error of a write of subject's row in table. A write
// whose key is held by a row of a subject not owned here (errKeyHeld, which
// the triggers raise for a row a REPLACE would take away) is a conflict,
// as when the key is another subject's.
func (s *Store) writeErr(ctx context.Context, err error, table, subject string) error {
	if r := refusal(err); r != nil {
		if r == errKeyHeld {
			return domicile.Errorf(domicile.CodeConflict, "a row of %s with this key belongs to another subject", table)
		}
		ds, _ := s.datasetOf(ctx, s.rdb, table)
		return s.refused(ctx, r, ds, subject)
	}
	if isConflict(err) {
		return &domicile.Error{Code: domicile.CodeConflict, Message: fmt.Sprintf("a row of %s with this key exists", table), Err: err}
	}
	return err
}
