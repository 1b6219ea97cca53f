package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is a region's store in a PostgreSQL database, reached through a
// connection pool. Tables are found on the pool's search_path.
type Store struct {
	pool   *pgxpool.Pool
	region string

	closeOnce sync.Once

	mu       sync.Mutex
	capture  string                 // SetCapture's mode; "": CaptureAuto
	streams  map[string]*slotStream // move → its open replication session (logical.go)
	tables   map[string]*pgTable    // table → its columns as the database declares them
	datasets map[string]string      // table → dataset, as installed
}

var (
	_ domicile.Store  = (*Store)(nil)
	_ domicile.Pinger = (*Store)(nil)
)

// OpenStore opens the store of region in the PostgreSQL database at url.
// Install creates domicile's tables.
func OpenStore(ctx context.Context, url, region string) (*Store, error) {
	pool, err := openPool(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open store of region %s: %w", region, err)
	}
	return newStore(pool, region), nil
}

// NewStore makes the store of region in the PostgreSQL database at url
// without connecting to it, so that a process can start while the region's
// server is out of reach: each use connects, and fails with an error
// wrapping domicile.ErrUnavailable while it stays so. Ping tells whether it
// can be reached now. Only a url that cannot be parsed is an error.
func NewStore(ctx context.Context, url, region string) (*Store, error) {
	pool, err := newPool(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open store of region %s: %w", region, err)
	}
	return newStore(pool, region), nil
}

func newStore(pool *pgxpool.Pool, region string) *Store {
	return &Store{pool: pool, region: region, tables: make(map[string]*pgTable), datasets: make(map[string]string)}
}

// Ping connects to the store's server, or checks a pooled connection: an
// error wrapping domicile.ErrUnavailable if the server cannot be reached,
// also if it does not answer before ctx's deadline, another if it answers
// with a refusal (a wrong password, a database that does not exist).
func (s *Store) Ping(ctx context.Context) error {
	err := s.pool.Ping(ctx)
	switch {
	case err == nil || unreachable(err):
		return s.reachable(err)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("region %s: %w: no answer before the deadline: %w", s.region, domicile.ErrUnavailable, err)
	}
	return fmt.Errorf("region %s: %w", s.region, err)
}

// Pool returns the store's connection pool, for tests and tooling.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Region names the region the store belongs to.
func (s *Store) Region() string { return s.region }

// Close closes the store's connections. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		var ids []string
		for id := range s.streams {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		for _, id := range ids {
			s.closeStream(id)
		}
		s.pool.Close()
	})
	return nil
}

// beginner is what *pgxpool.Pool and *pgx.Conn have in common.
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// inTx runs fn in a transaction begun with opts (on a pool, a lazyTx),
// committing if fn returns nil and rolling back on error or panic.
func inTx(ctx context.Context, db beginner, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	if pool, ok := db.(*pgxpool.Pool); ok {
		return inLazyTx(ctx, pool, opts, fn)
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	return runTx(ctx, tx, fn)
}

// runTx runs fn in tx, committing if fn returns nil (a no-op where fn
// committed already) and rolling back on error or panic.
func runTx(ctx context.Context, tx pgx.Tx, fn func(pgx.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// update runs fn in a read-write transaction (READ COMMITTED).
func (s *Store) update(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.reachable(inTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn))
}

// bypass runs fn in a write transaction that passes domicile's triggers: it
// sets domicile.bypass for the transaction only, which no other
// transaction sees, and the triggers' WHEN clause skips the rows it writes.
func (s *Store) bypass(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.update(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		queueBypass(b)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("bypass: %w", err)
		}
		return fn(tx)
	})
}

// queueBypass queues bypass's setting.
func queueBypass(b *pgx.Batch) {
	b.Queue(`SELECT set_config('domicile.bypass', pg_current_xact_id()::text, true)`)
}

// view runs fn in a read-only transaction on one snapshot (REPEATABLE
// READ).
func (s *Store) view(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.reachable(inTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn))
}

// reachable marks an error that says the server could not be reached, or
// went away mid-transaction, as domicile.ErrUnavailable, keeping the
// original in the chain.
func (s *Store) reachable(err error) error {
	if err == nil || !unreachable(err) {
		return err
	}
	return fmt.Errorf("region %s: %w: %w", s.region, domicile.ErrUnavailable, err)
}

