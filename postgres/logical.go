package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/domicile/domicile"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A live copy's capture by logical replication. Where the cluster allows it
// (wal_level = logical, a role that may replicate), a move's changes are
// read from a logical replication slot of its own, decoded by the pgoutput
// plugin from a publication of the dataset's tables: the writers run no
// trigger code and take no lock for it, and the WAL gives the commit order.
//
//   - StartCapture records the move (its dataset and subjects) in
//     domicile_settings under the slot's name, makes sure the dataset's
//     publication (domicile_<dataset>_pub) lists its tables, and creates
//     the slot with an exported snapshot; the bulk copy reads in one
//     REPEATABLE READ transaction that imported that snapshot. A
//     transaction that committed before the slot's consistent point is in
//     the snapshot; one that committed after it is in the slot's stream.
//   - ReadChanges first commits a marker (a transactional logical message
//     with a fresh nonce, committed with synchronous_commit on, which
//     flushes the WAL before it), then streams the slot until the marker
//     comes: every transaction that committed before the call is decoded
//     before it. The changes of one transaction share its commit LSN as
//     their sequence number. The call confirms to the slot everything up to
//     after, which the caller has recorded and will not ask for again, so
//     the slot holds WAL only from there.
//   - EndCapture drops the slot and the record; StartCapture ends an
//     earlier capture under the same move first; SweepCaptures drops the
//     slots of moves that are no longer running.
//
// Only the subjects' rows are kept: the publication lists the dataset's
// tables only (the mover's ownership and tombstone writes are in
// domicile_owner, which it does not list), and each change is kept if its
// row's subject is being captured. A delete, or an update that leaves the
// key alone, carries the old row's replica identity only (by default the
// primary key): when the subject column is not part of it, the old row's
// subject is not known, and the change is recorded under every subject of
// the move. Applying it is harmless (the row is read again at the source,
// and the destination deletes a row of the subject with that key, which it
// does not have), but it costs a read and a write per unrelated delete.
// REPLICA IDENTITY FULL, or an identity index that includes the subject
// column, makes the filter exact.

// The modes of SetCapture.
const (
	CaptureAuto     = "auto"     // logical replication where the cluster allows it, else triggers
	CaptureLogical  = "logical"  // logical replication only
	CaptureTriggers = "triggers" // triggers only
)

// SetCapture chooses how the store, as the source of a live copy, captures
// the changes: CaptureAuto (the default), CaptureLogical or
// CaptureTriggers.
func (s *Store) SetCapture(mode string) error {
	switch mode {
	case "", CaptureAuto, CaptureLogical, CaptureTriggers:
	default:
		return domicile.Errorf(domicile.CodeInvalid, "capture %q: want auto, logical or triggers", mode)
	}
	s.mu.Lock()
	s.capture = mode
	s.mu.Unlock()
	return nil
}

func (s *Store) captureMode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.capture == "" {
		return CaptureAuto
	}
	return s.capture
}

const (
	slotPrefix = "domicile_"     // of every slot domicile creates
	slotKey    = "slot:"         // domicile_settings key of a slot's record, before its name
	markPrefix = "domicile.mark" // prefix of ReadChanges' markers
)

// slotName is the name of a move's slot: the same for every run of the move,
// so that a resumed move finds and drops the slot of an earlier run.
func slotName(moveID string) string {
	sum := sha256.Sum256([]byte(moveID))
	return slotPrefix + hex.EncodeToString(sum[:20])
}

// publicationName is the name of a dataset's publication.
func publicationName(dataset string) string { return objectName(dataset, "_pub") }

// slotRecord is what domicile_settings holds of a slot: whose it is.
type slotRecord struct {
	Move     string   `json:"move"`
	Dataset  string   `json:"dataset"`
	Subjects []string `json:"subjects"`
}

// logicalUnavailable returns why the store cannot capture by logical
// replication, or "".
func (s *Store) logicalUnavailable(ctx context.Context) (string, error) {
	why, err := logicalUnavailable(ctx, s.pool)
	return why, s.reachable(err)
}

