package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/domicile/domicile"
)

// installSchema is domicile's own tables in a regional store. A bypass row
// exists only inside a transaction of the store's bulk methods (the mover's
// writes), which inserts it first and deletes it before committing.
const installSchema = `
CREATE TABLE IF NOT EXISTS domicile_owner (
	subject TEXT NOT NULL,
	dataset TEXT NOT NULL,
	state   TEXT NOT NULL,
	region  TEXT NOT NULL DEFAULT '',
	epoch   INTEGER NOT NULL DEFAULT 0,
	move_id TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (subject, dataset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS domicile_settings (
	key   TEXT PRIMARY KEY,
	value TEXT
);
CREATE TABLE IF NOT EXISTS domicile_bypass (
	id INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS domicile_deleting (
	tbl       TEXT NOT NULL,
	col       TEXT NOT NULL,
	k_integer INTEGER,
	k_real    REAL,
	k_numeric NUMERIC,
	k_text    TEXT,
	k_blob    BLOB
);
CREATE INDEX IF NOT EXISTS domicile_deleting_col ON domicile_deleting (tbl, col);
`

// installVersion is bumped when the shape of the trigger SQL changes in a
// way the generated text does not show.
const installVersion = "2"

// triggerNames returns the names of the three triggers of table.
func triggerNames(table string) [3]string {
	return [3]string{"domicile_" + table + "_ins", "domicile_" + table + "_upd", "domicile_" + table + "_del"}
}

// triggerSQL returns the CREATE TRIGGER statements of table t of dataset,
// in the order of triggerNames: those of pathTriggerSQL for a table with a
// path, otherwise those of subjectTriggerSQL.
func triggerSQL(dataset string, t *domicile.Table, keys *pathKeys) [3]string {
	marks := keys.marks[t.Name]
	onInsert, onUpdate, onDelete := clearMarks(t.Name, marks), markUpdating(t.Name, marks), markDeleting(t.Name, marks)
	if t.Via != nil {
		var parent markedColumn
		if keys.keyed[t.Name] {
			h := t.Via.Hops[0]
			i := slices.IndexFunc(keys.marks[h.Table], func(m markedColumn) bool { return m.name == h.Match })
			parent = keys.marks[h.Table][i]
		}
		return pathTriggerSQL(dataset, t, keys.keyed[t.Name], parent, keys.unique[t.Name], marks, onInsert, onUpdate, onDelete)
	}
	return subjectTriggerSQL(dataset, t, keys.unique[t.Name], marks, onInsert, onUpdate, onDelete)
}

// subjectTriggerSQL returns the CREATE TRIGGER statements of a table of
// dataset whose subject column is subj, in the order of triggerNames;
// onInsert, onUpdate and onDelete are appended to the INSERT, UPDATE and
// DELETE triggers (clearMarks, markUpdating, markDeleting).
//
// Each trigger looks the subject up once in domicile_owner and raises one of
// the fixed messages of domicile's sentinels, never a message built from
// values, in SQL that SQLite 3.40 reads. An UPDATE is checked against the
// old subject and, if the subject column changes, the new one.
func subjectTriggerSQL(dataset string, t *domicile.Table, unique []uniqueKey, marks []markedColumn, onInsert, onUpdate, onDelete string) [3]string {
	table, subj := t.Name, t.SubjectColumn
	checkAs := func(row string, msg func(error) string) string {
		ref := "CAST(" + row + "." + quoteIdent(subj) + " AS TEXT)"
		return `SELECT CASE (SELECT state FROM domicile_owner WHERE subject = ` + ref + ` AND dataset = ` + quoteString(dataset) + `)
    WHEN 'owned' THEN NULL
    WHEN 'fenced' THEN RAISE(ABORT, ` + msg(domicile.ErrFenced) + `)
    WHEN 'incoming' THEN RAISE(ABORT, ` + msg(domicile.ErrIncoming) + `)
    WHEN 'moved' THEN RAISE(ABORT, ` + msg(domicile.ErrMoved) + `)
    ELSE CASE WHEN (SELECT value FROM domicile_settings WHERE key = 'accept_unknown') IS '1' THEN NULL
      ELSE RAISE(ABORT, ` + msg(domicile.ErrUnknown) + `) END
  END`
	}
	check := func(row string) string { return checkAs(row, refusalMessage) }
	held := func(row string) string { return checkAs(row, keyHeldMessage) }
	names := triggerNames(table)
	head := func(i int, event string) string {
		return `CREATE TRIGGER ` + quoteIdent(names[i]) + ` BEFORE ` + event + ` ON ` + quoteIdent(table) + `
WHEN NOT EXISTS (SELECT 1 FROM domicile_bypass)
BEGIN
  `
	}
	col := quoteIdent(subj)
	return [3]string{
		head(0, "INSERT") + check("NEW") + conflictChecks(t, unique, false, marks, held) + onInsert + `;
END`,
		head(1, "UPDATE") + check("OLD") + `;
  ` + check("NEW") + ` WHERE NEW.` + col + ` IS NOT OLD.` + col + conflictChecks(t, unique, true, marks, held) + onUpdate + `;
END`,
		head(2, "DELETE") + check("OLD") + `;` + onDelete + `
END`,
	}
}