// querier is what the pool, connections and transactions have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgTable is a table as the database declares it.
type pgTable struct {
	name    string
	columns []pgColumn
	pk      []string
	refs    []string
	seqs    map[string]string // column → the sequence it is filled from (see sequence.go)
}

// pgColumn is a column as the database declares it.
type pgColumn struct {
	domicile.Column
	kind kind
	oid  uint32 // its type's, or its domain's base type's
}

// column returns the column called name, or false.
func (t *pgTable) column(name string) (pgColumn, bool) {
	i := slices.IndexFunc(t.columns, func(c pgColumn) bool { return c.Name == name })
	if i < 0 {
		return pgColumn{}, false
	}
	return t.columns[i], true
}

// kindOf returns the kind of column name; an unknown column reads as text.
func (t *pgTable) kindOf(name string) kind {
	c, _ := t.column(name)
	return c.kind
}

// readTable reads a table's declaration from the catalog.
func readTable(ctx context.Context, q querier, name string) (*pgTable, error) {
	rows, err := q.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
			coalesce(nullif(ty.typbasetype, 0), a.atttypid)
		FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid JOIN pg_class c ON c.oid = a.attrelid
		WHERE a.attrelid = to_regclass($1) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, quoteIdent(name))
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	t := &pgTable{name: name}
	for rows.Next() {
		var c pgColumn
		var oid uint32
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &oid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("describe %s: %w", name, err)
		}
		c.kind, c.oid = kindOf(oid), oid
		t.columns = append(t.columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	if len(t.columns) == 0 {
		return nil, &domicile.Error{Code: domicile.CodeNotFound, Message: fmt.Sprintf("table %s not found", name), Err: domicile.ErrNotFound}
	}
	rows, err = q.Query(ctx, `SELECT a.attname
		FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = to_regclass($1) AND i.indisprimary
		ORDER BY k.ord`, quoteIdent(name))
	if err != nil {
		return nil, fmt.Errorf("describe %s: primary key: %w", name, err)
	}
	if t.pk, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, fmt.Errorf("describe %s: primary key: %w", name, err)
	}
	// The foreign keys of a partitioned table may be declared on its
	// partitions only (as pg_dump writes pagila's payment): they order
	// the copy all the same. A key declared on a partitioned table is
	// cloned onto each partition (and, where it points at a partitioned
	// table, onto that table's partitions too: names that are no dataset
	// table's, which the ordering ignores).
	rows, err = q.Query(ctx, `SELECT DISTINCT c.relname::text FROM pg_constraint f JOIN pg_class c ON c.oid = f.confrelid
		WHERE f.contype = 'f'
			AND f.conrelid IN (SELECT to_regclass($1) UNION SELECT relid FROM pg_partition_tree(to_regclass($1)))
		ORDER BY 1`, quoteIdent(name))
	if err != nil {
		return nil, fmt.Errorf("describe %s: foreign keys: %w", name, err)
	}
	if t.refs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, fmt.Errorf("describe %s: foreign keys: %w", name, err)
	}
	if t.seqs, err = sequences(ctx, q, name); err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	return t, nil
}

// table returns a table's declaration, read once and kept until the next
// Install.
func (s *Store) table(ctx context.Context, name string) (*pgTable, error) {
	s.mu.Lock()
	t, ok := s.tables[name]
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := readTable(ctx, s.pool, name)
	if err != nil {
		return nil, s.reachable(err)
	}
	s.mu.Lock()
	s.tables[name] = t
	s.mu.Unlock()
	return t, nil
}

// DescribeTable reads a table's columns and primary key from the catalog.
// Column types are spelled as format_type spells them ("bigint", "text",
// "timestamp without time zone").
func (s *Store) DescribeTable(ctx context.Context, name string) (*domicile.Table, error) {
	t, err := readTable(ctx, s.pool, name)
	if err != nil {
		return nil, s.reachable(err)
	}
	return t.describe()
}

// describe returns t as a domicile.Table.
func (t *pgTable) describe() (*domicile.Table, error) {
	if len(t.pk) == 0 {
		return nil, domicile.Errorf(domicile.CodeInvalid, "table %s has no primary key", t.name)
	}
	d := &domicile.Table{Name: t.name, PrimaryKey: slices.Clone(t.pk), References: slices.Clone(t.refs)}
	for _, c := range t.columns {
		d.Columns = append(d.Columns, c.Column)
	}
	return d, nil
}

