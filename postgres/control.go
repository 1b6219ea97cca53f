package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Control is the control store on PostgreSQL, for deployments where several
// machines share the work: the directory of placements, the moves with their
// leases, and the hash-chained ledger. It holds no personal data beyond
// subject ids and countries.
//
// Its tables mean what the SQLite control store's mean, times included
// (milliseconds since the Unix epoch), and its ledger hashes are computed
// the same way, so a ledger verifies alike on either. It uses no extension.
// Writes run at READ COMMITTED: every compare-and-set is one conditional
// UPDATE, or a SELECT ... FOR UPDATE whose condition PostgreSQL checks again
// on the newest row version, and ledger appends queue on the one row of
// ledger_head, so the chain never forks.
type Control struct {
	pool *pgxpool.Pool
	now  func() time.Time

	closeOnce sync.Once
}

var _ domicile.Control = (*Control)(nil)

// controlSchema is the control store's tables. Ids sort by their bytes
// (COLLATE "C"), as SQLite sorts them, whatever the database's collation.
const controlSchema = `
CREATE TABLE IF NOT EXISTS subjects (
	id      TEXT COLLATE "C" PRIMARY KEY,
	country TEXT NOT NULL,
	created BIGINT NOT NULL DEFAULT 0 -- when the subject was registered
);
CREATE TABLE IF NOT EXISTS placements (
	subject TEXT COLLATE "C" NOT NULL,
	dataset TEXT COLLATE "C" NOT NULL,
	region  TEXT NOT NULL,
	epoch   BIGINT NOT NULL,
	state   TEXT NOT NULL,
	move_id TEXT COLLATE "C" NOT NULL DEFAULT '',
	PRIMARY KEY (subject, dataset)
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS placements_dataset ON placements (dataset, subject);
-- No index on move_id: the commit and the rollback find a move's
-- placements through move_subjects, so that no update of a placement
-- changes an indexed column, and with the room fillfactor leaves, its new
-- version stays on its page without new index entries (HOT). Control
-- stores made with the index lose it when opened (controlDropMoveIndex).
CREATE TABLE IF NOT EXISTS moves (
	id             TEXT COLLATE "C" PRIMARY KEY,
	dataset        TEXT NOT NULL,
	from_region    TEXT NOT NULL,
	to_region      TEXT NOT NULL,
	rule           TEXT NOT NULL,
	policy_version TEXT NOT NULL,
	state          TEXT NOT NULL,
	attempt        BIGINT NOT NULL DEFAULT 0,
	owner          TEXT NOT NULL DEFAULT '',
	lease_expires  BIGINT NOT NULL DEFAULT 0,
	created        BIGINT NOT NULL,
	fenced_at      BIGINT NOT NULL DEFAULT 0,
	purge_after    BIGINT NOT NULL DEFAULT 0,
	receipt        TEXT NOT NULL DEFAULT '{}',
	error          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS moves_state ON moves (state);
CREATE TABLE IF NOT EXISTS move_subjects (
	move_id TEXT COLLATE "C" NOT NULL,
	subject TEXT COLLATE "C" NOT NULL,
	epoch   BIGINT NOT NULL DEFAULT 0, -- the placement's epoch when the move was planned
	PRIMARY KEY (move_id, subject)
);
CREATE INDEX IF NOT EXISTS move_subjects_subject ON move_subjects (subject);
CREATE TABLE IF NOT EXISTS ledger (
	seq  BIGINT PRIMARY KEY,
	at   BIGINT NOT NULL,
	kind TEXT NOT NULL,
	ref  TEXT NOT NULL,
	body TEXT NOT NULL, -- the JSON exactly as hashed
	prev TEXT NOT NULL,
	hash TEXT NOT NULL
);
-- The chain's last link. Every append locks this one row, so appends are
-- serialised and each chains to the one before.
CREATE TABLE IF NOT EXISTS ledger_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  BIGINT NOT NULL,
	hash TEXT NOT NULL
);
INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, '') ON CONFLICT DO NOTHING;
`

