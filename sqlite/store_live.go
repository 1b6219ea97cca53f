package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/domicile/domicile"
)

var _ domicile.LiveCopier = (*Store)(nil)

// A live copy captures the changes of the subjects it is copying in two
// tables: domicile_capture lists the subjects being captured, under their
// move, and domicile_changes receives, from AFTER triggers on every dataset
// table, the table, subject and primary key of every row of theirs that a
// write inserts, updates or deletes, in the transaction of the write. A
// subject not being captured costs each write one lookup in
// domicile_capture, in the trigger's WHEN clause. Keys are kept in up to
// maxCaptureKey untyped columns, so their values come back as they were
// stored; a table with a longer primary key has no capture triggers, and a
// live copy of its dataset is not supported.
const captureSchema = `
CREATE TABLE IF NOT EXISTS domicile_capture (
	subject TEXT NOT NULL,
	dataset TEXT NOT NULL,
	move_id TEXT NOT NULL,
	PRIMARY KEY (subject, dataset, move_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS domicile_changes (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	move_id TEXT NOT NULL,
	tbl     TEXT NOT NULL,
	subject TEXT NOT NULL,
	k0, k1, k2, k3
);
CREATE INDEX IF NOT EXISTS domicile_changes_move ON domicile_changes (move_id, seq);
`

// maxCaptureKey is the number of key columns of domicile_changes.
const maxCaptureKey = 4

// captureTriggerNames returns the names of the capture triggers of table.
func captureTriggerNames(table string) [3]string {
	return [3]string{"domicile_" + table + "_cap_ins", "domicile_" + table + "_cap_upd", "domicile_" + table + "_cap_del"}
}

// captureTriggerSQL returns the CREATE TRIGGER statements that record the
// changes of captured subjects in table, in the order of captureTriggerNames,
// or nothing if the table's key is too long to record. SQL that SQLite 3.40
// reads. An UPDATE records the old key and, if the key or the subject
// changed, the new one.
func captureTriggerSQL(dataset string, t *domicile.Table) []string {
	if len(t.PrimaryKey) == 0 || len(t.PrimaryKey) > maxCaptureKey {
		return nil
	}
	subj := quoteIdent(t.SubjectColumn)
	captured := func(row string) string {
		return `FROM domicile_capture WHERE subject = CAST(` + row + `.` + subj + ` AS TEXT) AND dataset = ` + quoteString(dataset)
	}
	record := func(row string) string {
		cols := []string{"move_id", "tbl", "subject"}
		vals := []string{"move_id", quoteString(t.Name), "subject"}
		for i, k := range t.PrimaryKey {
			cols = append(cols, fmt.Sprintf("k%d", i))
			vals = append(vals, row+"."+quoteIdent(k))
		}
		return `INSERT INTO domicile_changes (` + strings.Join(cols, ", ") + `) SELECT ` + strings.Join(vals, ", ") + ` ` + captured(row)
	}
	changed := []string{`NEW.` + subj + ` IS NOT OLD.` + subj}
	for _, k := range t.PrimaryKey {
		changed = append(changed, `NEW.`+quoteIdent(k)+` IS NOT OLD.`+quoteIdent(k))
	}
	names := captureTriggerNames(t.Name)
	head := func(i int, event, when string) string {
		return `CREATE TRIGGER ` + quoteIdent(names[i]) + ` AFTER ` + event + ` ON ` + quoteIdent(t.Name) + `
WHEN ` + when + `
BEGIN
  `
	}
	exists := func(row string) string { return `EXISTS (SELECT 1 ` + captured(row) + `)` }
	return []string{
		head(0, "INSERT", exists("NEW")) + record("NEW") + `;
END`,
		head(1, "UPDATE", `EXISTS (SELECT 1 FROM domicile_capture WHERE subject IN (CAST(OLD.`+subj+` AS TEXT), CAST(NEW.`+subj+` AS TEXT)) AND dataset = `+quoteString(dataset)+`)`) +
			record("OLD") + `;
  ` + record("NEW") + ` AND (` + strings.Join(changed, " OR ") + `);
END`,
		head(2, "DELETE", exists("OLD")) + record("OLD") + `;
END`,
	}
}