// described returns t's name, columns and primary key, reading them here
// when the caller's description lacks them, with the declaration that
// tells how to bind each column's values.
func (s *Store) described(ctx context.Context, t *domicile.Table) (*domicile.Table, *pgTable, error) {
	pt, err := s.table(ctx, t.Name)
	if err != nil {
		return nil, nil, err
	}
	if len(t.Columns) > 0 && len(t.PrimaryKey) > 0 {
		for _, c := range t.Columns {
			if _, ok := pt.column(c.Name); !ok {
				return nil, nil, domicile.Errorf(domicile.CodeInvalid, "table %s in region %s has no column %q", t.Name, s.region, c.Name)
			}
		}
		return t, pt, nil
	}
	d, err := pt.describe()
	if err != nil {
		return nil, nil, err
	}
	d.SubjectColumn, d.Via, d.Categories = t.SubjectColumn, t.Via, t.Categories
	return d, pt, nil
}

// Indexes returns the CREATE INDEX statements of a table (pg_indexes'
// indexdef), leaving out the indexes of constraints and domicile's own.
func (s *Store) Indexes(ctx context.Context, table string) ([]string, error) {
	return s.catalogLines(ctx, "indexes", table, `SELECT pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = to_regclass($1)
			AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
			AND c.relname NOT LIKE 'domicile\_%'
		ORDER BY c.relname`)
}

// Constraints returns a table's constraints other than its primary key
// (unique, check, exclusion, foreign keys) as "CONSTRAINT name definition",
// foreign keys last, for Install to give a table it makes from this one
// (InstallOptions.TemplateConstraints).
func (s *Store) Constraints(ctx context.Context, table string) ([]string, error) {
	return s.catalogLines(ctx, "constraints", table, `SELECT 'CONSTRAINT ' || quote_ident(conname) || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint
		WHERE conrelid = to_regclass($1) AND contype IN ('u', 'c', 'x', 'f') AND conislocal
		ORDER BY contype = 'f', conname`)
}

// catalogLines runs query, which reads the catalogue about table ($1, its
// quoted name) one text a row, and returns the texts.
func (s *Store) catalogLines(ctx context.Context, what, table, query string) ([]string, error) {
	rows, err := s.pool.Query(ctx, query, quoteIdent(table))
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", what, table, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", what, table, err)
	}
	return out, nil
}

const ownerColumns = `subject, dataset, state, region, epoch, move_id`

func scanOwnership(sc pgx.Row, o *domicile.Ownership) error {
	return sc.Scan(&o.Subject, &o.Dataset, &o.State, &o.Region, &o.Epoch, &o.MoveID)
}

// queueInsertOwnership queues the statements that insert ownership rows,
// followed by onConflict (an ON CONFLICT clause, or nothing), and touch
// their subjects in domicile_known (queueTouchKnown). A new row's capture
// mark (see guardBody) says whether a live copy lists its subject already;
// the statement that reads domicile_capture comes after captureMarkLock,
// taken shared. The caller takes the subjects' locks before.
func queueInsertOwnership(b *pgx.Batch, rows []domicile.Ownership, onConflict string) {
	queueLockCaptureMarks(b, true)
	args := ownershipArrays(rows)
	b.Queue(`INSERT INTO domicile_owner (`+ownerColumns+`, capture)
		SELECT n.*, EXISTS (SELECT 1 FROM domicile_capture AS c WHERE c.subject = n.subject AND c.dataset = n.dataset)
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
			AS n(subject, dataset, state, region, epoch, move_id) `+onConflict, args...)
	queueTouchKnown(b, args[0], args[1])
}

// queueTouchKnown queues the statement that writes a new version of the
// subjects' rows in domicile_known (subjects and datasets are text arrays
// of one length), for the probe of REPEATABLE READ and SERIALIZABLE
// writers of subjects without an ownership row (see refuseBody); only in a
// store that accepts, or once accepted, unknown subjects, the only one
// where such writers pass.
func queueTouchKnown(b *pgx.Batch, subjects, datasets any) {
	b.Queue(`INSERT INTO domicile_known AS k (subject, dataset)
		SELECT DISTINCT * FROM unnest($1::text[], $2::text[])
		WHERE `+everAcceptedUnknown+`
		ON CONFLICT (subject, dataset) DO UPDATE SET n = k.n + 1`, subjects, datasets)
}

