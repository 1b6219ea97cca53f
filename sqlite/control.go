package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/domicile/domicile"
)

// Control is the control store on SQLite: the directory of placements, the
// moves with their leases, and the hash-chained ledger. It holds no personal
// data beyond subject ids and countries.
//
// Like Store, it writes through a pool of one connection, so that this
// process's writers queue in Go rather than in SQLite's busy handler, which
// sleeps in steps of milliseconds; reads, and the job queue, use another pool.
type Control struct {
	db   *sql.DB // reads, and the job queue's own transactions
	w    *sql.DB // this store's writes: one connection, which never checkpoints
	ckpt *checkpointer
	now  func() time.Time
	// kept holds the statements every move's records run, prepared on w
	// once (see recordStmts); read-only after OpenControl.
	kept map[string]*sql.Stmt

	closeOnce sync.Once
	closeErr  error
}

var _ domicile.Control = (*Control)(nil)

const controlSchema = `
CREATE TABLE IF NOT EXISTS subjects (
	id      TEXT PRIMARY KEY,
	country TEXT NOT NULL,
	created INTEGER NOT NULL DEFAULT 0 -- when the subject was registered
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS placements (
	subject TEXT NOT NULL,
	dataset TEXT NOT NULL,
	region  TEXT NOT NULL,
	epoch   INTEGER NOT NULL,
	state   TEXT NOT NULL,
	move_id TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (subject, dataset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS placements_dataset ON placements (dataset, subject);
-- No index on move_id: the commit and the rollback find a move's
-- placements through move_subjects, and a move's updates of its
-- placements write no index entry.
DROP INDEX IF EXISTS placements_move;
CREATE TABLE IF NOT EXISTS moves (
	id             TEXT PRIMARY KEY,
	dataset        TEXT NOT NULL,
	from_region    TEXT NOT NULL,
	to_region      TEXT NOT NULL,
	rule           TEXT NOT NULL,
	policy_version TEXT NOT NULL,
	state          TEXT NOT NULL,
	attempt        INTEGER NOT NULL DEFAULT 0,
	owner          TEXT NOT NULL DEFAULT '',
	lease_expires  INTEGER NOT NULL DEFAULT 0,
	created        INTEGER NOT NULL,
	fenced_at      INTEGER NOT NULL DEFAULT 0,
	purge_after    INTEGER NOT NULL DEFAULT 0,
	receipt        TEXT NOT NULL DEFAULT '{}',
	error          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS moves_state ON moves (state);
CREATE TABLE IF NOT EXISTS move_subjects (
	move_id TEXT NOT NULL,
	subject TEXT NOT NULL,
	epoch   INTEGER NOT NULL DEFAULT 0, -- the placement's epoch when the move was planned
	PRIMARY KEY (move_id, subject)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS move_subjects_subject ON move_subjects (subject);
CREATE TABLE IF NOT EXISTS ledger (
	seq  INTEGER PRIMARY KEY,
	at   INTEGER NOT NULL,
	kind TEXT NOT NULL,
	ref  TEXT NOT NULL,
	body TEXT NOT NULL,
	prev TEXT NOT NULL,
	hash TEXT NOT NULL
);
`

// OpenControl opens (creating if needed) the control store at path. now
// supplies the time for leases and records; nil means time.Now.
func OpenControl(path string, now func() time.Time) (*Control, error) {
	// The moves' steps record through w: its commits leave the WAL
	// checkpoints to the checkpointer (see Store).
	w, err := openPool(path, noAutoCheckpoint)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	if _, err := w.Exec(controlSchema + consentSchema + approvalSchema); err != nil {
		w.Close()
		return nil, fmt.Errorf("create control schema in %s: %w", path, err)
	}
	if err := addSubjectsCreated(w); err != nil {
		w.Close()
		return nil, fmt.Errorf("upgrade control schema in %s: %w", path, err)
	}
	db, err := openDB(path)
	if err != nil {
		w.Close()
		return nil, err
	}
	ckpt, err := startCheckpointer(path, slog.Default())
	if err != nil {
		db.Close()
		w.Close()
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	c := &Control{db: db, w: w, ckpt: ckpt, now: now, kept: make(map[string]*sql.Stmt, len(recordStmts))}
	for _, q := range recordStmts {
		st, err := w.Prepare(q)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare %q in %s: %w", q, path, err), c.Close())
		}
		c.kept[q] = st
	}
	return c, nil
}