// installCapture creates, again, the capture triggers of a dataset table.
func installCapture(ctx context.Context, tx *sql.Tx, ds *domicile.Dataset, t *domicile.Table) error {
	for _, name := range captureTriggerNames(t.Name) {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS `+quoteIdent(name)); err != nil {
			return err
		}
	}
	if t.Via != nil {
		return nil // reaches its subject through a path: not captured (see liveTables)
	}
	have, err := describeTable(ctx, tx, t.Name)
	if err != nil {
		return err
	}
	have.SubjectColumn = t.SubjectColumn
	for _, q := range captureTriggerSQL(ds.Name, have) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create capture trigger on %s: %w", t.Name, err)
		}
	}
	return nil
}

// checkCapture adds the problems of a table's capture triggers, given the
// store's schema objects (type:name → sql).
func checkCapture(ctx context.Context, tx *sql.Tx, objects map[string]string, ds *domicile.Dataset, t *domicile.Table, add func(string, ...any)) error {
	if t.Via != nil {
		return nil
	}
	have, err := describeTable(ctx, tx, t.Name)
	if err != nil {
		return err
	}
	have.SubjectColumn = t.SubjectColumn
	for i, want := range captureTriggerSQL(ds.Name, have) {
		name := captureTriggerNames(t.Name)[i]
		switch got, ok := objects["trigger:"+name]; {
		case !ok:
			add("trigger %s on %s is missing", name, t.Name)
		case got != want:
			add("trigger %s on %s is out of date", name, t.Name)
		}
	}
	return nil
}

// captureDigest returns what the capture triggers of the datasets add to the
// installation's version.
func captureDigest(datasets []*domicile.Dataset) string {
	var b strings.Builder
	b.WriteString(captureSchema)
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			b.WriteString(t.Name + "\x00" + t.SubjectColumn + "\x00")
		}
	}
	return b.String()
}

// liveTables returns the dataset's tables described, or ErrNotSupported if
// a table's changes cannot be captured here: its key is too long, or the
// store's installation predates capture.
func (s *Store) liveTables(ctx context.Context, ds *domicile.Dataset) ([]*domicile.Table, error) {
	for _, t := range ds.Tables {
		if t.Via != nil {
			return nil, fmt.Errorf("live copy of dataset %s: table %s reaches its subject through a path: %w", ds.Name, t.Name, domicile.ErrNotSupported)
		}
	}
	tables, err := s.describedDataset(ctx, ds)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if len(t.PrimaryKey) > maxCaptureKey {
			return nil, fmt.Errorf("live copy of %s: its key has %d columns, more than %d: %w", t.Name, len(t.PrimaryKey), maxCaptureKey, domicile.ErrNotSupported)
		}
		var n int
		err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = ?`, captureTriggerNames(t.Name)[0]).Scan(&n)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("live copy of %s in region %s: no capture triggers (run install): %w", t.Name, s.region, domicile.ErrNotSupported)
		}
	}
	return tables, nil
}