// installDigest is the version of an installation of datasets: a digest of
// its trigger SQL.
func installDigest(datasets []*domicile.Dataset, keys *pathKeys) string {
	h := sha256.New()
	h.Write([]byte(installVersion + "\n"))
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			for _, q := range triggerSQL(ds.Name, t, keys) {
				h.Write([]byte(q))
				h.Write([]byte{0})
			}
			for _, tg := range unmarkTriggers(t.Name, keys.marks[t.Name]) {
				h.Write([]byte(tg[1]))
				h.Write([]byte{0})
			}
		}
	}
	h.Write([]byte(captureDigest(datasets)))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Install creates domicile's tables, the dataset tables the store lacks, an
// index on every table's subject column, and the triggers, in one
// transaction. Existing triggers are dropped and created again.
func (s *Store) Install(ctx context.Context, datasets []*domicile.Dataset, opts domicile.InstallOptions) error {
	if err := validateDatasets(datasets); err != nil {
		return err
	}
	accept := "0"
	if opts.AcceptUnknown {
		accept = "1"
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, installSchema+captureSchema); err != nil {
			return err
		}
		// No committed bypass row can exist; clear one anyway, as it would
		// open every table to every writer.
		if _, err := tx.ExecContext(ctx, `DELETE FROM domicile_bypass; DELETE FROM domicile_deleting`); err != nil {
			return err
		}
		if err := setSetting(ctx, tx, "accept_unknown", accept); err != nil {
			return err
		}
		for _, name := range opts.Global {
			if err := installGlobal(ctx, tx, name, opts); err != nil {
				return err
			}
		}
		// Every table first: the triggers of a path table read the tables
		// of its path.
		for _, ds := range datasets {
			for _, t := range ds.Tables {
				if err := ensureTable(ctx, tx, ds, t, opts); err != nil {
					return err
				}
			}
		}
		keys, err := parentKeys(ctx, tx, datasets)
		if err != nil {
			return err
		}
		for _, ds := range datasets {
			for _, t := range ds.Tables {
				if err := installTable(ctx, tx, ds, t, keys, opts); err != nil {
					return err
				}
			}
		}
		return setSetting(ctx, tx, "install_version", installDigest(datasets, keys))
	})
	if err != nil {
		return fmt.Errorf("install in region %s: %w", s.region, err)
	}
	s.mu.Lock()
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			s.datasets[t.Name] = ds.Name
		}
	}
	s.mu.Unlock()
	return nil
}