// logicalUnavailable is Store.logicalUnavailable on q.
func logicalUnavailable(ctx context.Context, q querier) (string, error) {
	var level string
	var replicate, emit bool
	err := q.QueryRow(ctx, `SELECT current_setting('wal_level'), r.rolsuper OR r.rolreplication,
			coalesce(has_function_privilege(coalesce(to_regprocedure('pg_logical_emit_message(boolean, text, text)'),
				to_regprocedure('pg_logical_emit_message(boolean, text, text, boolean)')), 'EXECUTE'), false)
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&level, &replicate, &emit)
	if err != nil {
		return "", err
	}
	switch {
	case level != "logical":
		return "wal_level is " + level + ", not logical", nil
	case !replicate:
		return "the role has neither REPLICATION nor SUPERUSER", nil
	case !emit:
		return "the role may not call pg_logical_emit_message", nil
	}
	return "", nil
}

// findSlot returns the record of the move's slot, if the slot exists.
func (s *Store) findSlot(ctx context.Context, moveID string) (*slotRecord, error) {
	var raw *string
	err := s.pool.QueryRow(ctx, `SELECT (SELECT value FROM domicile_settings WHERE key = $2)
		FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`,
		slotName(moveID), slotKey+slotName(moveID)).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.reachable(err)
	}
	if raw == nil {
		return nil, fmt.Errorf("replication slot %s of move %s has no record", slotName(moveID), moveID)
	}
	var rec slotRecord
	if err := json.Unmarshal([]byte(*raw), &rec); err != nil {
		return nil, fmt.Errorf("record of replication slot %s: %w", slotName(moveID), err)
	}
	return &rec, nil
}

// replicationConn opens a connection in logical replication mode, with the
// settings under which pgoutput writes values in the text the record
// functions write (see captureSettings).
func (s *Store) replicationConn(ctx context.Context) (*pgconn.PgConn, error) {
	cfg := s.pool.Config().ConnConfig.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["extra_float_digits"] = "1"
	cfg.RuntimeParams["bytea_output"] = "hex"
	for k, v := range runtimeParams {
		cfg.RuntimeParams[k] = v
	}
	cfg.OnNotice = nil
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, s.reachable(err)
	}
	return conn, nil
}

// ensurePublication makes the dataset's publication list exactly its
// tables. It changes it only when it differs, under a lock, so that two
// moves of the dataset starting at once do not both create it.
func (s *Store) ensurePublication(ctx context.Context, ds *domicile.Dataset, tables []*domicile.Table) error {
	name := publicationName(ds.Name)
	want := make([]string, len(tables))
	for i, t := range tables {
		want[i] = t.Name
	}
	slices.Sort(want)
	return s.update(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('domicile publication'))`); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, name).Scan(&exists); err != nil {
			return err
		}
		list := make([]string, len(want))
		for i, t := range want {
			list[i] = quoteIdent(t)
		}
		if !exists {
			_, err := tx.Exec(ctx, `CREATE PUBLICATION `+quoteIdent(name)+` FOR TABLE `+strings.Join(list, ", ")+
				` WITH (publish = 'insert, update, delete')`)
			return err
		}
		rows, err := tx.Query(ctx, `SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, name)
		if err != nil {
			return err
		}
		have, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || slices.Equal(have, want) {
			return err
		}
		_, err = tx.Exec(ctx, `ALTER PUBLICATION `+quoteIdent(name)+` SET TABLE `+strings.Join(list, ", "))
		return err
	})
}

// startLogical creates the move's slot and returns the snapshot it
// exported. An earlier capture under the move has been ended.
func (s *Store) startLogical(ctx context.Context, ds *domicile.Dataset, tables []*domicile.Table, moveID string, subjects []string) (domicile.Snapshot, error) {
	if err := s.ensurePublication(ctx, ds, tables); err != nil {
		return nil, fmt.Errorf("publication of %s: %w", ds.Name, err)
	}
	slot := slotName(moveID)
	rec, err := json.Marshal(slotRecord{Move: moveID, Dataset: ds.Name, Subjects: subjects})
	if err != nil {
		return nil, err
	}
	// The record first: a slot of domicile's always has one (SweepCaptures).
	if _, err := s.pool.Exec(ctx, `INSERT INTO domicile_settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, slotKey+slot, string(rec)); err != nil {
		return nil, s.reachable(err)
	}
	conn, err := s.replicationConn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The slot's consistent point waits for the transactions running
	// now to end; its snapshot sees exactly those that committed before.
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return nil, fmt.Errorf("create replication slot %s: %w", slot, s.reachable(err))
	}
	// The exported snapshot lives until the replication connection runs
	// another command or closes: import it before.
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.reachable(err)
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		_, err = tx.Exec(ctx, `SET TRANSACTION SNAPSHOT `+quoteString(res.SnapshotName))
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}
	if err != nil {
		c.Release()
		return nil, fmt.Errorf("import the snapshot of slot %s: %w", slot, s.reachable(err))
	}
	return &slotSnapshot{s: s, conn: c, tx: tx}, nil
}

