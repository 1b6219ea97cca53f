package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

var _ domicile.LiveCopier = (*Store)(nil)

// liveTables returns the dataset's tables described, with their
// declarations, or ErrNotSupported if a table's changes cannot be
// captured: it reaches its subject through a path, or it has no primary key
// (its guard has no capture function to call; see guardBody).
func (s *Store) liveTables(ctx context.Context, ds *domicile.Dataset) ([]*domicile.Table, []*pgTable, error) {
	for _, t := range ds.Tables {
		if t.Via != nil {
			return nil, nil, fmt.Errorf("live copy of dataset %s: table %s reaches its subject through a path: %w", ds.Name, t.Name, domicile.ErrNotSupported)
		}
	}
	tables, decls, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, nil, err
	}
	for i, t := range tables {
		if len(decls[i].pk) == 0 {
			return nil, nil, fmt.Errorf("live copy of %s in region %s: no primary key: %w", t.Name, s.region, domicile.ErrNotSupported)
		}
	}
	return tables, decls, nil
}

// captureFunctionsMade returns nil if every table has the capture
// functions its guard calls for a captured subject, else an error
// wrapping ErrNotSupported: without them every write of a captured subject
// would fail, where a capture refused moves the subject inside the fence.
func captureFunctionsMade(ctx context.Context, tx pgx.Tx, tables []*domicile.Table) error {
	schema, err := currentSchema(ctx, tx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT to_regprocedure($1) IS NOT NULL AND to_regprocedure($2) IS NOT NULL`,
			captureFuncSignature(schema, t.Name), recordSignature(schema, t.Name)).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("live copy of %s: its capture functions are missing (domicile install makes them): %w", t.Name, domicile.ErrNotSupported)
		}
	}
	return nil
}

// StartCapture begins recording the changes to the subjects' rows, by
// logical replication where the store's capture mode and the cluster allow
// it (see logical.go), else with triggers: from the commit of its
// transaction on, every write of theirs also records its key in
// domicile_changes, in the write's transaction. An earlier capture under
// moveID, of either kind, is ended first.
//
// With triggers, a write whose transaction began before and commits after
// would escape the capture if its trigger had looked before the commit. So
// the transaction also marks the subjects' ownership rows (capture), which
// every write locks FOR SHARE in its guard trigger: the update waits for
// the writes in flight to end, and a write that comes after waits for the
// commit and then reads the mark (READ COMMITTED: FOR SHARE reads the
// row's latest version), or, in a REPEATABLE READ or SERIALIZABLE
// transaction that took its snapshot before, fails with a serialization
// error. The mark is what lets the guard call the table's capture
// function (see guardBody); a subject without an ownership row is looked
// up in domicile_capture itself, and its writers in flight are waited
// for through its advisory lock, as a transition waits for them.
// captureMarkLock orders the marks with the ownership rows made meanwhile
// and with EndCapture.
func (s *Store) StartCapture(ctx context.Context, ds *domicile.Dataset, moveID string, subjects []string) (domicile.Snapshot, error) {
	if moveID == "" {
		return nil, domicile.Errorf(domicile.CodeInvalid, "a capture needs a move id")
	}
	mode := s.captureMode()
	tables, _, err := s.liveTables(ctx, ds)
	if err != nil {
		return nil, err
	}
	if err := s.EndCapture(ctx, ds, moveID); err != nil {
		return nil, err
	}
	if mode != CaptureTriggers {
		why, err := s.logicalUnavailable(ctx)
		if err != nil {
			return nil, err
		}
		if why == "" {
			snap, err := s.startLogical(ctx, ds, tables, moveID, subjects)
			if err != nil {
				return nil, fmt.Errorf("start capture of %d subjects of %s in region %s: %w", len(subjects), ds.Name, s.region, err)
			}
			return snap, nil
		}
		if mode == CaptureLogical {
			return nil, fmt.Errorf("capture by logical replication in region %s: %s: %w", s.region, why, domicile.ErrNotSupported)
		}
	}
	err = s.update(ctx, func(tx pgx.Tx) error {
		// Wait for the writers in flight of subjects without an ownership
		// row, as a transition does, and refuse new ones (retryably) until
		// the capture commits. The subjects' locks come first, as in a
		// transition, which takes the marks' lock after them.
		if err := lockSubjects(ctx, tx, ds.Name, subjects); err != nil {
			return err
		}
		if err := lockCaptureMarks(ctx, tx, false); err != nil {
			return err
		}
		if err := captureFunctionsMade(ctx, tx, tables); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO domicile_capture (subject, dataset, move_id)
			SELECT unnest($1::text[]), $2, $3 ON CONFLICT DO NOTHING`, subjects, ds.Name, moveID); err != nil {
			return err
		}
		datasets := make([]string, len(subjects))
		for i := range datasets {
			datasets[i] = ds.Name
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE domicile_owner SET capture = true WHERE dataset = $1 AND subject = ANY($2::text[])`, ds.Name, subjects)
		// A writer on an older snapshot of a subject without an ownership
		// row cannot see the capture: its probe meets this.
		queueTouchKnown(b, subjects, datasets)
		return tx.SendBatch(ctx, b).Close()
	})
	if code := pgCode(err); code == undefinedColumn || code == undefinedTable {
		err = errOldInstall
	}
	if err != nil {
		return nil, fmt.Errorf("start capture of %d subjects of %s in region %s: %w", len(subjects), ds.Name, s.region, err)
	}
	return domicile.CurrentRows(s), nil
}

// ReadChanges returns the changes recorded under moveID after the sequence
// number after, in the order of their numbers, which is the order their
// transactions committed in: with triggers, see captureLock; by logical
// replication, the commit LSNs (see logical.go). limit 0 is no limit.
func (s *Store) ReadChanges(ctx context.Context, ds *domicile.Dataset, moveID string, after int64, limit int) ([]domicile.Change, error) {
	tables, decls, err := s.liveTables(ctx, ds)
	if err != nil {
		return nil, err
	}
	rec, err := s.findSlot(ctx, moveID)
	if err != nil {
		return nil, fmt.Errorf("read changes in region %s: %w", s.region, err)
	}
	if rec != nil {
		out, err := s.readSlot(ctx, ds, moveID, rec, after, limit)
		if err != nil {
			return nil, fmt.Errorf("read changes in region %s: %w", s.region, err)
		}
		return out, nil
	}
	index := make(map[string]int, len(tables))
	for i, t := range tables {
		index[t.Name] = i
	}
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, tbl, subject, key FROM domicile_changes
		WHERE move_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, moveID, after, lim)
	if err != nil {
		return nil, fmt.Errorf("read changes in region %s: %w", s.region, s.reachable(err))
	}
	defer rows.Close()
	var out []domicile.Change
	for rows.Next() {
		var c domicile.Change
		var key []string
		if err := rows.Scan(&c.Seq, &c.Table, &c.Subject, &key); err != nil {
			return nil, err
		}
		i, ok := index[c.Table]
		if !ok {
			return nil, fmt.Errorf("read changes in region %s: change of table %s, not in dataset %s", s.region, c.Table, ds.Name)
		}
		if c.Key, err = decodeKey(decls[i], tables[i].PrimaryKey, key); err != nil {
			return nil, fmt.Errorf("read changes in region %s: key of %s: %w", s.region, c.Table, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read changes in region %s: %w", s.region, s.reachable(err))
	}
	return out, nil
}

// decodeKey returns a key recorded by a record function as the values rows
// carry: the text of each column, read by its kind as decodeValue reads it.
func decodeKey(decl *pgTable, pk []string, text []string) ([]any, error) {
	if len(text) != len(pk) {
		return nil, fmt.Errorf("%d values for a key of %d columns", len(text), len(pk))
	}
	out := make([]any, len(pk))
	for i, c := range pk {
		v := text[i]
		var err error
		switch decl.kindOf(c) {
		case kindInt:
			out[i], err = strconv.ParseInt(v, 10, 64)
		case kindFloat:
			out[i], err = strconv.ParseFloat(v, 64)
		case kindBool:
			out[i], err = strconv.ParseBool(v)
		case kindBytea:
			if !strings.HasPrefix(v, `\x`) {
				return nil, fmt.Errorf("column %s: bytea %q not in hex", c, v)
			}
			out[i], err = hex.DecodeString(v[2:])
		default:
			out[i] = v
		}
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c, err)
		}
	}
	return out, nil
}

// EndCapture stops recording under moveID and deletes its records: drops
// its replication slot, if it has one, and its trigger records.
func (s *Store) EndCapture(ctx context.Context, ds *domicile.Dataset, moveID string) error {
	if err := s.dropSlot(ctx, slotName(moveID)); err != nil {
		return fmt.Errorf("end capture of move %s in region %s: %w", moveID, s.region, err)
	}
	err := s.update(ctx, func(tx pgx.Tx) error {
		if err := lockCaptureMarks(ctx, tx, false); err != nil {
			return err
		}
		// The mark stays on a subject another move still captures. The
		// subquery reads the table as it was before the DELETE, hence its
		// test of move_id; captureMarkLock keeps other captures still.
		if _, err := tx.Exec(ctx, `WITH d AS (DELETE FROM domicile_capture WHERE move_id = $1 AND dataset = $2 RETURNING subject)
			UPDATE domicile_owner AS o SET capture = false FROM d
			WHERE o.dataset = $2 AND o.subject = d.subject AND o.capture
				AND NOT EXISTS (SELECT 1 FROM domicile_capture AS c WHERE c.subject = o.subject AND c.dataset = o.dataset AND c.move_id <> $1)`,
			moveID, ds.Name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM domicile_changes WHERE move_id = $1`, moveID)
		return err
	})
	if pgCode(err) == undefinedTable {
		// Installed before capture: there is nothing to end.
		return nil
	}
	if pgCode(err) == undefinedColumn {
		return fmt.Errorf("end capture of move %s in region %s: %w", moveID, s.region, errOldInstall)
	}
	if err != nil {
		return fmt.Errorf("end capture of move %s in region %s: %w", moveID, s.region, err)
	}
	return nil
}