func validateDatasets(datasets []*domicile.Dataset) error {
	seen := make(map[string]string)
	for _, ds := range datasets {
		if ds.Name == "" {
			return domicile.Errorf(domicile.CodeInvalid, "a dataset has no name")
		}
		for _, t := range ds.Tables {
			if t.Name == "" || (t.SubjectColumn == "") == (t.Via == nil) {
				return domicile.Errorf(domicile.CodeInvalid, "dataset %s: a table needs a name and either a subject column or a path", ds.Name)
			}
			if t.Via != nil && (len(t.Via.Hops) == 0 || t.Via.Subject == "" || ds.Table(t.Via.End()) == nil) {
				return domicile.Errorf(domicile.CodeInvalid, "dataset %s: the path of table %s does not end at a subject column of the dataset", ds.Name, t.Name)
			}
			if other, ok := seen[t.Name]; ok {
				return domicile.Errorf(domicile.CodeInvalid, "table %s is in datasets %s and %s", t.Name, other, ds.Name)
			}
			seen[t.Name] = ds.Name
		}
	}
	return nil
}

func setSetting(ctx context.Context, tx *sql.Tx, key, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO domicile_settings (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// ensureTable creates a dataset table the store lacks from its template.
func ensureTable(ctx context.Context, tx *sql.Tx, ds *domicile.Dataset, t *domicile.Table, opts domicile.InstallOptions) error {
	_, err := describeTable(ctx, tx, t.Name)
	if domicile.ErrorCode(err) != domicile.CodeNotFound {
		return err
	}
	tmpl := opts.Templates[t.Name]
	if tmpl == nil && len(t.Columns) > 0 {
		tmpl = t
	}
	if tmpl == nil {
		return domicile.Errorf(domicile.CodeInvalid, "table %s of dataset %s is missing and there is no template for it", t.Name, ds.Name)
	}
	return createTable(ctx, tx, t.Name, tmpl, opts.TemplateIndexes[t.Name])
}

func installTable(ctx context.Context, tx *sql.Tx, ds *domicile.Dataset, t *domicile.Table, keys *pathKeys, opts domicile.InstallOptions) error {
	have, err := describeTable(ctx, tx, t.Name)
	if domicile.ErrorCode(err) == domicile.CodeNotFound {
		tmpl := opts.Templates[t.Name]
		if tmpl == nil && len(t.Columns) > 0 {
			tmpl = t
		}
		if tmpl == nil {
			return domicile.Errorf(domicile.CodeInvalid, "table %s of dataset %s is missing and there is no template for it", t.Name, ds.Name)
		}
		if err := createTable(ctx, tx, t.Name, tmpl, opts.TemplateIndexes[t.Name]); err != nil {
			return err
		}
		have, err = describeTable(ctx, tx, t.Name)
	}
	if err != nil {
		return err
	}
	if t.Via != nil {
		if err := checkPath(ctx, tx, t, have); err != nil {
			return err
		}
		if err := ensurePathIndexes(ctx, tx, t); err != nil {
			return err
		}
	} else {
		if !have.HasColumn(t.SubjectColumn) {
			return domicile.Errorf(domicile.CodeInvalid, "table %s has no subject column %q", t.Name, t.SubjectColumn)
		}
		if err := ensureSubjectIndex(ctx, tx, t.Name, t.SubjectColumn); err != nil {
			return err
		}
	}
	for i, q := range triggerSQL(ds.Name, t, keys) {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS `+quoteIdent(triggerNames(t.Name)[i])); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create trigger on %s: %w", t.Name, err)
		}
	}
	for _, name := range unmarkNames(t.Name) {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS `+quoteIdent(name)); err != nil {
			return err
		}
	}
	for _, tg := range unmarkTriggers(t.Name, keys.marks[t.Name]) {
		if _, err := tx.ExecContext(ctx, tg[1]); err != nil {
			return fmt.Errorf("create trigger on %s: %w", t.Name, err)
		}
	}
	if err := installCapture(ctx, tx, ds, t); err != nil {
		return err
	}
	return setSetting(ctx, tx, tableKey(t.Name), ds.Name)
}

// createTable creates table name from a description read from another
// store, possibly of another engine, and its indexes.
func createTable(ctx context.Context, tx *sql.Tx, name string, tmpl *domicile.Table, indexes []string) error {
	if len(tmpl.PrimaryKey) == 0 {
		return domicile.Errorf(domicile.CodeInvalid, "template of table %s has no primary key", name)
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE " + quoteIdent(name) + " (")
	for i, c := range tmpl.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c.Name))
		if typ := sqliteType(c.Type); typ != "" {
			b.WriteString(" " + typ)
		}
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
	}
	b.WriteString(", PRIMARY KEY (")
	for i, c := range tmpl.PrimaryKey {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString("))")
	if _, err := tx.ExecContext(ctx, b.String()); err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	for _, q := range indexes {
		if _, err := tx.ExecContext(ctx, retargetIndex(q)); err != nil {
			return fmt.Errorf("create index on %s: %w", name, err)
		}
	}
	return nil
}

// typeRe accepts the declared types SQLite parses: names with an optional
// size.
var typeRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_ ]*(\(\s*[0-9]+\s*(,\s*[0-9]+\s*)?\))?$`)

// sqliteType returns a declared type for SQLite from one another engine
// declared, keeping it where SQLite would give it the same affinity.
func sqliteType(t string) string {
	t = strings.TrimSpace(t)
	switch strings.ToLower(t) {
	case "bytea":
		return "BLOB"
	case "json", "jsonb", "uuid":
		return "TEXT"
	}
	if strings.HasSuffix(t, "[]") || !typeRe.MatchString(t) {
		return "" // no affinity: values are kept as given
	}
	return t
}

var (
	createIndexRe = regexp.MustCompile(`(?is)^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(IF\s+NOT\s+EXISTS\s+)?`)
	usingRe       = regexp.MustCompile(`(?i)\s+USING\s+btree\s*`)
	schemaRe      = regexp.MustCompile(`(?i)\bON\s+(ONLY\s+)?("?public"?\.)?`)
)

// retargetIndex makes a CREATE INDEX statement read from another store
// runnable here: IF NOT EXISTS, and without PostgreSQL's schema and access
// method.
func retargetIndex(q string) string {
	q = createIndexRe.ReplaceAllString(q, "CREATE ${1}INDEX IF NOT EXISTS ")
	q = usingRe.ReplaceAllString(q, " ")
	return schemaRe.ReplaceAllString(q, "ON ")
}

// ensureSubjectIndex creates an index on table's subject column unless an
// index starts with it.
func ensureSubjectIndex(ctx context.Context, tx *sql.Tx, table, subj string) error {
	ok, err := hasSubjectIndex(ctx, tx, table, subj)
	if err != nil || ok {
		return err
	}
	_, err = tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+quoteIdent("domicile_"+table+"_subject")+
		` ON `+quoteIdent(table)+` (`+quoteIdent(subj)+`)`)
	return err
}

func hasSubjectIndex(ctx context.Context, q querierCtx, table, subj string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii
		WHERE ii.seqno = 0 AND ii.name = ?`, table, subj).Scan(&n)
	return n > 0, err
}