// slotSnapshot is the snapshot a slot exported, imported by a read-only
// transaction the bulk copy reads in.
type slotSnapshot struct {
	s    *Store
	mu   sync.Mutex
	conn *pgxpool.Conn
	tx   pgx.Tx
}

func (p *slotSnapshot) Capture() string { return domicile.CaptureLogical }

// FindRows reads a page of the subject's rows in the snapshot. It does not
// check ownership: the subject is the source's, or the move would not be
// copying it.
func (p *slotSnapshot) FindRows(ctx context.Context, t *domicile.Table, subject string, q domicile.RowQuery) ([][]any, error) {
	_, query, args, err := p.s.rowsQuery(ctx, t, subject, q)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tx == nil {
		return nil, errors.New("read of a closed snapshot")
	}
	rows, err := queryRows(ctx, p.tx, query, args, nil)
	return rows, p.s.reachable(err)
}

func (p *slotSnapshot) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tx == nil {
		return nil
	}
	err := p.tx.Rollback(context.Background())
	p.conn.Release()
	p.tx, p.conn = nil, nil
	return err
}

// dropSlot drops a slot of domicile's and its record, ending the session
// that streams it, if any (a process that died may leave one until the
// server notices).
func (s *Store) dropSlot(ctx context.Context, slot string) error {
	s.mu.Lock()
	var open []string
	for id := range s.streams {
		if slotName(id) == slot {
			open = append(open, id)
		}
	}
	s.mu.Unlock()
	for _, id := range open {
		s.closeStream(id)
	}
	for attempt := 0; ; attempt++ {
		_, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE slot_name = $1 AND active_pid IS NOT NULL AND active_pid <> pg_backend_pid()`, slot)
		if err == nil {
			_, err = s.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
				WHERE slot_name = $1 AND database = current_database()`, slot)
		}
		if pgCode(err) == objectInUse && attempt < 50 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("drop replication slot %s: %w", slot, s.reachable(err))
		}
		break
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM domicile_settings WHERE key = $1`, slotKey+slot); err != nil && pgCode(err) != undefinedTable {
		return s.reachable(err)
	}
	return nil
}

// objectInUse is the SQLSTATE of a slot another session streams.
const objectInUse = "55006"

// captures returns the slots of domicile's in this database, with the
// move of each that has a record, and the records without a slot (a start
// that failed after its record), in that order: the slots are listed
// before the records, and a slot's record is written before it.
func (s *Store) captures(ctx context.Context) (slots []string, owner map[string]string, orphans []string, err error) {
	rows, err := s.pool.Query(ctx, `SELECT slot_name::text FROM pg_replication_slots
		WHERE database = current_database() AND starts_with(slot_name::text, $1) ORDER BY 1`, slotPrefix)
	if err != nil {
		return nil, nil, nil, s.reachable(err)
	}
	if slots, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, nil, nil, s.reachable(err)
	}
	rows, err = s.pool.Query(ctx, `SELECT substr(key, length($1) + 1), value FROM domicile_settings WHERE starts_with(key, $1) ORDER BY 1`, slotKey)
	if err != nil {
		return nil, nil, nil, s.reachable(err)
	}
	owner = make(map[string]string) // slot → move
	for rows.Next() {
		var slot, raw string
		if err := rows.Scan(&slot, &raw); err != nil {
			rows.Close()
			return nil, nil, nil, err
		}
		var rec slotRecord
		if json.Unmarshal([]byte(raw), &rec) == nil {
			owner[slot] = rec.Move
		}
		if !slices.Contains(slots, slot) {
			orphans = append(orphans, slot)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, s.reachable(err)
	}
	return slots, owner, orphans, nil
}

// ListCaptures returns the moves whose replication slots this database
// holds (a slot without a record by its name).
func (s *Store) ListCaptures(ctx context.Context) ([]string, error) {
	slots, owner, _, err := s.captures(ctx)
	if err != nil {
		return nil, fmt.Errorf("list captures in region %s: %w", s.region, err)
	}
	out := make([]string, len(slots))
	for i, slot := range slots {
		out[i] = slot
		if id, ok := owner[slot]; ok {
			out[i] = id
		}
	}
	byTriggers, err := s.triggerCaptures(ctx)
	if err != nil {
		return nil, fmt.Errorf("list captures in region %s: %w", s.region, err)
	}
	for id := range byTriggers {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// triggerCaptures returns the captures by triggers this database records:
// move → dataset.
func (s *Store) triggerCaptures(ctx context.Context) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT move_id, dataset FROM domicile_capture`)
	if pgCode(err) == undefinedTable {
		return nil, nil // installed before capture
	}
	if err != nil {
		return nil, s.reachable(err)
	}
	out := make(map[string]string)
	for rows.Next() {
		var id, ds string
		if err := rows.Scan(&id, &ds); err != nil {
			rows.Close()
			return nil, err
		}
		out[id] = ds
	}
	return out, s.reachable(rows.Err())
}