// OpenControl connects to the control store at url (a PostgreSQL URL or
// keyword/value string), creating its tables if needed. now supplies the time
// for leases and records; nil means time.Now.
func OpenControl(ctx context.Context, url string, now func() time.Time) (*Control, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open control store: %w", err)
	}
	// The tables are made in one transaction, ledger_head last: if it
	// exists, so do the others, and the DDL, whose locks would queue behind
	// (and then hold up) other processes' writes, is skipped. Two processes
	// may create the tables at once; the loser of that race finds them made
	// on its next try.
	for try := 0; ; try++ {
		err = ctlInTx(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			var made bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass('ledger_head') IS NOT NULL`).Scan(&made); err != nil || made {
				return err
			}
			_, err := tx.Exec(ctx, controlSchema)
			return err
		})
		if s := ctlSQLState(err); err == nil || try == 2 || s != ctlUniqueViolation && s != ctlDuplicateTable && s != ctlDuplicateObject {
			break
		}
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("create control schema: %w", err)
	}
	if err := controlAddConsents(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create consent registry: %w", err)
	}
	if err := controlAddTable(ctx, pool, "approvals", controlApprovalSchema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create approvals: %w", err)
	}
	if err := controlAddSubjectsCreated(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("upgrade control schema: %w", err)
	}
	if err := controlDropMoveIndex(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("upgrade control schema: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Control{pool: pool, now: now}, nil
}

// controlAddSubjectsCreated adds subjects.created to a control store made
// before subjects kept the time they were registered. It looks before it
// alters, so that no process but the first takes the table's lock.
func controlAddSubjectsCreated(ctx context.Context, pool *pgxpool.Pool) error {
	var has bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'subjects' AND column_name = 'created')`).Scan(&has)
	if err != nil || has {
		return err
	}
	_, err = pool.Exec(ctx, `ALTER TABLE subjects ADD COLUMN IF NOT EXISTS created BIGINT NOT NULL DEFAULT 0`)
	return err
}

// controlDropMoveIndex drops the index on placements.move_id of a control
// store made with it, and leaves room on the table's pages for its updates
// (fillfactor 70, for the pages written from now on). It looks before it
// drops, so that no process but the first takes the table's lock.
func controlDropMoveIndex(ctx context.Context, pool *pgxpool.Pool) error {
	var has bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('placements_move') IS NOT NULL`).Scan(&has); err != nil || !has {
		return err
	}
	_, err := pool.Exec(ctx, `DROP INDEX IF EXISTS placements_move; ALTER TABLE placements SET (fillfactor = 70)`)
	return err
}

// Pool returns the connection pool, for the job queue and for tests.
func (c *Control) Pool() *pgxpool.Pool { return c.pool }

// Close closes the pool, waiting for connections in use to be returned.
// Calling it again does nothing.
func (c *Control) Close() error {
	c.closeOnce.Do(c.pool.Close)
	return nil
}

// update runs fn in a READ COMMITTED write transaction.
func (c *Control) update(ctx context.Context, fn func(pgx.Tx) error) error {
	return ctlInTx(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
}

// CreateSubject registers a new subject with its placements.
func (c *Control) CreateSubject(ctx context.Context, s domicile.Subject, placements []domicile.Placement) error {
	return c.update(ctx, func(tx pgx.Tx) error {
		now := c.now()
		tag, err := tx.Exec(ctx, `INSERT INTO subjects (id, country, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, s.ID, s.Country, ctlMillis(now))
		if err != nil {
			return fmt.Errorf("create subject: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return domicile.Errorf(domicile.CodeConflict, "subject %q already exists", s.ID)
		}
		if err := controlInsertPlacements(ctx, tx, placements); err != nil {
			return err
		}
		return controlAppend(ctx, tx, now, "subject.created", s.ID, map[string]any{"country": s.Country, "placements": placements})
	})
}

// controlInsertPlacements inserts placements that do not exist yet, in one
// statement.
func controlInsertPlacements(ctx context.Context, tx pgx.Tx, placements []domicile.Placement) error {
	if len(placements) == 0 {
		return nil
	}
	n := len(placements)
	subjects, datasets, regions, states, moves := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	epochs := make([]int64, n)
	for i, p := range placements {
		state := p.State
		if state == "" {
			state = domicile.Active
		}
		subjects[i], datasets[i], regions[i], epochs[i], states[i], moves[i] = p.Subject, p.Dataset, p.Region, p.Epoch, string(state), p.MoveID
	}
	_, err := tx.Exec(ctx, `INSERT INTO placements (subject, dataset, region, epoch, state, move_id)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])
		ON CONFLICT DO NOTHING`, subjects, datasets, regions, epochs, states, moves)
	if err != nil {
		return fmt.Errorf("insert placements: %w", err)
	}
	return nil
}