// CheckInstall returns what is missing or out of date in the installation
// of datasets, one line per problem.
func (s *Store) CheckInstall(ctx context.Context, datasets []*domicile.Dataset) ([]string, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	err := s.view(ctx, func(tx *sql.Tx) error {
		objects := make(map[string]string) // type:name → sql
		rows, err := tx.QueryContext(ctx, `SELECT type, name, coalesce(sql, '') FROM sqlite_schema`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var typ, name, q string
			if err := rows.Scan(&typ, &name, &q); err != nil {
				rows.Close()
				return err
			}
			objects[typ+":"+name] = q
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var missing bool
		for _, name := range []string{"domicile_owner", "domicile_settings", "domicile_bypass", "domicile_deleting", "domicile_capture", "domicile_changes"} {
			if _, ok := objects["table:"+name]; !ok {
				add("table %s is missing", name)
				missing = true
			}
		}
		if missing {
			return nil
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM domicile_bypass`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			add("domicile_bypass holds %d committed rows: the triggers let every write through", n)
		}
		var version string
		err = tx.QueryRowContext(ctx, `SELECT value FROM domicile_settings WHERE key = 'install_version'`).Scan(&version)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		keys, err := parentKeys(ctx, tx, datasets)
		if err != nil {
			return err
		}
		if err := checkMarks(ctx, tx, keys, add); err != nil {
			return err
		}
		if want := installDigest(datasets, keys); version != want {
			add("installation is out of date (version %q, current %q)", version, want)
		}
		for _, ds := range datasets {
			for _, t := range ds.Tables {
				if _, ok := objects["table:"+t.Name]; !ok {
					add("table %s of dataset %s is missing", t.Name, ds.Name)
					continue
				}
				for i, want := range triggerSQL(ds.Name, t, keys) {
					name := triggerNames(t.Name)[i]
					switch have, ok := objects["trigger:"+name]; {
					case !ok:
						add("trigger %s on %s is missing", name, t.Name)
					case have != want:
						add("trigger %s on %s is out of date", name, t.Name)
					}
				}
				unmark := unmarkTriggers(t.Name, keys.marks[t.Name])
				for i, name := range unmarkNames(t.Name) {
					have, ok := objects["trigger:"+name]
					switch {
					case i < len(unmark) && !ok:
						add("trigger %s on %s is missing", name, t.Name)
					case i < len(unmark) && have != unmark[i][1]:
						add("trigger %s on %s is out of date", name, t.Name)
					case i >= len(unmark) && ok:
						add("trigger %s on %s is left over", name, t.Name)
					}
				}
				if err := checkCapture(ctx, tx, objects, ds, t, add); err != nil {
					return err
				}
				if t.Via == nil {
					ok, err := hasSubjectIndex(ctx, tx, t.Name, t.SubjectColumn)
					if err != nil {
						return err
					}
					if !ok {
						add("table %s has no index on its subject column %s", t.Name, t.SubjectColumn)
					}
				}
				var got string
				err = tx.QueryRowContext(ctx, `SELECT value FROM domicile_settings WHERE key = ?`, tableKey(t.Name)).Scan(&got)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				if got != ds.Name {
					add("table %s is not installed as part of dataset %s", t.Name, ds.Name)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check install in region %s: %w", s.region, err)
	}
	slices.Sort(problems)
	return problems, nil
}

// checkMarks reports the marks (markDeleting, markUpdating) of parent rows
// that are gone: a deletion or key change that did not finish (an
// application's trigger ended it with RAISE(IGNORE) or RAISE(FAIL)) left
// them, and they would let rows that pointed to those parents pass for
// rows going with them. A mark of a parent that is there does no harm.
func checkMarks(ctx context.Context, tx *sql.Tx, keys *pathKeys, add func(string, ...any)) error {
	tables := slices.Sorted(maps.Keys(keys.marks))
	for _, table := range tables {
		for _, m := range keys.marks[table] {
			var n int
			err := tx.QueryRowContext(ctx, `SELECT count(*) FROM domicile_deleting AS d WHERE d.tbl = ? AND d.col = ?
				AND NOT EXISTS (SELECT 1 FROM `+quoteIdent(table)+` AS p WHERE p.`+quoteIdent(m.name)+` = d.`+m.slot+`)`, table, m.name).Scan(&n)
			if err != nil {
				return err
			}
			if n > 0 {
				add("domicile_deleting holds %d marks of %s rows that are gone, left by a deletion or key change that did not finish its row (an application's trigger's RAISE(IGNORE) or RAISE(FAIL)): install clears them", n, table)
			}
		}
	}
	return nil
}