// SweepCaptures drops the slots (and records) of this database's captures
// whose moves live does not report as running. It lists the slots before
// asking about their moves: a move that starts a capture after the list
// is running when live is asked.
func (s *Store) SweepCaptures(ctx context.Context, live func(context.Context, []string) (map[string]bool, error)) ([]string, error) {
	slots, owner, orphans, err := s.captures(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep captures in region %s: %w", s.region, err)
	}
	slots = append(slots, orphans...)
	byTriggers, err := s.triggerCaptures(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep captures in region %s: %w", s.region, err)
	}
	var ids []string
	for _, slot := range slots {
		if id, ok := owner[slot]; ok {
			ids = append(ids, id)
		}
	}
	for id := range byTriggers {
		ids = append(ids, id)
	}
	running, err := live(ctx, ids)
	if err != nil {
		return nil, err
	}
	var dropped []string
	// A capture by triggers left by a move no longer running (its
	// EndCapture never ran) keeps its subjects' marks, and so the capture
	// triggers and their calls, for ever: ended here.
	for _, id := range slices.Sorted(maps.Keys(byTriggers)) {
		if running[id] {
			continue
		}
		if err := s.EndCapture(ctx, &domicile.Dataset{Name: byTriggers[id]}, id); err != nil {
			return dropped, fmt.Errorf("sweep captures in region %s: %w", s.region, err)
		}
		dropped = append(dropped, id)
	}
	for _, slot := range slots {
		id, ok := owner[slot]
		if ok && (running[id] || slices.Contains(dropped, id)) {
			continue
		}
		if err := s.dropSlot(ctx, slot); err != nil {
			return dropped, fmt.Errorf("sweep captures in region %s: %w", s.region, err)
		}
		if !ok {
			id = slot
		}
		dropped = append(dropped, id)
	}
	return dropped, nil
}

// streamTable is a dataset table as a slot's stream describes it.
type streamTable struct {
	t     *domicile.Table
	decl  *pgTable
	subj  int   // position of the subject column
	pk    []int // positions of the key columns
	oids  []uint32
	ident bool // the subject column is part of the replica identity
}