// AddSubjects registers the subjects not yet known, with their placements.
func (c *Control) AddSubjects(ctx context.Context, subjects []domicile.Subject, placements []domicile.Placement) (int, error) {
	added := 0
	err := c.update(ctx, func(tx pgx.Tx) error {
		added = 0
		now := c.now()
		ids, countries := make([]string, len(subjects)), make([]string, len(subjects))
		for i, s := range subjects {
			ids[i], countries[i] = s.ID, s.Country
		}
		rows, err := tx.Query(ctx, `INSERT INTO subjects (id, country, created)
			SELECT id, country, $3::bigint FROM unnest($1::text[], $2::text[]) AS n (id, country) ON CONFLICT DO NOTHING RETURNING id`, ids, countries, ctlMillis(now))
		if err != nil {
			return fmt.Errorf("add subjects: %w", err)
		}
		fresh, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("add subjects: %w", err)
		}
		added = len(fresh)
		if added == 0 {
			return nil
		}
		isFresh := make(map[string]bool, len(fresh))
		for _, id := range fresh {
			isFresh[id] = true
		}
		var ps []domicile.Placement
		for _, p := range placements {
			if isFresh[p.Subject] {
				ps = append(ps, p)
			}
		}
		if err := controlInsertPlacements(ctx, tx, ps); err != nil {
			return err
		}
		return controlAppend(ctx, tx, now, "subjects.discovered", "", map[string]any{"subjects": added, "placements": len(ps)})
	})
	return added, err
}

// FindSubject returns a subject.
func (c *Control) FindSubject(ctx context.Context, id string) (domicile.Subject, error) {
	s := domicile.Subject{ID: id}
	var created int64
	err := c.pool.QueryRow(ctx, `SELECT country, created FROM subjects WHERE id = $1`, id).Scan(&s.Country, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, ctlNotFound(fmt.Sprintf("subject %q", id))
	}
	s.Created = ctlFromMillis(created)
	return s, err
}