// StartCapture begins recording the changes to the subjects' rows: from the
// commit of its transaction on, every write of theirs also records its key
// in domicile_changes, in the write's transaction.
func (s *Store) StartCapture(ctx context.Context, ds *domicile.Dataset, moveID string, subjects []string) (domicile.Snapshot, error) {
	if moveID == "" {
		return nil, domicile.Errorf(domicile.CodeInvalid, "a capture needs a move id")
	}
	if _, err := s.liveTables(ctx, ds); err != nil {
		return nil, err
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		// An earlier start's records go first.
		if _, err := tx.ExecContext(ctx, `DELETE FROM domicile_changes WHERE move_id = ?`, moveID); err != nil {
			return err
		}
		for _, id := range subjects {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO domicile_capture (subject, dataset, move_id) VALUES (?, ?, ?)`, id, ds.Name, moveID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("start capture of %d subjects of %s in region %s: %w", len(subjects), ds.Name, s.region, err)
	}
	return domicile.CurrentRows(s), nil
}

// ReadChanges returns the changes recorded under moveID after the sequence
// number after. SQLite has one writer, and the sequence numbers grow in the
// order the writes commit.
func (s *Store) ReadChanges(ctx context.Context, ds *domicile.Dataset, moveID string, after int64, limit int) ([]domicile.Change, error) {
	tables, err := s.liveTables(ctx, ds)
	if err != nil {
		return nil, err
	}
	keyLen := make(map[string]int, len(tables))
	for _, t := range tables {
		keyLen[t.Name] = len(t.PrimaryKey)
	}
	if limit <= 0 {
		limit = -1 // no limit
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT seq, tbl, subject, k0, k1, k2, k3 FROM domicile_changes
		WHERE move_id = ? AND seq > ? ORDER BY seq LIMIT ?`, moveID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read changes in region %s: %w", s.region, err)
	}
	defer rows.Close()
	var out []domicile.Change
	for rows.Next() {
		var c domicile.Change
		var k [maxCaptureKey]any
		if err := rows.Scan(&c.Seq, &c.Table, &c.Subject, &k[0], &k[1], &k[2], &k[3]); err != nil {
			return nil, err
		}
		n, ok := keyLen[c.Table]
		if !ok {
			return nil, fmt.Errorf("read changes in region %s: change of table %s, not in dataset %s", s.region, c.Table, ds.Name)
		}
		c.Key = make([]any, n)
		for i := range n {
			c.Key[i] = normalize(k[i])
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// EndCapture stops recording under moveID and deletes its records.
func (s *Store) EndCapture(ctx context.Context, ds *domicile.Dataset, moveID string) error {
	err := s.update(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM domicile_capture WHERE move_id = ? AND dataset = ?`, moveID, ds.Name); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM domicile_changes WHERE move_id = ?`, moveID)
		return err
	})
	if err != nil {
		return fmt.Errorf("end capture of move %s in region %s: %w", moveID, s.region, err)
	}
	return nil
}

// keyWhere returns "subj = ? AND k1 = ? AND …" for t.
func keyWhere(t *domicile.Table) string {
	parts := []string{quoteIdent(t.SubjectColumn) + " = ?"}
	for _, k := range t.PrimaryKey {
		parts = append(parts, quoteIdent(k)+" = ?")
	}
	return strings.Join(parts, " AND ")
}

// keyArgs returns the arguments of keyWhere.
func keyArgs(t *domicile.Table, subject string, key []any) ([]any, error) {
	if len(key) != len(t.PrimaryKey) {
		return nil, domicile.Errorf(domicile.CodeInvalid, "a key of %s needs %d values, not %d", t.Name, len(t.PrimaryKey), len(key))
	}
	args := make([]any, 0, 1+len(key))
	args = append(args, subject)
	for _, v := range key {
		args = append(args, bindValue(v))
	}
	return args, nil
}

// ReadKeys returns the subject's rows of t with the given keys, in one read
// transaction.
func (s *Store) ReadKeys(ctx context.Context, t *domicile.Table, subject string, keys [][]any) ([][]any, error) {
	t, err := s.described(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make([][]any, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	cols := t.ColumnNames()
	err = s.view(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `SELECT `+selectList(cols)+` FROM `+quoteIdent(t.Name)+` WHERE `+keyWhere(t))
		if err != nil {
			return err
		}
		defer st.Close()
		for i, key := range keys {
			args, err := keyArgs(t, subject, key)
			if err != nil {
				return err
			}
			row := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for j := range row {
				ptrs[j] = &row[j]
			}
			switch err := st.QueryRowContext(ctx, args...).Scan(ptrs...); err {
			case nil:
				for j := range row {
					row[j] = normalize(row[j])
				}
				out[i] = row
			case sql.ErrNoRows:
			default:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read keys of %s in region %s: %w", t.Name, s.region, err)
	}
	return out, nil
}

// ApplyRows writes a live copy's rows: each change deletes the subject's
// row with its key, then inserts the new row, if any, with a plain INSERT,
// so that a key held by another subject fails the transaction.
func (s *Store) ApplyRows(ctx context.Context, ds *domicile.Dataset, moveID string, changes []domicile.RowChange) error {
	if moveID == "" {
		return domicile.Errorf(domicile.CodeInvalid, "applying rows needs a move id")
	}
	tables, err := s.describedDataset(ctx, ds)
	if err != nil {
		return err
	}
	byName := make(map[string]*domicile.Table, len(tables))
	for _, t := range tables {
		byName[t.Name] = t
	}
	var subjects []string
	seen := make(map[string]bool)
	for _, c := range changes {
		t := byName[c.Table]
		if t == nil {
			return domicile.Errorf(domicile.CodeInvalid, "table %s is not in dataset %s", c.Table, ds.Name)
		}
		if c.Row != nil && len(c.Row) != len(t.Columns) {
			return domicile.Errorf(domicile.CodeInvalid, "a row of %s has %d values for %d columns", t.Name, len(c.Row), len(t.Columns))
		}
		if !seen[c.Subject] {
			seen[c.Subject] = true
			subjects = append(subjects, c.Subject)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	err = s.bypass(ctx, func(tx *sql.Tx) error {
		in, err := subjectsIn(ctx, tx, ds.Name, moveID, domicile.Incoming, subjects)
		if err != nil {
			return err
		}
		if len(in) != len(subjects) {
			return &domicile.Error{Code: domicile.CodeConflict, Err: domicile.ErrPrecondition,
				Message: fmt.Sprintf("%d of %d subjects are not incoming under move %s", len(subjects)-len(in), len(subjects), moveID)}
		}
		type stmts struct{ del, ins *sql.Stmt }
		prepared := make(map[string]stmts)
		defer func() {
			for _, p := range prepared {
				p.del.Close()
				p.ins.Close()
			}
		}()
		for _, c := range changes {
			t := byName[c.Table]
			p, ok := prepared[t.Name]
			if !ok {
				if p.del, err = tx.PrepareContext(ctx, `DELETE FROM `+quoteIdent(t.Name)+` WHERE `+keyWhere(t)); err != nil {
					return err
				}
				cols := t.ColumnNames()
				quoted := make([]string, len(cols))
				for i, c := range cols {
					quoted[i] = quoteIdent(c)
				}
				if p.ins, err = tx.PrepareContext(ctx, `INSERT INTO `+quoteIdent(t.Name)+` (`+strings.Join(quoted, ", ")+`) VALUES (`+placeholders(len(cols))+`)`); err != nil {
					p.del.Close()
					return err
				}
				prepared[t.Name] = p
			}
			args, err := keyArgs(t, c.Subject, c.Key)
			if err != nil {
				return err
			}
			if _, err := p.del.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("delete from %s: %w", t.Name, err)
			}
			if c.Row == nil {
				continue
			}
			vals := make([]any, len(c.Row))
			for i, v := range c.Row {
				vals[i] = bindValue(v)
			}
			if _, err := p.ins.ExecContext(ctx, vals...); err != nil {
				if isConflict(err) {
					return &domicile.Error{Code: domicile.CodeConflict,
						Message: fmt.Sprintf("a key of %s is held by another subject", t.Name), Err: err}
				}
				return fmt.Errorf("insert into %s: %w", t.Name, err)
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
// rows in the dataset's tables, counted on the subject index.
func (s *Store) CountSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, min int64) (map[string]int64, error) {
	counts := make(map[string]int64)
	err := s.view(ctx, func(tx *sql.Tx) error {
		for _, t := range ds.Tables {
			from, subj := quoteIdent(t.Name), quoteIdent(t.SubjectColumn)
			if t.SubjectColumn == "" { // a path table: count the rows each subject reaches
				from, subj = pathJoin(t)
			}
			prefix := `SELECT CAST(` + subj + ` AS TEXT), count(*) FROM ` + from + ` WHERE ` + subj + ` IN (`
			err := inChunks(nil, subjects, func(n int, args []any) error {
				rows, err := tx.QueryContext(ctx, prefix+placeholders(n)+`) GROUP BY 1`, args...)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var id string
					var k int64
					if err := rows.Scan(&id, &k); err != nil {
						return err
					}
					counts[id] += k
				}
				return rows.Err()
			})
			if err != nil {
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