// slotStream is a session streaming a move's slot, kept open between calls
// of ReadChanges, so that each call decodes only the WAL written since the
// last: a new session decodes again from the slot's restart point, which
// PostgreSQL moves on only every so often (at a snapshot of the running
// transactions, logged every 15 s), and in a busy cluster that can be much
// WAL to read inside a fence.
type slotStream struct {
	mu   sync.Mutex
	conn *pgconn.PgConn
	rels map[uint32]*streamTable
	// pos: the session has returned every change with a sequence number
	// above base and at most pos, and nothing above pos; buf holds those
	// changes, so that a call may ask again from any point from base on
	// (the full comparison reads the changes after the verified point
	// without moving it, and the next round asks for them again).
	base, pos int64
	buf       []domicile.Change
	// The transaction being received, and its commit LSN.
	txn []domicile.Change
	lsn int64
}

// stream returns the move's open session, or nil.
func (s *Store) stream(moveID string) *slotStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[moveID]
}

// closeStream ends the move's session, if it has one.
func (s *Store) closeStream(moveID string) {
	s.mu.Lock()
	st := s.streams[moveID]
	delete(s.streams, moveID)
	s.mu.Unlock()
	if st != nil {
		st.mu.Lock()
		st.conn.Close(context.Background())
		st.mu.Unlock()
	}
}

// openStream starts a session streaming the move's slot from its confirmed
// point. Another session on the slot, of a run of the move that has lost
// its lease (or died without the server noticing yet), is ended.
func (s *Store) openStream(ctx context.Context, ds *domicile.Dataset, moveID string, after int64) (*slotStream, error) {
	conn, err := s.replicationConn(ctx)
	if err != nil {
		return nil, err
	}
	slot := slotName(moveID)
	args := []string{"proto_version '1'", "publication_names " + quoteString(publicationName(ds.Name)), "messages 'true'"}
	for attempt := 0; ; attempt++ {
		err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: args})
		if pgCode(err) != objectInUse || attempt >= 50 {
			break
		}
		if attempt == 10 {
			if _, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
				WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot); err != nil {
				conn.Close(context.WithoutCancel(ctx))
				return nil, s.reachable(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("stream replication slot %s: %w", slot, s.reachable(err))
	}
	return &slotStream{conn: conn, rels: make(map[uint32]*streamTable), base: after, pos: after}, nil
}

