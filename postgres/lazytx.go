package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A lazyTx is a transaction whose BEGIN goes to the server with its first
// statement, in the same round trip, and whose COMMIT can go with its last
// writes (commitBatch). On these machines a round trip to a local server
// costs about 60 µs of CPU between client and server, which a move's
// fifteen-odd short transactions pay two and three times over; the
// statements are the same, in the same order, in the same transaction.
//
// Its first statement and BEGIN are one pipeline: if the statement fails,
// the transaction is left aborted, as after any failed statement, and the
// rollback ends it. A statement without arguments is sent as one simple
// query after the BEGIN, so that it may hold several statements, as pgx
// sends it. Conn returns the connection as is: a caller that uses it
// directly (COPY) calls begin first.
type lazyTx struct {
	conn  *pgx.Conn
	begin string // the BEGIN statement
	state txState
}

type txState int

const (
	txIdle  txState = iota // BEGIN not sent
	txOpen                 // BEGIN sent
	txEnded                // committed or rolled back
)

var errTxEnded = errors.New("transaction has ended")

// beginSQL returns the BEGIN statement of opts.
func beginSQL(opts pgx.TxOptions) string {
	q := "BEGIN"
	switch opts.IsoLevel {
	case pgx.Serializable:
		q += " ISOLATION LEVEL SERIALIZABLE"
	case pgx.RepeatableRead:
		q += " ISOLATION LEVEL REPEATABLE READ"
	case pgx.ReadCommitted:
		q += " ISOLATION LEVEL READ COMMITTED"
	case pgx.ReadUncommitted:
		q += " ISOLATION LEVEL READ UNCOMMITTED"
	}
	switch opts.AccessMode {
	case pgx.ReadOnly:
		q += " READ ONLY"
	case pgx.ReadWrite:
		q += " READ WRITE"
	}
	return q
}

// inLazyTx runs fn in a lazyTx on a connection of pool, committing if fn
// returns nil (unless fn committed already, with commitBatch) and rolling
// back on error or panic.
func inLazyTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release() // a connection left inside a transaction is destroyed
	return runTx(ctx, &lazyTx{conn: c.Conn(), begin: beginSQL(opts)}, fn)
}

// start sends BEGIN alone, if it has not gone yet.
func (t *lazyTx) start(ctx context.Context) error {
	switch t.state {
	case txEnded:
		return errTxEnded
	case txOpen:
		return nil
	}
	t.state = txOpen
	_, err := t.conn.Exec(ctx, t.begin)
	return err
}

// begin makes sure tx's BEGIN has gone to the server, for a caller about
// to use its connection directly.
func begin(ctx context.Context, tx pgx.Tx) error {
	if t, ok := tx.(*lazyTx); ok {
		return t.start(ctx)
	}
	return nil
}

func (t *lazyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	switch t.state {
	case txEnded:
		return pgconn.CommandTag{}, errTxEnded
	case txOpen:
		return t.conn.Exec(ctx, sql, args...)
	}
	if len(args) == 0 {
		// pgx sends a statement without arguments as a simple query,
		// which may hold several: BEGIN goes first in the same one. The
		// tag is the last statement's.
		t.state = txOpen // from here on the server may be inside the transaction
		return t.conn.Exec(ctx, t.begin+";\n"+sql)
	}
	var tag pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	err := t.SendBatch(ctx, b).Close() // with the BEGIN
	return tag, err
}