// ownershipNotFound is the error of a missing ownership row.
func ownershipNotFound() error {
	return &domicile.Error{Code: domicile.CodeNotFound, Message: "ownership not found", Err: domicile.ErrNotFound}
}

// FindOwnership returns a subject's ownership row for a dataset.
func (s *Store) FindOwnership(ctx context.Context, dataset, subject string) (domicile.Ownership, error) {
	var o domicile.Ownership
	err := scanOwnership(s.pool.QueryRow(ctx, `SELECT `+ownerColumns+` FROM domicile_owner WHERE subject = $1 AND dataset = $2`, subject, dataset), &o)
	if errors.Is(err, pgx.ErrNoRows) || pgCode(err) == undefinedTable {
		return o, ownershipNotFound()
	}
	return o, s.reachable(err)
}

// ListOwnership calls fn for every ownership row of the dataset, in subject
// order.
func (s *Store) ListOwnership(ctx context.Context, dataset string, fn func(domicile.Ownership) error) error {
	rows, err := s.pool.Query(ctx, `SELECT `+ownerColumns+` FROM domicile_owner WHERE dataset = $1 ORDER BY subject`, dataset)
	if err != nil {
		return s.reachable(err)
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
	return s.reachable(rows.Err())
}

// SetOwnership writes the ownership rows in one transaction. A row given
// twice is written as given last.
func (s *Store) SetOwnership(ctx context.Context, rows []domicile.Ownership) error {
	for _, o := range rows {
		if !o.State.Valid() {
			return domicile.Errorf(domicile.CodeInvalid, "ownership state %q is not one of owned, incoming, fenced, moved", o.State)
		}
		if o.Subject == "" || o.Dataset == "" {
			return domicile.Errorf(domicile.CodeInvalid, "ownership row needs a subject and a dataset")
		}
	}
	rows = dedupOwnership(rows)
	err := s.update(ctx, func(tx pgx.Tx) error {
		// The locks of the subjects set to a state that refuses writes,
		// as a transition takes them: a writer of a subject without an
		// ownership row, which holds its lock shared, is waited for, and
		// one that comes later sees the row. A registration (owned)
		// changes nothing for such a writer, and takes none, so that
		// discovery never holds writers off.
		b := &pgx.Batch{}
		byDataset := refusingByDataset(rows)
		for _, ds := range slices.Sorted(maps.Keys(byDataset)) {
			queueLockSubjects(b, ds, byDataset[ds])
		}
		queueInsertOwnership(b, rows, `ON CONFLICT (subject, dataset) DO UPDATE SET state = excluded.state,
			region = excluded.region, epoch = excluded.epoch, move_id = excluded.move_id`)
		return tx.SendBatch(ctx, b).Close()
	})
	if pgCode(err) == undefinedTable {
		err = errOldInstall
	}
	if err != nil {
		return fmt.Errorf("set ownership in region %s: %w", s.region, err)
	}
	return nil
}

// refusingByDataset returns the subjects of rows whose state is not owned,
// by their dataset.
func refusingByDataset(rows []domicile.Ownership) map[string][]string {
	out := make(map[string][]string)
	for _, o := range rows {
		if o.State != domicile.Owned {
			out[o.Dataset] = append(out[o.Dataset], o.Subject)
		}
	}
	return out
}

// dedupOwnership keeps the last row given for each (subject, dataset): one
// statement may not write a row twice.
func dedupOwnership(rows []domicile.Ownership) []domicile.Ownership {
	type key struct{ s, d string }
	last := make(map[key]int, len(rows))
	for i, o := range rows {
		last[key{o.Subject, o.Dataset}] = i
	}
	if len(last) == len(rows) {
		return rows
	}
	out := make([]domicile.Ownership, 0, len(last))
	for i, o := range rows {
		if last[key{o.Subject, o.Dataset}] == i {
			out = append(out, o)
		}
	}
	return out
}

// ownershipArrays returns the rows as the six arrays of an unnest.
func ownershipArrays(rows []domicile.Ownership) []any {
	var subj, ds, state, region, move []string
	var epoch []int64
	for _, o := range rows {
		subj = append(subj, o.Subject)
		ds = append(ds, o.Dataset)
		state = append(state, string(o.State))
		region = append(region, o.Region)
		epoch = append(epoch, o.Epoch)
		move = append(move, o.MoveID)
	}
	return []any{subj, ds, state, region, epoch, move}
}

// DeleteOwnership removes the ownership rows of the subjects.
func (s *Store) DeleteOwnership(ctx context.Context, dataset string, subjects []string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM domicile_owner WHERE dataset = $1 AND subject = ANY($2::text[])`, dataset, subjects)
	if err != nil {
		return fmt.Errorf("delete ownership in region %s: %w", s.region, err)
	}
	return nil
}

// datasetOf returns the dataset that Install recorded for table.
func (s *Store) datasetOf(ctx context.Context, q querier, table string) (string, error) {
	s.mu.Lock()
	ds, ok := s.datasets[table]
	s.mu.Unlock()
	if ok {
		return ds, nil
	}
	err := q.QueryRow(ctx, `SELECT value FROM domicile_settings WHERE key = $1`, tableKey(table)).Scan(&ds)
	if errors.Is(err, pgx.ErrNoRows) || pgCode(err) == undefinedTable {
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

// standing returns nil if the store may serve a write of subject's rows in
// dataset (with read, a read, which a fence does not stop), as its
// ownership row says now, and otherwise the refusal, as refused gives it:
// the store owns the subject, or accepts unknown subjects and has no row
// for it.
func (s *Store) standing(ctx context.Context, q querier, dataset, subject string, read bool) error {
	var state, region *string
	var epoch *int64
	var accept bool
	err := q.QueryRow(ctx, `SELECT o.state, o.region, o.epoch, `+acceptsUnknown+`
		FROM (SELECT) AS one LEFT JOIN domicile_owner AS o ON o.subject = $1 AND o.dataset = $2`,
		subject, dataset).Scan(&state, &region, &epoch, &accept)
	switch {
	case err != nil:
		return err
	case state == nil && accept:
		return nil
	case state == nil:
		return domicile.RefusalError(domicile.ErrUnknown, s.region, nil)
	}
	return domicile.Standing(domicile.Ownership{Subject: subject, Dataset: dataset, State: domicile.OwnerState(*state), Region: *region, Epoch: *epoch}, read, s.region)
}

// acceptsUnknown is the condition that the store accepts unknown subjects.
const acceptsUnknown = `EXISTS (SELECT 1 FROM domicile_settings WHERE key = 'accept_unknown' AND value = '1')`

// refusedSubject returns the refusal of a write of subject's rows in table
// that the guard would make now (standing), or nil if the guard would let
// it through or the state cannot be read.
func (s *Store) refusedSubject(ctx context.Context, table, subject string) error {
	ds, err := s.datasetOf(ctx, s.pool, table)
	if err != nil {
		return nil
	}
	if e, ok := errors.AsType[*domicile.Error](s.standing(ctx, s.pool, ds, subject, false)); ok {
		return e
	}
	return nil
}

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
// that breaks a constraint is refused by the database before the guard
// (an AFTER trigger) sees it, so a subject this store does not hold would
// otherwise read as the constraint's conflict: such an error is mapped to
// the subject's refusal when there is one (see refusedSubject).
func (s *Store) writeErr(ctx context.Context, err error, table, subject string) error {
	if r := refusal(err); r != nil {
		ds, _ := s.datasetOf(ctx, s.pool, table)
		return s.refused(ctx, r, ds, subject)
	}
	if code := pgCode(err); strings.HasPrefix(code, "23") || strings.HasPrefix(code, "22") {
		if r := s.refusedSubject(ctx, table, subject); r != nil {
			return r
		}
	}
	if isConflict(err) {
		return &domicile.Error{Code: domicile.CodeConflict, Message: fmt.Sprintf("a row of %s with this key exists", table), Err: err}
	}
	if e, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case e.Code == foreignKeyViolation:
			// A key pointing at a row this region lacks, or a row others
			// point at: the client's request against the rows here.
			return &domicile.Error{Code: domicile.CodeConflict, Message: fmt.Sprintf("%s: %s", table, e.Message), Err: err}
		case e.Code == notNullViolation || e.Code == checkViolation || strings.HasPrefix(e.Code, "22"): // data exceptions
			return &domicile.Error{Code: domicile.CodeInvalid, Message: fmt.Sprintf("%s: %s", table, e.Message), Err: err}
		}
	}
	return s.reachable(err)
}