// readSlot returns the changes of the move's slot committed after after,
// up to a marker committed now (see the top of this file), on the move's
// open session if it has read exactly up to after, else on a new one.
func (s *Store) readSlot(ctx context.Context, ds *domicile.Dataset, moveID string, rec *slotRecord, after int64, limit int) ([]domicile.Change, error) {
	var b [12]byte
	rand.Read(b[:])
	nonce := moveID + "/" + hex.EncodeToString(b[:])
	err := s.update(ctx, func(tx pgx.Tx) error {
		// synchronous_commit on: the commit flushes the WAL up to it, and
		// the slot streams only flushed WAL.
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, $2)`, markPrefix, nonce)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark the stream: %w", err)
	}
	for fresh := false; ; fresh = true {
		st := s.stream(moveID)
		if st != nil && (fresh || after < st.base) {
			s.closeStream(moveID) // it let go of changes after after, or failed: start again
			st = nil
		}
		if st == nil {
			if st, err = s.openStream(ctx, ds, moveID, after); err != nil {
				return nil, err
			}
			s.mu.Lock()
			if s.streams == nil {
				s.streams = make(map[string]*slotStream)
			}
			s.streams[moveID] = st
			s.mu.Unlock()
		}
		out, err := s.receive(ctx, st, ds, rec, nonce, after, limit)
		if err == nil || fresh || ctx.Err() != nil {
			if err != nil {
				s.closeStream(moveID)
			}
			return out, err
		}
		// The session may have been ended by the server (an idle one
		// times out): once more on a new one.
	}
}

// receive reads the session up to the marker nonce, or to the end of the
// transaction at which limit changes were read.
func (s *Store) receive(ctx context.Context, st *slotStream, ds *domicile.Dataset, rec *slotRecord, nonce string, after int64, limit int) ([]domicile.Change, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	tables, decls, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]int, len(tables))
	for i, t := range tables {
		byName[t.Name] = i
	}
	captured := make(map[string]bool, len(rec.Subjects))
	for _, id := range rec.Subjects {
		captured[id] = true
	}
	conn := st.conn
	// Everything up to after is recorded by the caller: the slot may let
	// go of it. A transaction whose commit record starts at or below after
	// is not sent again.
	var confirm pglogrepl.LSN
	if after > 0 {
		confirm = pglogrepl.LSN(after + 1)
	}
	status := func() error {
		if confirm == 0 {
			return nil
		}
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: confirm})
	}
	if err := status(); err != nil {
		return nil, err
	}
	// What the caller has recorded goes; what it has not is returned
	// again.
	keep := 0
	for keep < len(st.buf) && st.buf[keep].Seq <= after {
		keep++
	}
	st.buf = st.buf[keep:]
	st.base = max(st.base, after)
	var out []domicile.Change
	for i, c := range st.buf {
		if limit > 0 && len(out) >= limit && c.Seq != st.buf[i-1].Seq {
			return out, nil // whole transactions only
		}
		out = append(out, c)
	}
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, s.reachable(err)
		}
		var data []byte
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			data = m.Data
		case *pgproto3.ErrorResponse:
			return nil, pgconn.ErrorResponseToPgError(m)
		default:
			continue
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
			if err != nil {
				return nil, err
			}
			if k.ReplyRequested {
				if err := status(); err != nil {
					return nil, err
				}
			}
			continue
		case pglogrepl.XLogDataByteID:
		default:
			continue
		}
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return nil, err
		}
		lm, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		switch m := lm.(type) {
		case *pglogrepl.RelationMessage:
			i, ok := byName[m.RelationName]
			if !ok {
				continue
			}
			t, err := newStreamTable(tables[i], decls[i], m)
			if err != nil {
				return nil, err
			}
			st.rels[m.RelationID] = t
		case *pglogrepl.BeginMessage:
			st.txn, st.lsn = st.txn[:0], int64(m.FinalLSN)
		case *pglogrepl.InsertMessage:
			if t := st.rels[m.RelationID]; t != nil {
				st.txn, err = t.changes(st.txn, nil, m.Tuple, captured, rec.Subjects)
			}
		case *pglogrepl.UpdateMessage:
			if t := st.rels[m.RelationID]; t != nil {
				old := m.OldTuple
				if old != nil && m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey && !t.ident {
					old = t.keyOnly(old)
				}
				st.txn, err = t.changes(st.txn, orKey(old, m.NewTuple, t), m.NewTuple, captured, rec.Subjects)
			}
		case *pglogrepl.DeleteMessage:
			if t := st.rels[m.RelationID]; t != nil && m.OldTuple != nil {
				old := m.OldTuple
				if m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey && !t.ident {
					old = t.keyOnly(old)
				}
				st.txn, err = t.changes(st.txn, old, nil, captured, rec.Subjects)
			}
		case *pglogrepl.LogicalDecodingMessage:
			if m.Prefix == markPrefix && string(m.Content) == nonce {
				// Every transaction committed before the marker was
				// sent before it, and nothing above pos was returned.
				return out, nil
			}
		case *pglogrepl.CommitMessage:
			if st.lsn > after && st.lsn > st.pos {
				for _, c := range st.txn {
					c.Seq = st.lsn
					out = append(out, c)
					st.buf = append(st.buf, c)
				}
				st.pos = st.lsn
			}
			st.txn = st.txn[:0]
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
		if err != nil {
			return nil, err
		}
	}
}

// newStreamTable describes a dataset table from its relation message.
func newStreamTable(t *domicile.Table, decl *pgTable, m *pglogrepl.RelationMessage) (*streamTable, error) {
	st := &streamTable{t: t, decl: decl, subj: -1}
	pos := make(map[string]int, len(m.Columns))
	for i, c := range m.Columns {
		pos[c.Name] = i
		st.oids = append(st.oids, c.DataType)
	}
	var ok bool
	if st.subj, ok = pos[t.SubjectColumn]; !ok {
		return nil, fmt.Errorf("table %s has no subject column %s", t.Name, t.SubjectColumn)
	}
	for _, k := range t.PrimaryKey {
		i, ok := pos[k]
		if !ok {
			return nil, fmt.Errorf("table %s has no key column %s", t.Name, k)
		}
		st.pk = append(st.pk, i)
	}
	st.ident = m.ReplicaIdentity == 'f' || m.Columns[st.subj].Flags&1 != 0
	return st, nil
}

// keyOnly marks the subject of an old row that carries only its replica
// identity as unknown.
func (st *streamTable) keyOnly(old *pglogrepl.TupleData) *pglogrepl.TupleData {
	cp := *old
	cp.Columns = slices.Clone(old.Columns)
	cp.Columns[st.subj] = &pglogrepl.TupleDataColumn{DataType: 'u'}
	return &cp
}

// orKey returns an update's old row: the one sent, or, when the key did
// not change (pgoutput sends none), the new row's key with an unknown
// subject, unless the subject column is part of the identity, which then
// did not change either.
func orKey(old, new *pglogrepl.TupleData, st *streamTable) *pglogrepl.TupleData {
	if old != nil || st.ident {
		return old
	}
	return st.keyOnly(new)
}

// changes appends the changes a row change makes to the captured subjects'
// rows: the old row's key (under its subject, or every captured subject if
// it is not known) and, if it differs, the new row's.
func (st *streamTable) changes(out []domicile.Change, old, new *pglogrepl.TupleData, captured map[string]bool, all []string) ([]domicile.Change, error) {
	type rowKey struct{ subject, key string }
	var seen []rowKey
	add := func(row *pglogrepl.TupleData) error {
		key, text, err := st.key(row)
		if err != nil {
			return err
		}
		subjects := all
		if c := row.Columns[st.subj]; c.DataType == 't' {
			subjects = nil
			if id := string(c.Data); captured[id] {
				subjects = []string{id}
			}
		} else if c.DataType == 'n' {
			subjects = nil
		}
		for _, id := range subjects {
			if slices.Contains(seen, rowKey{id, text}) {
				continue
			}
			seen = append(seen, rowKey{id, text})
			out = append(out, domicile.Change{Table: st.t.Name, Subject: id, Key: key})
		}
		return nil
	}
	for _, row := range []*pglogrepl.TupleData{old, new} {
		if row == nil {
			continue
		}
		if err := add(row); err != nil {
			return out, err
		}
	}
	return out, nil
}

// key returns a row's key as rows carry it, and its text.
func (st *streamTable) key(row *pglogrepl.TupleData) ([]any, string, error) {
	text := make([]string, len(st.pk))
	for i, p := range st.pk {
		if p >= len(row.Columns) || row.Columns[p].DataType != 't' {
			return nil, "", fmt.Errorf("a row of %s without its key column %s", st.t.Name, st.t.PrimaryKey[i])
		}
		text[i] = wireText(st.oids[p], string(row.Columns[p].Data))
	}
	key, err := decodeKey(st.decl, st.t.PrimaryKey, text)
	if err != nil {
		return nil, "", fmt.Errorf("key of %s: %w", st.t.Name, err)
	}
	return key, strings.Join(text, "\x00"), nil
}

// wireText turns the text pgoutput writes of a key value into the text a
// record function writes of it (see keyExpr): a timestamp with time zone
// without its zone (the session's is UTC), a real as the double it reads
// as.
func wireText(oid uint32, v string) string {
	switch oid {
	case pgtype.TimestamptzOID:
		if strings.HasSuffix(v, "+00") {
			return v[:len(v)-3]
		}
		if strings.HasSuffix(v, "+00 BC") {
			return v[:len(v)-6] + " BC"
		}
	case pgtype.Float4OID:
		if f, err := strconv.ParseFloat(v, 32); err == nil {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return v
}