func (t *lazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	switch t.state {
	case txEnded:
		return nil, errTxEnded
	case txOpen:
		return t.conn.Query(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := t.SendBatch(ctx, b)
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (t *lazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := t.Query(ctx, sql, args...)
	return &lazyRow{rows: rows, err: err}
}

// SendBatch sends b, with BEGIN before it if it has not gone yet; the
// results are b's alone.
func (t *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	switch t.state {
	case txEnded:
		return &endedResults{}
	case txOpen:
		return t.conn.SendBatch(ctx, b)
	}
	t.state = txOpen
	withBegin := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, 1+len(b.QueuedQueries))}
	withBegin.Queue(t.begin)
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	return &afterBegin{BatchResults: t.conn.SendBatch(ctx, withBegin)}
}

func (t *lazyTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.start(ctx); err != nil {
		return 0, err
	}
	return t.conn.CopyFrom(ctx, table, columns, src)
}

func (t *lazyTx) Commit(ctx context.Context) error {
	switch t.state {
	case txEnded:
		return nil // committed by commitBatch, or nothing was sent
	case txIdle:
		t.state = txEnded
		return nil
	}
	tag, err := t.conn.Exec(ctx, "COMMIT")
	if err != nil {
		return err // left open: the rollback ends it
	}
	t.state = txEnded
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

func (t *lazyTx) Rollback(ctx context.Context) error {
	if t.state != txOpen {
		t.state = txEnded
		return nil
	}
	t.state = txEnded
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		// The connection's state is unknown: the pool destroys it.
		_ = t.conn.Close(ctx)
		return err
	}
	return nil
}

func (t *lazyTx) Begin(ctx context.Context) (pgx.Tx, error) {
	return nil, errors.New("savepoints are not supported in this transaction")
}

func (t *lazyTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Prepare(ctx, name, sql)
}

func (t *lazyTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

func (t *lazyTx) Conn() *pgx.Conn { return t.conn }

// commitBatch sends b's statements and the commit of tx, in one round trip
// where tx is a lazyTx; b's queued callbacks see the results. If one of b's
// statements fails, the server skips the rest and the commit, and the
// transaction is left aborted for the rollback.
//
// The callbacks run as the results are read, after the whole batch has
// gone: an error a callback returns does not stop the COMMIT. They may
// only take in what the caller reads (their errors come back, but the
// transaction has committed); a check that must hold before the commit
// goes in a batch of its own, before commitBatch.
func commitBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	t, ok := tx.(*lazyTx)
	if !ok {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if t.state == txEnded {
		return errTxEnded
	}
	var tag pgconn.CommandTag
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		if t.conn.PgConn().TxStatus() == 'I' {
			// Out of the transaction: a callback failed after the
			// COMMIT, or the COMMIT failed. Nothing more goes in it.
			t.state = txEnded
		}
		return err
	}
	t.state = txEnded
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// afterBegin is the results of a batch sent after a BEGIN of its own,
// whose result it skips.
type afterBegin struct {
	pgx.BatchResults
	skipped bool
}

func (r *afterBegin) skip() error {
	if r.skipped {
		return nil
	}
	r.skipped = true
	_, err := r.BatchResults.Exec()
	return err
}

func (r *afterBegin) Exec() (pgconn.CommandTag, error) {
	if err := r.skip(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return r.BatchResults.Exec()
}

func (r *afterBegin) Query() (pgx.Rows, error) {
	if err := r.skip(); err != nil {
		return nil, err
	}
	return r.BatchResults.Query()
}

func (r *afterBegin) QueryRow() pgx.Row {
	if err := r.skip(); err != nil {
		return &lazyRow{err: err}
	}
	return r.BatchResults.QueryRow()
}

// endedResults is a batch's results after the transaction ended.
type endedResults struct{}

func (endedResults) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, errTxEnded }
func (endedResults) Query() (pgx.Rows, error)         { return nil, errTxEnded }
func (endedResults) QueryRow() pgx.Row                { return &lazyRow{err: errTxEnded} }
func (endedResults) Close() error                     { return errTxEnded }
func (endedResults) Tx() pgx.Tx                       { return nil }

// batchRows are the rows of a one-query batch, which they close with
// themselves: when read to the end, or closed.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// lazyRow is QueryRow's row, read as pgx reads one.
type lazyRow struct {
	rows pgx.Rows
	err  error
}

func (r *lazyRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