// Statements of every move's records, prepared once on the write
// connection (recordStmts): preparing them for each record cost as much as
// running them.
const (
	moveStateQuery     = `SELECT state FROM moves WHERE id = ? AND attempt = ?`
	moveAdvance        = `UPDATE moves SET state = ?, fenced_at = ?, purge_after = ?, receipt = ?, error = ?, owner = owner, lease_expires = max(lease_expires, ?) WHERE id = ?`
	moveFinish         = `UPDATE moves SET state = ?, fenced_at = ?, purge_after = ?, receipt = ?, error = ?, owner = '', lease_expires = ? WHERE id = ?`
	moveCommitFlip     = `UPDATE placements SET region = ?1, epoch = epoch + 1, state = ?2, move_id = ?3 WHERE subject IN (SELECT subject FROM move_subjects WHERE move_id = ?3) AND dataset = ?5 AND move_id = ?3 AND state = ?4`
	moveRollbackReturn = `UPDATE placements SET state = ?1, move_id = '' WHERE subject IN (SELECT subject FROM move_subjects WHERE move_id = ?2) AND dataset = ?4 AND move_id = ?2 AND state = ?3`
	moveRenewLease     = `UPDATE moves SET lease_expires = ? WHERE id = ? AND attempt = ? AND owner != ''`
	ledgerLast         = `SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1`
	ledgerInsert       = `INSERT INTO ledger (seq, at, kind, ref, body, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?)`
)

var recordStmts = []string{moveStateQuery, moveAdvance, moveFinish, moveCommitFlip, moveRollbackReturn, moveRenewLease, ledgerLast, ledgerInsert}

// kepts returns tx running the statements kept prepared (Control.kept) from
// them, and any other statement as tx would.
func (c *Control) kepts(tx *sql.Tx) querierCtx { return keptTx{tx, c.kept} }

type keptTx struct {
	tx   *sql.Tx
	kept map[string]*sql.Stmt
}