// UpdateCountry changes a subject's jurisdiction.
func (c *Control) UpdateCountry(ctx context.Context, id, country string) error {
	return c.update(ctx, func(tx pgx.Tx) error {
		var old string
		err := tx.QueryRow(ctx, `SELECT country FROM subjects WHERE id = $1 FOR UPDATE`, id).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			return ctlNotFound(fmt.Sprintf("subject %q", id))
		} else if err != nil {
			return err
		}
		if old == country {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE subjects SET country = $1 WHERE id = $2`, country, id); err != nil {
			return err
		}
		return controlAppend(ctx, tx, c.now(), "subject.country", id, map[string]any{"from": old, "to": country})
	})
}

const controlPlacementColumns = `subject, dataset, region, epoch, state, move_id`

func controlScanPlacement(row pgx.Row, p *domicile.Placement) error {
	return row.Scan(&p.Subject, &p.Dataset, &p.Region, &p.Epoch, &p.State, &p.MoveID)
}

// FindPlacement returns the placement of a (subject, dataset).
func (c *Control) FindPlacement(ctx context.Context, subject, dataset string) (domicile.Placement, error) {
	var p domicile.Placement
	err := controlScanPlacement(c.pool.QueryRow(ctx, `SELECT `+controlPlacementColumns+` FROM placements
		WHERE subject = $1 AND dataset = $2`, subject, dataset), &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ctlNotFound(fmt.Sprintf("placement of %q in %q", subject, dataset))
	}
	return p, err
}

// FindPlacements returns every placement of a subject.
func (c *Control) FindPlacements(ctx context.Context, subject string) ([]domicile.Placement, error) {
	return controlPlacementsIn(ctx, c.pool, subject)
}

// ListPlacements calls fn for every placement of the dataset ("" for all).
// The rows stream over one connection while fn runs; fn may call the store,
// which takes another.
func (c *Control) ListPlacements(ctx context.Context, dataset string, fn func(domicile.Subject, domicile.Placement) error) error {
	q := `SELECT p.subject, p.dataset, p.region, p.epoch, p.state, p.move_id, s.country, s.created
		FROM placements p JOIN subjects s ON s.id = p.subject`
	var args []any
	if dataset != "" {
		// A condition of its own, not "$1 = '' OR ...", so that a generic
		// plan still walks the (dataset, subject) index.
		q += ` WHERE p.dataset = $1`
		args = append(args, dataset)
	}
	rows, err := c.pool.Query(ctx, q+` ORDER BY p.subject, p.dataset`, args...)
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
		s.ID, s.Created = p.Subject, ctlFromMillis(created)
		if err := fn(s, p); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CreateMove records a planned move and marks its subjects' placements
// Moving.
func (c *Control) CreateMove(ctx context.Context, m *domicile.Move) (bool, error) {
	asked, created := m.Subjects, m.Created
	if created.IsZero() {
		created = c.now()
	}
	receipt, err := json.Marshal(m.Receipt)
	if err != nil {
		return false, err
	}
	var kept []string
	var epochs map[string]int64
	err = c.update(ctx, func(tx pgx.Tx) error {
		kept, epochs = nil, nil
		// One statement marks every subject still Active at From. Another
		// planner's concurrent update of a row makes this one wait and
		// check the row's new state, which is then Moving: each subject
		// joins one move only.
		rows, err := tx.Query(ctx, `UPDATE placements SET state = $1, move_id = $2
			WHERE subject = ANY($3) AND dataset = $4 AND region = $5 AND state = $6
			RETURNING subject, epoch`,
			domicile.Moving, m.ID, asked, m.Dataset, m.From, domicile.Active)
		if err != nil {
			return err
		}
		marked := map[string]int64{}
		var s string
		var e int64
		if _, err := pgx.ForEachRow(rows, []any{&s, &e}, func() error { marked[s] = e; return nil }); err != nil {
			return err
		}
		if len(marked) == 0 {
			return nil
		}
		epochs = make(map[string]int64, len(marked))
		list := make([]int64, 0, len(marked))
		for _, s := range asked {
			if e, ok := marked[s]; ok {
				if _, dup := epochs[s]; !dup {
					kept, epochs[s], list = append(kept, s), e, append(list, e)
				}
			}
		}
		// Two round trips more: the subjects, the move and the ledger's
		// head (locked last); then the entry with the COMMIT.
		entry, err := newLedgerEntry(c.now(), "move.planned", m.ID, map[string]any{
			"dataset": m.Dataset, "from": m.From, "to": m.To, "rule": m.Rule,
			"policy_version": m.PolicyVersion, "subjects": len(kept),
		})
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO move_subjects (move_id, subject, epoch)
			SELECT $1, * FROM unnest($2::text[], $3::bigint[])`, m.ID, kept, list)
		b.Queue(`INSERT INTO moves (id, dataset, from_region, to_region, rule, policy_version, state, created, receipt, owner, lease_expires)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			m.ID, m.Dataset, m.From, m.To, m.Rule, m.PolicyVersion, domicile.MovePlanned, ctlMillis(created), string(receipt), m.Owner, ctlMillis(m.LeaseExpires))
		queueLedgerHead(b, &entry)
		err = tx.SendBatch(ctx, b).Close()
		if ctlSQLState(err) == ctlUniqueViolation {
			// The move's subjects or its row: the move exists.
			return &domicile.Error{Code: domicile.CodeConflict, Message: fmt.Sprintf("move %q already exists", m.ID), Err: err}
		} else if err != nil {
			return fmt.Errorf("create move: %w", err)
		}
		b = &pgx.Batch{}
		queueAppend(b, &entry)
		return commitBatch(ctx, tx, b)
	})
	if err != nil || len(kept) == 0 {
		return false, err
	}
	m.Subjects, m.Epochs, m.State, m.Created = kept, epochs, domicile.MovePlanned, created
	return true, nil
}

const controlMoveColumns = `id, dataset, from_region, to_region, rule, policy_version, state, attempt, owner,
	lease_expires, created, fenced_at, purge_after, receipt, error`

func controlScanMove(row pgx.Row) (*domicile.Move, error) {
	var m domicile.Move
	var lease, created, fenced, purge int64
	var receipt string
	err := row.Scan(&m.ID, &m.Dataset, &m.From, &m.To, &m.Rule, &m.PolicyVersion, &m.State, &m.Attempt, &m.Owner,
		&lease, &created, &fenced, &purge, &receipt, &m.Error)
	if err != nil {
		return nil, err
	}
	m.LeaseExpires, m.Created, m.FencedAt, m.PurgeAfter = ctlFromMillis(lease), ctlFromMillis(created), ctlFromMillis(fenced), ctlFromMillis(purge)
	if err := json.Unmarshal([]byte(receipt), &m.Receipt); err != nil {
		return nil, fmt.Errorf("move %s: receipt: %w", m.ID, err)
	}
	return &m, nil
}

// controlQuerier is what reads need: the pool or a transaction.
type controlQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// FindMove returns a move with its subjects.
func (c *Control) FindMove(ctx context.Context, id string) (*domicile.Move, error) {
	var m *domicile.Move
	// One snapshot, so the subjects are the move's as it was read.
	err := ctlInTx(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		m, err = controlFindMove(ctx, tx, id)
		return err
	})
	return m, err
}

func controlFindMove(ctx context.Context, q controlQuerier, id string) (*domicile.Move, error) {
	var m *domicile.Move
	b := &pgx.Batch{}
	queueFindMove(b, id, &m)
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return m, nil
}

// queueFindMove queues the reads of a move and its subjects into m.
func queueFindMove(b *pgx.Batch, id string, m **domicile.Move) {
	b.Queue(`SELECT `+controlMoveColumns+` FROM moves WHERE id = $1`, id).QueryRow(func(row pgx.Row) error {
		mv, err := controlScanMove(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return ctlNotFound(fmt.Sprintf("move %q", id))
		} else if err != nil {
			return err
		}
		*m = mv
		return nil
	})
	b.Queue(`SELECT subject, epoch FROM move_subjects WHERE move_id = $1 ORDER BY subject`, id).Query(func(rows pgx.Rows) error {
		mv := *m
		mv.Epochs = map[string]int64{}
		var s string
		var e int64
		_, err := pgx.ForEachRow(rows, []any{&s, &e}, func() error {
			mv.Subjects = append(mv.Subjects, s)
			mv.Epochs[s] = e
			return nil
		})
		return err
	})
}

// ListMoves returns the moves in the given states (all if none), oldest
// first, without their subjects.
func (c *Control) ListMoves(ctx context.Context, states ...domicile.MoveState) ([]*domicile.Move, error) {
	q := `SELECT ` + controlMoveColumns + ` FROM moves`
	var args []any
	if len(states) > 0 {
		names := make([]string, len(states))
		for i, s := range states {
			names[i] = string(s)
		}
		q += ` WHERE state = ANY($1)`
		args = append(args, names)
	}
	rows, err := c.pool.Query(ctx, q+` ORDER BY created, id`, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*domicile.Move, error) { return controlScanMove(row) })
}

// ClaimMove takes the move's lease for owner if it is free, expired or
// already owner's, incrementing its attempt.
func (c *Control) ClaimMove(ctx context.Context, id, owner string, lease time.Duration) (*domicile.Move, error) {
	var m *domicile.Move
	err := c.update(ctx, func(tx pgx.Tx) error {
		now := c.now()
		// The compare-and-set: a concurrent claimer's update makes this
		// one wait, then test the condition against the row it wrote.
		// The update and the reads of the move after it in one round
		// trip, the COMMIT once they are in hand.
		b := &pgx.Batch{}
		var claimed bool
		b.Queue(`UPDATE moves SET attempt = attempt + 1, owner = $1, lease_expires = $2
			WHERE id = $3 AND state <> ALL($4) AND (owner = '' OR owner = $1 OR lease_expires <= $5)`,
			owner, ctlMillis(now.Add(lease)), id, []string{string(domicile.MovePurged), string(domicile.MoveRolledBack)}, ctlMillis(now)).Exec(func(tag pgconn.CommandTag) error {
			claimed = tag.RowsAffected() > 0
			return nil
		})
		queueFindMove(b, id, &m)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if !claimed {
			if m.State.Done() {
				return domicile.Errorf(domicile.CodeConflict, "move %s is finished (%s)", id, m.State)
			}
			return ctlLeaseLost(id)
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
	tag, err := c.pool.Exec(ctx, `UPDATE moves SET lease_expires = $1 WHERE id = $2 AND attempt = $3 AND owner <> ''`,
		ctlMillis(c.now().Add(lease)), id, token)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ctlLeaseLost(id)
	}
	return nil
}

// RenewLeases extends the leases owner holds on the moves named, in one
// statement; moves it no longer holds are skipped.
func (c *Control) RenewLeases(ctx context.Context, owner string, ids []string, lease time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := c.pool.Exec(ctx, `UPDATE moves SET lease_expires = $1 WHERE id = ANY($2) AND owner = $3`,
		ctlMillis(c.now().Add(lease)), ids, owner)
	return err
}

// ReleaseMove gives up the lease without changing the move's state.
func (c *Control) ReleaseMove(ctx context.Context, id string, token int64) error {
	_, err := c.pool.Exec(ctx, `UPDATE moves SET owner = '', lease_expires = 0 WHERE id = $1 AND attempt = $2`, id, token)
	return err
}

// AdvanceMove records that the move reached state, after checking token.
func (c *Control) AdvanceMove(ctx context.Context, m *domicile.Move, token int64, state domicile.MoveState) error {
	receipt, err := json.Marshal(m.Receipt)
	if err != nil {
		return err
	}
	// The lease ends with the move, and is extended to m.LeaseExpires by
	// every other step.
	lease, done := m.LeaseExpires, state.Done()
	if done {
		lease = time.Time{}
	}
	placements := state == domicile.MoveRolledBack || state == domicile.MoveCommitted
	body := map[string]any{"from": m.From, "to": m.To, "dataset": m.Dataset, "attempt": token}
	if state == domicile.MovePurged {
		body["receipt"] = m.Receipt
	}
	if m.Error != "" {
		body["error"] = m.Error
	}
	err = c.update(ctx, func(tx pgx.Tx) error {
		// Two round trips (three with the placements): the move's row and
		// the ledger's head, locked (after the lazy BEGIN); then the
		// writes with the COMMIT. Where the placements change, the head
		// is locked after them, as the transaction's last lock.
		e, err := newLedgerEntry(c.now(), "move."+string(state), m.ID, body)
		if err != nil {
			return err
		}
		// The row lock holds off claimers until this commits; a claim
		// that committed first changed the attempt, and FOR UPDATE checks
		// the condition again on the row it wrote.
		var cur domicile.MoveState
		b := &pgx.Batch{}
		b.Queue(`SELECT state FROM moves WHERE id = $1 AND attempt = $2 FOR UPDATE`, m.ID, token).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&cur)
			if errors.Is(err, pgx.ErrNoRows) {
				return ctlLeaseLost(m.ID)
			}
			return err
		})
		if !placements {
			queueLedgerHead(b, &e)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if cur.Done() && cur != state {
			return domicile.Errorf(domicile.CodeConflict, "move %s is already %s", m.ID, cur)
		}
		if cur == domicile.MoveRollingBack && state != domicile.MoveRollingBack && state != domicile.MoveRolledBack {
			return domicile.Errorf(domicile.CodeConflict, "move %s is rolling back: it can no longer %s", m.ID, state)
		}
		if controlCommitted(cur) && (state == domicile.MoveRollingBack || state == domicile.MoveRolledBack) {
			return domicile.Errorf(domicile.CodeConflict, "move %s is committed: it can no longer roll back", m.ID)
		}
		w := &pgx.Batch{}
		w.Queue(`UPDATE moves SET state = $1, fenced_at = $2, purge_after = $3, receipt = $4, error = $5,
			owner = CASE WHEN $6 THEN '' ELSE owner END,
			lease_expires = CASE WHEN $6 THEN 0 ELSE GREATEST(lease_expires, $7) END
			WHERE id = $8`,
			state, ctlMillis(m.FencedAt), ctlMillis(m.PurgeAfter), string(receipt), m.Error, done, ctlMillis(lease), m.ID)
		switch {
		case state == domicile.MoveCommitted && cur != domicile.MoveCommitted:
			// The point of no return: every subject's placement flips to the
			// destination with the next epoch, in this one transaction.
			// The subjects come as an array (ARRAY(…), evaluated once), so
			// that each is found by its key: with IN (SELECT …) the planner,
			// which cannot estimate a move's share of the dataset, hashed
			// every placement of the dataset instead.
			w.Queue(`UPDATE placements SET region = $1, epoch = epoch + 1, state = $2, move_id = $3
				WHERE subject = ANY(ARRAY(SELECT subject FROM move_subjects WHERE move_id = $3)) AND dataset = $5 AND move_id = $3 AND state = $4`,
				m.To, domicile.Active, m.ID, domicile.Moving, m.Dataset).Exec(func(tag pgconn.CommandTag) error {
				if n := tag.RowsAffected(); n != int64(len(m.Subjects)) && len(m.Subjects) > 0 {
					return fmt.Errorf("commit move %s: %d placements flipped, want %d", m.ID, n, len(m.Subjects))
				}
				return nil
			})
		case state == domicile.MoveRolledBack:
			w.Queue(`UPDATE placements SET state = $1, move_id = ''
				WHERE subject = ANY(ARRAY(SELECT subject FROM move_subjects WHERE move_id = $2)) AND dataset = $4 AND move_id = $2 AND state = $3`,
				domicile.Active, m.ID, domicile.Moving, m.Dataset)
		}
		if cur == state {
			return commitBatch(ctx, tx, w) // a step run again: recorded once
		}
		if placements {
			// The placements' count is checked before the head is locked
			// and the entry goes in.
			queueLedgerHead(w, &e)
			if err := tx.SendBatch(ctx, w).Close(); err != nil {
				return err
			}
			w = &pgx.Batch{}
		}
		queueAppend(w, &e)
		return commitBatch(ctx, tx, w)
	})
	if err == nil && done {
		m.LeaseExpires = time.Time{}
	}
	return err
}

// controlCommitted reports whether a move in state s has passed its commit.
func controlCommitted(s domicile.MoveState) bool {
	switch s {
	case domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated, domicile.MovePurged:
		return true
	}
	return false
}

// MoveEpochs returns the current epoch of each subject's placement in a move.
func (c *Control) MoveEpochs(ctx context.Context, m *domicile.Move) (map[string]int64, error) {
	rows, err := c.pool.Query(ctx, `SELECT p.subject, p.epoch FROM move_subjects ms
		JOIN placements p ON p.subject = ms.subject AND p.dataset = $1
		WHERE ms.move_id = $2`, m.Dataset, m.ID)
	if err != nil {
		return nil, err
	}
	epochs := make(map[string]int64, len(m.Subjects))
	var s string
	var e int64
	_, err = pgx.ForEachRow(rows, []any{&s, &e}, func() error { epochs[s] = e; return nil })
	if err != nil {
		return nil, err
	}
	return epochs, nil
}

// FindReceipts returns the receipts of the finished moves of a subject.
func (c *Control) FindReceipts(ctx context.Context, subject string) ([]domicile.Receipt, error) {
	rows, err := c.pool.Query(ctx, `SELECT m.receipt FROM moves m JOIN move_subjects ms ON ms.move_id = m.id
		WHERE ms.subject = $1 AND m.state = $2 ORDER BY m.created, m.id`, subject, domicile.MovePurged)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (domicile.Receipt, error) {
		var body string
		var r domicile.Receipt
		if err := row.Scan(&body); err != nil {
			return r, err
		}
		return r, json.Unmarshal([]byte(body), &r)
	})
}

// AppendLedger appends an entry that describes a change made outside the
// control store (a purge in a regional store, a refused request).
func (c *Control) AppendLedger(ctx context.Context, kind, ref string, body any) error {
	return c.update(ctx, func(tx pgx.Tx) error {
		return controlAppend(ctx, tx, c.now(), kind, ref, body)
	})
}