// keyCondition returns "subj = $1 AND k1 = $2 AND …" for a table with a
// subject column, and binds the subject and key.
func keyCondition(t *domicile.Table, decl *pgTable, subject string, key []any) (string, []any, error) {
	if len(key) != len(t.PrimaryKey) {
		return "", nil, domicile.Errorf(domicile.CodeInvalid, "a key of %s needs %d values, not %d", t.Name, len(t.PrimaryKey), len(key))
	}
	cond := subjectParam(decl, t.SubjectColumn, quoteIdent(t.SubjectColumn), 1, false)
	args := make([]any, 0, 1+len(key))
	args = append(args, subject)
	for i, k := range t.PrimaryKey {
		a, err := bindValue(decl.kindOf(k), key[i])
		if err != nil {
			return "", nil, fmt.Errorf("column %s: %w", k, err)
		}
		args = append(args, a)
		cond += fmt.Sprintf(" AND %s = $%d", quoteIdent(k), len(args))
	}
	return cond, args, nil
}

// ReadKeys returns the subject's rows of t with the given keys, read as
// ReadSubjects reads them, on one snapshot.
func (s *Store) ReadKeys(ctx context.Context, t *domicile.Table, subject string, keys [][]any) ([][]any, error) {
	if t.Via != nil {
		return nil, fmt.Errorf("read keys of %s: it reaches its subject through a path: %w", t.Name, domicile.ErrNotSupported)
	}
	t, decl, err := s.described(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make([][]any, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	sel := "SELECT " + selectList(decl, t.ColumnNames()) + " FROM " + quoteIdent(t.Name) + " WHERE "
	err = s.view(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, key := range keys {
			cond, args, err := keyCondition(t, decl, subject, key)
			if err != nil {
				return err
			}
			b.Queue(sel+cond, args...)
		}
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		for i := range keys {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			got, err := collectRows(rows)
			if err != nil {
				return err
			}
			if len(got) > 0 {
				out[i] = got[0]
			}
		}
		return br.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("read keys of %s in region %s: %w", t.Name, s.region, err)
	}
	return out, nil
}

// collectRows decodes the rows of one query and closes it.
func collectRows(rows pgx.Rows) ([][]any, error) {
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// ApplyRows writes a live copy's rows in one transaction that passes the
// triggers: each change deletes the subject's row with its key, then
// inserts the new row, if any, with a plain INSERT, so that a key held by
// another subject fails the transaction with CodeConflict.
func (s *Store) ApplyRows(ctx context.Context, ds *domicile.Dataset, moveID string, changes []domicile.RowChange) error {
	if moveID == "" {
		return domicile.Errorf(domicile.CodeInvalid, "applying rows needs a move id")
	}
	tables, decls, err := s.describedDataset(ctx, ds)
	if err != nil {
		return err
	}
	index := make(map[string]int, len(tables))
	for i, t := range tables {
		index[t.Name] = i
	}
	var subjects []string
	seen := make(map[string]bool)
	b := &pgx.Batch{}
	type stmt struct {
		table  string
		insert bool
	}
	var stmts []stmt
	written := make(map[string][][]any) // table → rows inserted, for their sequences
	for _, c := range changes {
		i, ok := index[c.Table]
		if !ok {
			return domicile.Errorf(domicile.CodeInvalid, "table %s is not in dataset %s", c.Table, ds.Name)
		}
		t, decl := tables[i], decls[i]
		if t.Via != nil {
			return fmt.Errorf("apply rows of %s: it reaches its subject through a path: %w", t.Name, domicile.ErrNotSupported)
		}
		if c.Row != nil && len(c.Row) != len(t.Columns) {
			return domicile.Errorf(domicile.CodeInvalid, "a row of %s has %d values for %d columns", t.Name, len(c.Row), len(t.Columns))
		}
		if !seen[c.Subject] {
			seen[c.Subject] = true
			subjects = append(subjects, c.Subject)
		}
		cond, args, err := keyCondition(t, decl, c.Subject, c.Key)
		if err != nil {
			return err
		}
		b.Queue("DELETE FROM "+quoteIdent(t.Name)+" WHERE "+cond, args...)
		stmts = append(stmts, stmt{table: t.Name})
		if c.Row == nil {
			continue
		}
		cols := t.ColumnNames()
		quoted := make([]string, len(cols))
		marks := make([]string, len(cols))
		vals := make([]any, len(cols))
		for j, col := range cols {
			quoted[j] = quoteIdent(col)
			marks[j] = "$" + strconv.Itoa(j+1)
			if vals[j], err = bindValue(decl.kindOf(col), c.Row[j]); err != nil {
				return fmt.Errorf("apply rows of %s: column %s: %w", t.Name, col, err)
			}
		}
		b.Queue("INSERT INTO "+quoteIdent(t.Name)+" ("+strings.Join(quoted, ", ")+") VALUES ("+strings.Join(marks, ", ")+")", vals...)
		written[t.Name] = append(written[t.Name], c.Row)
		stmts = append(stmts, stmt{table: t.Name, insert: true})
	}
	if len(changes) == 0 {
		return nil
	}
	err = s.bypass(ctx, func(tx pgx.Tx) error {
		in, err := subjectsIn(ctx, tx, ds.Name, moveID, domicile.Incoming, subjects)
		if err != nil {
			return err
		}
		if len(in) != len(subjects) {
			return &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrPrecondition,
				Message: fmt.Sprintf("%d of %d subjects are not incoming under move %s", len(subjects)-len(in), len(subjects), moveID)}
		}
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		for _, st := range stmts {
			if _, err := br.Exec(); err != nil {
				if st.insert && isConflict(err) {
					return &domicile.Error{Code: domicile.CodeConflict,
						Message: fmt.Sprintf("a key of %s is held by another subject", st.table), Err: err}
				}
				return fmt.Errorf("write %s: %w", st.table, err)
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		for i, t := range tables {
			if rows := written[t.Name]; len(rows) > 0 {
				if err := advanceSequences(ctx, tx, t.Name, decls[i].seqs, t.ColumnNames(), rows); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply %d rows of %s in region %s: %w", len(changes), ds.Name, s.region, err)
	}
	return nil
}

// CountSubjects returns the row counts of the subjects with more than min
// rows in the dataset's tables, on one snapshot.
func (s *Store) CountSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, min int64) (map[string]int64, error) {
	counts := make(map[string]int64)
	err := s.view(ctx, func(tx pgx.Tx) error {
		for _, t := range ds.Tables {
			var q string
			if t.Via == nil {
				decl, err := s.table(ctx, t.Name)
				if err != nil {
					return err
				}
				col := quoteIdent(t.SubjectColumn)
				q = `SELECT ` + col + `::text, count(*) FROM ` + quoteIdent(t.Name) + ` WHERE ` +
					subjectParam(decl, t.SubjectColumn, col, 1, true) + ` GROUP BY 1`
			} else {
				end, err := s.table(ctx, t.Via.End())
				if err != nil {
					return err
				}
				from, subj := pathJoin(t, "")
				q = `SELECT ` + subj + `::text, count(*) FROM ` + from + ` WHERE ` +
					subjectParam(end, t.Via.Subject, subj, 1, true) + ` GROUP BY 1`
			}
			rows, err := tx.Query(ctx, q, subjects)
			if err != nil {
				return fmt.Errorf("count %s: %w", t.Name, err)
			}
			for rows.Next() {
				var id string
				var n int64
				if err := rows.Scan(&id, &n); err != nil {
					rows.Close()
					return err
				}
				counts[id] += n
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("count %s: %w", t.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count subjects of %s in region %s: %w", ds.Name, s.region, err)
	}
	for id, n := range counts {
		if n <= min {
			delete(counts, id)
		}
	}
	return counts, nil
}