func (k keptTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st, ok := k.kept[query]; ok {
		return k.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return k.tx.ExecContext(ctx, query, args...)
}

func (k keptTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st, ok := k.kept[query]; ok {
		return k.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return k.tx.QueryContext(ctx, query, args...)
}

func (k keptTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st, ok := k.kept[query]; ok {
		return k.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return k.tx.QueryRowContext(ctx, query, args...)
}

// addSubjectsCreated adds subjects.created to a control store made before
// subjects kept the time they were registered.
func addSubjectsCreated(w *sql.DB) error {
	var n int
	if err := w.QueryRow(`SELECT count(*) FROM pragma_table_info('subjects') WHERE name = 'created'`).Scan(&n); err != nil || n > 0 {
		return err
	}
	_, err := w.Exec(`ALTER TABLE subjects ADD COLUMN created INTEGER NOT NULL DEFAULT 0`)
	return err
}

// DB returns the underlying database, for the job queue and for tests.
func (c *Control) DB() *sql.DB { return c.db }

// Close stops the checkpointer and closes the database. Calling it again
// returns the first call's result.
func (c *Control) Close() error {
	c.closeOnce.Do(func() {
		errs := []error{c.ckpt.stop()}
		for _, st := range c.kept {
			errs = append(errs, st.Close())
		}
		c.closeErr = errors.Join(append(errs, c.db.Close(), c.w.Close())...)
	})
	return c.closeErr
}

// update runs fn in a write transaction, rolling back on error or panic.
func (c *Control) update(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	tx, err := c.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func notFound(what string) error {
	return &domicile.Error{Code: domicile.CodeNotFound, Message: what + " not found", Err: domicile.ErrNotFound}
}

// CreateSubject registers a new subject with its placements.
func (c *Control) CreateSubject(ctx context.Context, s domicile.Subject, placements []domicile.Placement) error {
	return c.update(ctx, func(tx *sql.Tx) error {
		now := c.now()
		res, err := tx.ExecContext(ctx, `INSERT INTO subjects (id, country, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, s.ID, s.Country, millis(now))
		if err != nil {
			return fmt.Errorf("create subject: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return domicile.Errorf(domicile.CodeConflict, "subject %q already exists", s.ID)
		}
		if err := insertPlacements(ctx, tx, placements); err != nil {
			return err
		}
		return appendLedger(ctx, tx, now, "subject.created", s.ID, map[string]any{"country": s.Country, "placements": placements})
	})
}

func insertPlacements(ctx context.Context, tx *sql.Tx, placements []domicile.Placement) error {
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO placements (subject, dataset, region, epoch, state, move_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, p := range placements {
		state := p.State
		if state == "" {
			state = domicile.Active
		}
		if _, err := stmt.ExecContext(ctx, p.Subject, p.Dataset, p.Region, p.Epoch, state, p.MoveID); err != nil {
			return fmt.Errorf("insert placement %s/%s: %w", p.Subject, p.Dataset, err)
		}
	}
	return nil
}

// AddSubjects registers the subjects not yet known, with their placements.
func (c *Control) AddSubjects(ctx context.Context, subjects []domicile.Subject, placements []domicile.Placement) (int, error) {
	added := 0
	err := c.update(ctx, func(tx *sql.Tx) error {
		added = 0
		now := c.now()
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO subjects (id, country, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		fresh := make(map[string]bool, len(subjects))
		for _, s := range subjects {
			res, err := stmt.ExecContext(ctx, s.ID, s.Country, millis(now))
			if err != nil {
				return fmt.Errorf("add subject %q: %w", s.ID, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				added++
				fresh[s.ID] = true
			}
		}
		var ps []domicile.Placement
		for _, p := range placements {
			if fresh[p.Subject] {
				ps = append(ps, p)
			}
		}
		if err := insertPlacements(ctx, tx, ps); err != nil {
			return err
		}
		if added == 0 {
			return nil
		}
		return appendLedger(ctx, tx, now, "subjects.discovered", "", map[string]any{"subjects": added, "placements": len(ps)})
	})
	return added, err
}

// FindSubject returns a subject.
func (c *Control) FindSubject(ctx context.Context, id string) (domicile.Subject, error) {
	s := domicile.Subject{ID: id}
	var created int64
	err := c.db.QueryRowContext(ctx, `SELECT country, created FROM subjects WHERE id = ?`, id).Scan(&s.Country, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return s, notFound(fmt.Sprintf("subject %q", id))
	}
	s.Created = fromMillis(created)
	return s, err
}

// UpdateCountry changes a subject's jurisdiction.
func (c *Control) UpdateCountry(ctx context.Context, id, country string) error {
	return c.update(ctx, func(tx *sql.Tx) error {
		var old string
		err := tx.QueryRowContext(ctx, `SELECT country FROM subjects WHERE id = ?`, id).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(fmt.Sprintf("subject %q", id))
		} else if err != nil {
			return err
		}
		if old == country {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE subjects SET country = ? WHERE id = ?`, country, id); err != nil {
			return err
		}
		return appendLedger(ctx, tx, c.now(), "subject.country", id, map[string]any{"from": old, "to": country})
	})
}

const placementColumns = `subject, dataset, region, epoch, state, move_id`

func scanPlacement(sc interface{ Scan(...any) error }, p *domicile.Placement) error {
	return sc.Scan(&p.Subject, &p.Dataset, &p.Region, &p.Epoch, &p.State, &p.MoveID)
}

// FindPlacement returns the placement of a (subject, dataset).
func (c *Control) FindPlacement(ctx context.Context, subject, dataset string) (domicile.Placement, error) {
	var p domicile.Placement
	err := scanPlacement(c.db.QueryRowContext(ctx, `SELECT `+placementColumns+` FROM placements WHERE subject = ? AND dataset = ?`, subject, dataset), &p)
	if errors.Is(err, sql.ErrNoRows) {
		return p, notFound(fmt.Sprintf("placement of %q in %q", subject, dataset))
	}
	return p, err
}

// FindPlacements returns every placement of a subject.
func (c *Control) FindPlacements(ctx context.Context, subject string) ([]domicile.Placement, error) {
	return placementsIn(ctx, c.db, subject)
}

// ListPlacements calls fn for every placement of the dataset ("" for all).
func (c *Control) ListPlacements(ctx context.Context, dataset string, fn func(domicile.Subject, domicile.Placement) error) error {
	q := `SELECT p.subject, p.dataset, p.region, p.epoch, p.state, p.move_id, s.country, s.created
		FROM placements p JOIN subjects s ON s.id = p.subject`
	var args []any
	if dataset != "" {
		q += ` WHERE p.dataset = ?`
		args = append(args, dataset)
	}
	q += ` ORDER BY p.subject, p.dataset`
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var p domicile.Placement
		var s domicile.Subject
		var created int64
		if err := rows.Scan(&p.Subject, &p.Dataset, &p.Region, &p.Epoch, &p.State, &p.MoveID, &s.Country, &created); err != nil {
			return err
		}
		s.ID, s.Created = p.Subject, fromMillis(created)
		if err := fn(s, p); err != nil {
			return err
		}
	}
	return rows.Err()
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// CreateMove records a planned move and marks its subjects' placements
// Moving.
func (c *Control) CreateMove(ctx context.Context, m *domicile.Move) (bool, error) {
	created := false
	err := c.update(ctx, func(tx *sql.Tx) error {
		created = false
		// Set-based: one UPDATE … RETURNING and one multi-row INSERT per
		// chunk of subjects, not two statements per subject.
		m.Epochs = make(map[string]int64, len(m.Subjects))
		lead := []any{domicile.Moving, m.ID, m.Dataset, m.From, domicile.Active}
		err := inChunks(lead, m.Subjects, func(n int, args []any) error {
			rows, err := tx.QueryContext(ctx, `UPDATE placements SET state = ?, move_id = ?
				WHERE dataset = ? AND region = ? AND state = ? AND subject IN (`+placeholders(n)+`) RETURNING subject, epoch`, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var s string
				var epoch int64
				if err := rows.Scan(&s, &epoch); err != nil {
					return err
				}
				m.Epochs[s] = epoch
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		kept := make([]string, 0, len(m.Epochs)) // in the caller's order, once each
		seen := make(map[string]bool, len(m.Epochs))
		for _, s := range m.Subjects {
			if _, ok := m.Epochs[s]; ok && !seen[s] {
				seen[s] = true
				kept = append(kept, s)
			}
		}
		const perRow = 3
		for rest := kept; len(rest) > 0; {
			n := min(len(rest), maxInsertArgs/perRow)
			args := make([]any, 0, n*perRow)
			for _, s := range rest[:n] {
				args = append(args, m.ID, s, m.Epochs[s])
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO move_subjects (move_id, subject, epoch) VALUES `+
				strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", n), ", "), args...); err != nil {
				return fmt.Errorf("add subjects to move: %w", err)
			}
			rest = rest[n:]
		}
		if len(kept) == 0 {
			return nil
		}
		m.Subjects = kept
		m.State = domicile.MovePlanned
		if m.Created.IsZero() {
			m.Created = c.now()
		}
		receipt, err := json.Marshal(m.Receipt)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO moves (id, dataset, from_region, to_region, rule, policy_version, state, created, receipt, owner, lease_expires)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.Dataset, m.From, m.To, m.Rule, m.PolicyVersion, m.State, millis(m.Created), string(receipt), m.Owner, millis(m.LeaseExpires))
		if err != nil {
			return fmt.Errorf("create move: %w", err)
		}
		created = true
		return appendLedger(ctx, tx, c.now(), "move.planned", m.ID, map[string]any{
			"dataset": m.Dataset, "from": m.From, "to": m.To, "rule": m.Rule,
			"policy_version": m.PolicyVersion, "subjects": len(kept),
		})
	})
	return created, err
}

const moveColumns = `id, dataset, from_region, to_region, rule, policy_version, state, attempt, owner,
	lease_expires, created, fenced_at, purge_after, receipt, error`

func scanMove(sc interface{ Scan(...any) error }) (*domicile.Move, error) {
	var m domicile.Move
	var lease, created, fenced, purge int64
	var receipt string
	err := sc.Scan(&m.ID, &m.Dataset, &m.From, &m.To, &m.Rule, &m.PolicyVersion, &m.State, &m.Attempt, &m.Owner,
		&lease, &created, &fenced, &purge, &receipt, &m.Error)
	if err != nil {
		return nil, err
	}
	m.LeaseExpires, m.Created, m.FencedAt, m.PurgeAfter = fromMillis(lease), fromMillis(created), fromMillis(fenced), fromMillis(purge)
	if err := json.Unmarshal([]byte(receipt), &m.Receipt); err != nil {
		return nil, fmt.Errorf("move %s: receipt: %w", m.ID, err)
	}
	return &m, nil
}

// FindMove returns a move with its subjects.
func (c *Control) FindMove(ctx context.Context, id string) (*domicile.Move, error) {
	return findMove(ctx, c.db, id)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func findMove(ctx context.Context, q querier, id string) (*domicile.Move, error) {
	m, err := scanMove(q.QueryRowContext(ctx, `SELECT `+moveColumns+` FROM moves WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(fmt.Sprintf("move %q", id))
	} else if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT subject, epoch FROM move_subjects WHERE move_id = ? ORDER BY subject`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m.Epochs = map[string]int64{}
	for rows.Next() {
		var s string
		var e int64
		if err := rows.Scan(&s, &e); err != nil {
			return nil, err
		}
		m.Subjects = append(m.Subjects, s)
		m.Epochs[s] = e
	}
	return m, rows.Err()
}

// ListMoves returns the moves in the given states (all if none), oldest
// first, without their subjects.
func (c *Control) ListMoves(ctx context.Context, states ...domicile.MoveState) ([]*domicile.Move, error) {
	q := `SELECT ` + moveColumns + ` FROM moves`
	var args []any
	if len(states) > 0 {
		q += ` WHERE state IN (?` + strings.Repeat(",?", len(states)-1) + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	q += ` ORDER BY created, id`
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []*domicile.Move
	for rows.Next() {
		m, err := scanMove(rows)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

func leaseLost(id string) error {
	return &domicile.Error{Code: domicile.CodeConflict, Message: fmt.Sprintf("move %s is held by another process", id), Err: domicile.ErrLeaseLost}
}

// ClaimMove takes the move's lease for owner if it is free or expired.
func (c *Control) ClaimMove(ctx context.Context, id, owner string, lease time.Duration) (*domicile.Move, error) {
	var m *domicile.Move
	err := c.update(ctx, func(tx *sql.Tx) error {
		now := c.now()
		res, err := tx.ExecContext(ctx, `UPDATE moves SET attempt = attempt + 1, owner = ?, lease_expires = ?
			WHERE id = ? AND state NOT IN (?, ?) AND (owner = '' OR owner = ? OR lease_expires <= ?)`,
			owner, millis(now.Add(lease)), id, domicile.MovePurged, domicile.MoveRolledBack, owner, millis(now))
		if err != nil {
			return err
		}
		if m, err = findMove(ctx, tx, id); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if m.State.Done() {
				return domicile.Errorf(domicile.CodeConflict, "move %s is finished (%s)", id, m.State)
			}
			return leaseLost(id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// RenewLease extends the lease of the holder of token.
func (c *Control) RenewLease(ctx context.Context, id string, token int64, lease time.Duration) error {
	res, err := c.kept[moveRenewLease].ExecContext(ctx, millis(c.now().Add(lease)), id, token)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return leaseLost(id)
	}
	return nil
}

// RenewLeases extends the leases owner holds on the moves named, in one
// transaction; moves it no longer holds are skipped.
func (c *Control) RenewLeases(ctx context.Context, owner string, ids []string, lease time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	return c.update(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE moves SET lease_expires = ? WHERE id = ? AND owner = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		until := millis(c.now().Add(lease))
		for _, id := range ids {
			if _, err := st.ExecContext(ctx, until, id, owner); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReleaseMove gives up the lease without changing the move's state.
func (c *Control) ReleaseMove(ctx context.Context, id string, token int64) error {
	_, err := c.w.ExecContext(ctx, `UPDATE moves SET owner = '', lease_expires = 0 WHERE id = ? AND attempt = ?`, id, token)
	return err
}

// AdvanceMove records that the move reached state, after checking token.
func (c *Control) AdvanceMove(ctx context.Context, m *domicile.Move, token int64, state domicile.MoveState) error {
	return c.update(ctx, func(tx0 *sql.Tx) error {
		tx := c.kepts(tx0)
		var cur domicile.MoveState
		err := tx.QueryRowContext(ctx, moveStateQuery, m.ID, token).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return leaseLost(m.ID)
		} else if err != nil {
			return err
		}
		if cur.Done() && cur != state {
			return domicile.Errorf(domicile.CodeConflict, "move %s is already %s", m.ID, cur)
		}
		if cur == domicile.MoveRollingBack && state != domicile.MoveRollingBack && state != domicile.MoveRolledBack {
			return domicile.Errorf(domicile.CodeConflict, "move %s is rolling back: it can no longer %s", m.ID, state)
		}
		if (cur == domicile.MoveCommitted || isAfterCommit(cur)) && (state == domicile.MoveRollingBack || state == domicile.MoveRolledBack) {
			return domicile.Errorf(domicile.CodeConflict, "move %s is committed: it can no longer roll back", m.ID)
		}
		receipt, err := json.Marshal(m.Receipt)
		if err != nil {
			return err
		}
		// The lease ends with the move, and is extended to m.LeaseExpires
		// by every other step.
		q := moveAdvance
		if state.Done() {
			q = moveFinish
			m.LeaseExpires = time.Time{}
		}
		if _, err := tx.ExecContext(ctx, q,
			state, millis(m.FencedAt), millis(m.PurgeAfter), string(receipt), m.Error, millis(m.LeaseExpires), m.ID); err != nil {
			return err
		}
		switch {
		case state == domicile.MoveCommitted && cur != domicile.MoveCommitted:
			// The point of no return: every subject's placement flips to the
			// destination with the next epoch, in this one transaction.
			res, err := tx.ExecContext(ctx, moveCommitFlip,
				m.To, domicile.Active, m.ID, domicile.Moving, m.Dataset)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != int64(len(m.Subjects)) && len(m.Subjects) > 0 {
				return fmt.Errorf("commit move %s: %d placements flipped, want %d", m.ID, n, len(m.Subjects))
			}
		case state == domicile.MoveRolledBack:
			if _, err := tx.ExecContext(ctx, moveRollbackReturn,
				domicile.Active, m.ID, domicile.Moving, m.Dataset); err != nil {
				return err
			}
		}
		if cur == state {
			return nil // a step run again: recorded once
		}
		body := map[string]any{"from": m.From, "to": m.To, "dataset": m.Dataset, "attempt": token}
		if state == domicile.MovePurged {
			body["receipt"] = m.Receipt
		}
		if m.Error != "" {
			body["error"] = m.Error
		}
		return appendLedger(ctx, tx, c.now(), "move."+string(state), m.ID, body)
	})
}

func isAfterCommit(s domicile.MoveState) bool {
	switch s {
	case domicile.MoveTombstoned, domicile.MoveActivated, domicile.MovePurged:
		return true
	}
	return false
}

// MoveEpochs returns the current epoch of each subject's placement in a move.
func (c *Control) MoveEpochs(ctx context.Context, m *domicile.Move) (map[string]int64, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT p.subject, p.epoch FROM move_subjects ms
		JOIN placements p ON p.subject = ms.subject AND p.dataset = ?
		WHERE ms.move_id = ?`, m.Dataset, m.ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	epochs := make(map[string]int64, len(m.Subjects))
	for rows.Next() {
		var s string
		var e int64
		if err := rows.Scan(&s, &e); err != nil {
			return nil, err
		}
		epochs[s] = e
	}
	return epochs, rows.Err()
}

// FindReceipts returns the receipts of the finished moves of a subject.
func (c *Control) FindReceipts(ctx context.Context, subject string) ([]domicile.Receipt, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT m.receipt FROM moves m JOIN move_subjects ms ON ms.move_id = m.id
		WHERE ms.subject = ? AND m.state = ? ORDER BY m.created, m.id`, subject, domicile.MovePurged)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rs []domicile.Receipt
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var r domicile.Receipt
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// appendLedger appends an entry inside the caller's transaction, so that the
// record commits with the change it describes.
func appendLedger(ctx context.Context, tx querierCtx, at time.Time, kind, ref string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	e := domicile.LedgerEntry{At: at, Kind: kind, Ref: ref, Body: b}
	err = tx.QueryRowContext(ctx, ledgerLast).Scan(&e.Seq, &e.Prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	e.Seq++
	e.Hash = e.ChainHash()
	_, err = tx.ExecContext(ctx, ledgerInsert, e.Seq, millis(at), e.Kind, e.Ref, string(e.Body), e.Prev, e.Hash)
	return err
}

// VerifyLedger walks the ledger and returns the entries whose hash or chain
// does not hold, as messages; none means the chain is intact.
func (c *Control) VerifyLedger(ctx context.Context) ([]string, int64, error) {
	var problems []string
	var n int64
	var chain domicile.LedgerChain
	err := c.ListLedger(ctx, 1, func(e domicile.LedgerEntry) error {
		n++
		if p := chain.Add(e); p != "" {
			problems = append(problems, p)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return problems, n, nil
}

// ListLedger calls fn for every ledger entry from seq from on, in order.
func (c *Control) ListLedger(ctx context.Context, from int64, fn func(domicile.LedgerEntry) error) error {
	rows, err := c.db.QueryContext(ctx, `SELECT `+domicile.LedgerColumns+` FROM ledger WHERE seq >= ? ORDER BY seq`, from)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := domicile.ScanLedgerEntry(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// LedgerHead returns the newest entry's seq and hash.
func (c *Control) LedgerHead(ctx context.Context) (domicile.LedgerHead, error) {
	var h domicile.LedgerHead
	err := c.db.QueryRowContext(ctx, `SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return domicile.LedgerHead{}, nil
	}
	return h, err
}

// AppendLedger appends an entry that describes a change made outside the
// control store (a purge in a regional store, a refused request).
func (c *Control) AppendLedger(ctx context.Context, kind, ref string, body any) error {
	return c.update(ctx, func(tx *sql.Tx) error {
		return appendLedger(ctx, tx, c.now(), kind, ref, body)
	})
}
