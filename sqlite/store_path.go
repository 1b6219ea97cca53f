package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/domicile/domicile"
)

// A table with a path (domicile.Path) has no subject column: every query
// that selects a subject's rows finds them through the path's tables, with
// nested IN subqueries (a semi-join, which returns each row once however
// many rows of the path reach it), and the triggers look the subject up
// through the row's parents.

// hopAlias is the alias of the i-th table of a path, 0 being the path's
// own table.
func hopAlias(i int) string { return "domicile_h" + strconv.Itoa(i) }

// qualified returns table, prefixed with schema if there is one.
func qualified(schema, table string) string {
	if schema == "" {
		return quoteIdent(table)
	}
	return quoteIdent(schema) + "." + quoteIdent(table)
}

// subjectCond returns the condition that a row of t (named as the FROM
// clause names it, unaliased) belongs to a subject for which cond, applied
// to the subject column that names it, holds: cond is " = ?" or
// " IN (?, ?, …)". The path's tables are read from schema ("" for main).
func subjectCond(t *domicile.Table, schema, cond string) string {
	if t.Via == nil {
		return quoteIdent(t.SubjectColumn) + cond
	}
	hops := t.Via.Hops
	var b strings.Builder
	b.WriteString(quoteIdent(hops[0].Column) + " IN (")
	for i, h := range hops {
		a := hopAlias(i + 1)
		next := t.Via.Subject
		if i+1 < len(hops) {
			next = hops[i+1].Column
		}
		b.WriteString("SELECT " + a + "." + quoteIdent(h.Match) + " FROM " + qualified(schema, h.Table) + " AS " + a +
			" WHERE " + a + "." + quoteIdent(next))
		if i+1 < len(hops) {
			b.WriteString(" IN (")
		}
	}
	b.WriteString(cond)
	b.WriteString(strings.Repeat(")", len(hops)))
	return b.String()
}

// subjectIn is subjectCond for n subjects bound as parameters.
func subjectIn(t *domicile.Table, schema string, n int) string {
	return subjectCond(t, schema, " IN ("+placeholders(n)+")")
}

// pathJoin returns the FROM clause joining a path table (alias
// domicile_h0) to the tables of its path, and the expression of the
// subject they reach.
func pathJoin(t *domicile.Table) (from, subject string) {
	var b strings.Builder
	b.WriteString(quoteIdent(t.Name) + " AS " + hopAlias(0))
	prev := hopAlias(0) + "." + quoteIdent(t.Via.Hops[0].Column)
	for i, h := range t.Via.Hops {
		a := hopAlias(i + 1)
		b.WriteString(" JOIN " + quoteIdent(h.Table) + " AS " + a + " ON " + a + "." + quoteIdent(h.Match) + " = " + prev)
		if i+1 < len(t.Via.Hops) {
			prev = a + "." + quoteIdent(t.Via.Hops[i+1].Column)
		}
	}
	return b.String(), hopAlias(len(t.Via.Hops)) + "." + quoteIdent(t.Via.Subject)
}

// pathCheck is the trigger statement that checks the subjects a row of a
// path table reaches (row is NEW or OLD): the least favourable state among
// them decides, an unknown subject as for a subject column. A row that
// reaches no subject is refused as unknown, except as the new row of a path
// with a reverse hop (see pathTriggerSQL).
//
// With keyed (see parentKeys), an old row whose parent is gone is accepted
// while the parent's deletion or key change is under way: the parent's
// DELETE or UPDATE trigger, having checked it, marks the old key in
// domicile_deleting, and its unmarkTriggers take the mark away once the
// row and what its keys do to other rows (an ON DELETE or ON UPDATE
// CASCADE) are done. A parent deleted without its DELETE trigger (SQLite's
// REPLACE deletes the row a new one conflicts with that way) or a row
// whose parent went earlier (deleted by a connection with foreign_keys
// off) finds no mark and is refused.
//
// parent is the first hop's match column as its table marks it.
//
// msg gives the message a refusal raises (refusalMessage, or
// keyHeldMessage for a row a write conflicts with).
func pathCheck(dataset string, t *domicile.Table, row string, msg func(error) string, keyed bool, parent markedColumn) string {
	unknown := unknownCheck(msg)
	hops := t.Via.Hops
	var from strings.Builder
	from.WriteString(quoteIdent(hops[0].Table) + " AS " + hopAlias(1))
	for i := 1; i < len(hops); i++ {
		a := hopAlias(i + 1)
		from.WriteString(" JOIN " + quoteIdent(hops[i].Table) + " AS " + a + " ON " + a + "." + quoteIdent(hops[i].Match) +
			" = " + hopAlias(i) + "." + quoteIdent(hops[i].Column))
	}
	subj := hopAlias(len(hops)) + "." + quoteIdent(t.Via.Subject)
	none := unknown
	switch {
	case t.Via.Reverses() && row == "NEW":
		none = "NULL" // no one points to it yet: see pathTriggerSQL
	case keyed && row == "OLD":
		c := row + "." + quoteIdent(hops[0].Column)
		none = `CASE WHEN ` + c + ` IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ` + quoteIdent(hops[0].Table) + ` WHERE ` +
			quoteIdent(hops[0].Match) + ` = ` + c + `)
      AND EXISTS (SELECT 1 FROM domicile_deleting WHERE ` + markCond(hops[0].Table, parent, c) + `)
      THEN NULL ELSE ` + unknown + ` END`
	}
	return `SELECT CASE (SELECT coalesce((SELECT state FROM domicile_owner WHERE subject = CAST(` + subj + ` AS TEXT) AND dataset = ` + quoteString(dataset) + `), '') AS st
      FROM ` + from.String() + `
      WHERE ` + hopAlias(1) + `.` + quoteIdent(hops[0].Match) + ` = ` + row + `.` + quoteIdent(hops[0].Column) + ` AND ` + subj + ` IS NOT NULL
      ORDER BY st = 'owned' LIMIT 1)
    WHEN 'owned' THEN NULL
    WHEN 'fenced' THEN RAISE(ABORT, ` + msg(domicile.ErrFenced) + `)
    WHEN 'incoming' THEN RAISE(ABORT, ` + msg(domicile.ErrIncoming) + `)
    WHEN 'moved' THEN RAISE(ABORT, ` + msg(domicile.ErrMoved) + `)
    WHEN '' THEN ` + unknown + `
    ELSE ` + none + `
  END`
}

// unknownCheck is the trigger expression for a subject with no ownership
// row: accepted only where the store accepts unknown subjects; msg gives
// the refusal's message.
func unknownCheck(msg func(error) string) string {
	return `CASE WHEN (SELECT value FROM domicile_settings WHERE key = 'accept_unknown') IS '1' THEN NULL
      ELSE RAISE(ABORT, ` + msg(domicile.ErrUnknown) + `) END`
}

// refusalMessage is the SQL literal of a refusal's fixed message.
func refusalMessage(r error) string { return quoteString(r.Error()) }

// keyHeldMessage is the SQL literal a check of a row a write conflicts
// with raises for every refusal (errKeyHeld): the refusal is that row's
// subject's, not the writer's.
func keyHeldMessage(error) string { return quoteString(errKeyHeld.Error()) }

// pathTriggerSQL returns the CREATE TRIGGER statements of a path table, in
// the order of triggerNames. An UPDATE is checked against the old row and,
// if the path's first column changes, the new one.
//
// A row of a path with a reverse hop (an address a customer points to)
// that no one points to may be inserted, as an application inserts the
// address before the customer that points to it; but it may not be updated
// or deleted, as a subject without an ownership row may not (unless the
// store accepts unknown subjects). On PostgreSQL a writer under REPEATABLE
// READ may not see a pointer made after its snapshot, to a subject fenced
// since: it must not take the row for no one's.
//
// onInsert, onUpdate and onDelete are appended to the INSERT, UPDATE and
// DELETE triggers (clearMarks, markUpdating, markDeleting); parent is
// pathCheck's, marks t's own marked columns.
func pathTriggerSQL(dataset string, t *domicile.Table, keyed bool, parent markedColumn, unique []uniqueKey, marks []markedColumn, onInsert, onUpdate, onDelete string) [3]string {
	names := triggerNames(t.Name)
	head := func(i int, event string) string {
		return `CREATE TRIGGER ` + quoteIdent(names[i]) + ` BEFORE ` + event + ` ON ` + quoteIdent(t.Name) + `
WHEN NOT EXISTS (SELECT 1 FROM domicile_bypass)
BEGIN
  `
	}
	col := quoteIdent(t.Via.Hops[0].Column)
	conflict := func(row string) string { return pathCheck(dataset, t, row, keyHeldMessage, false, parent) }
	return [3]string{
		head(0, "INSERT") + pathCheck(dataset, t, "NEW", refusalMessage, keyed, parent) + conflictChecks(t, unique, false, marks, conflict) + onInsert + `;
END`,
		head(1, "UPDATE") + pathCheck(dataset, t, "OLD", refusalMessage, keyed, parent) + `;
  ` + pathCheck(dataset, t, "NEW", refusalMessage, keyed, parent) + ` WHERE NEW.` + col + ` IS NOT OLD.` + col +
			conflictChecks(t, unique, true, marks, conflict) + onUpdate + `;
END`,
		head(2, "DELETE") + pathCheck(dataset, t, "OLD", refusalMessage, keyed, parent) + `;` + onDelete + `
END`,
	}
}

// pathKeys is what the triggers of an installation take from its foreign
// keys (parentKeys).
type pathKeys struct {
	// keyed holds the path tables whose path's first hop is held by a
	// foreign key: their triggers accept an old row whose parent's deletion
	// is under way (pathCheck).
	keyed map[string]bool
	// marks holds, by table, the columns that keyed tables' first hops
	// match: the table's DELETE and UPDATE triggers mark its rows' values
	// of them while they are deleted or changed (markDeleting,
	// markUpdating, unmarkTriggers).
	marks map[string][]markedColumn
	// unique holds, by table, its unique keys' columns (primary key first):
	// the INSERT and UPDATE triggers check the rows a write conflicts with
	// (conflictChecks).
	unique map[string][]uniqueKey
}

// parentKeys returns the keys of datasets' path tables: those whose path's
// first hop is held by a foreign key of the table's hop column to the hop
// table's match column (named, or its one-column primary key), a key of
// that column alone, and the columns their parents mark.
// SQLite changes a table's keys only by making the table again, which drops
// its triggers: Install then makes them as the new keys have it.
func parentKeys(ctx context.Context, q querierCtx, datasets []*domicile.Dataset) (*pathKeys, error) {
	keys := &pathKeys{keyed: make(map[string]bool), marks: make(map[string][]markedColumn), unique: make(map[string][]uniqueKey)}
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			u, err := uniqueKeys(ctx, q, t)
			if err != nil {
				return nil, err
			}
			keys.unique[t.Name] = u
		}
	}
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			if t.Via == nil || t.Via.Hops[0].Reverse {
				continue
			}
			h := t.Via.Hops[0]
			var n int
			err := q.QueryRowContext(ctx, `SELECT count(*) FROM pragma_foreign_key_list(?) AS k
				WHERE k."table" = ? COLLATE NOCASE AND k."from" = ? COLLATE NOCASE
				AND coalesce(k."to", (SELECT max(name) FROM pragma_table_info(?) WHERE pk > 0 HAVING count(*) = 1)) = ? COLLATE NOCASE
				AND (SELECT count(*) FROM pragma_foreign_key_list(?) AS o WHERE o.id = k.id) = 1`,
				t.Name, h.Table, h.Column, h.Table, h.Match, t.Name).Scan(&n)
			if err != nil {
				return nil, fmt.Errorf("foreign keys of %s: %w", t.Name, err)
			}
			if n > 0 {
				keys.keyed[t.Name] = true
				if !slices.ContainsFunc(keys.marks[h.Table], func(m markedColumn) bool { return m.name == h.Match }) {
					parent, err := describeTable(ctx, q, h.Table)
					if err != nil {
						return nil, err
					}
					var declared string
					for _, c := range parent.Columns {
						if strings.EqualFold(c.Name, h.Match) {
							declared = c.Type
						}
					}
					// The key's collation, as the parent's unique key on
					// the column has it (the parent, a table of the
					// dataset, has its keys read above), compares a
					// child's value with a mark as the foreign key compares
					// it with the parent.
					var coll string
					for _, k := range keys.unique[h.Table] {
						if len(k.cols) == 1 && strings.EqualFold(k.cols[0], h.Match) && !k.partial {
							coll = k.colls[0]
						}
					}
					keys.marks[h.Table] = append(keys.marks[h.Table], markedColumn{name: h.Match, slot: markSlot(declared), coll: coll})
				}
			}
		}
	}
	return keys, nil
}

// uniqueKey is a set of columns no two rows of a table share values of:
// the primary key, a unique index on columns, or the rowid.
type uniqueKey struct {
	cols    []string
	colls   []string // each column's collation in the key, "" for BINARY
	partial bool     // a partial index: only rows its WHERE holds for
	rowid   bool     // the rowid, or an INTEGER PRIMARY KEY naming it
}

// uniqueKeys returns t's unique keys: its primary key, its other unique
// indexes on columns, each with its columns' collations, and the rowid of
// a rowid table whose primary key is not the rowid itself. An index on an
// expression is left out: a write that conflicts with a row through it is
// not checked against that row's subject (docs/config.md).
func uniqueKeys(ctx context.Context, q querierCtx, t *domicile.Table) ([]uniqueKey, error) {
	have, err := describeTable(ctx, q, t.Name) // t may be a bare name (a template's)
	if errors.Is(err, domicile.ErrNotFound) {
		return nil, nil // CheckInstall reports the table missing
	}
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT il.name, il.origin, il.partial, ix.name, ix.coll
		FROM pragma_index_list(?) AS il, pragma_index_xinfo(il.name) AS ix
		WHERE il."unique" AND ix.key ORDER BY il.origin <> 'pk', il.name, ix.seqno`, t.Name)
	if err != nil {
		return nil, fmt.Errorf("unique keys of %s: %w", t.Name, err)
	}
	defer rows.Close()
	var keys []uniqueKey
	var names []string
	byIndex := make(map[string]*uniqueKey)
	expr := make(map[string]bool)
	hasPK := false
	for rows.Next() {
		var index, origin string
		var partial bool
		var col, coll sql.NullString
		if err := rows.Scan(&index, &origin, &partial, &col, &coll); err != nil {
			return nil, fmt.Errorf("unique keys of %s: %w", t.Name, err)
		}
		k, ok := byIndex[index]
		if !ok {
			k = &uniqueKey{partial: partial}
			byIndex[index] = k
			names = append(names, index)
		}
		hasPK = hasPK || origin == "pk"
		if !col.Valid {
			expr[index] = true
		}
		c := coll.String
		if strings.EqualFold(c, "BINARY") {
			c = ""
		}
		k.cols, k.colls = append(k.cols, col.String), append(k.colls, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unique keys of %s: %w", t.Name, err)
	}
	rowid, err := hasRowid(ctx, q, t.Name)
	if err != nil {
		return nil, err
	}
	if !hasPK && len(have.PrimaryKey) > 0 {
		// The primary key has no index of its own: it is the rowid (an
		// INTEGER PRIMARY KEY).
		keys = append(keys, uniqueKey{cols: have.PrimaryKey, colls: make([]string, len(have.PrimaryKey)), rowid: len(have.PrimaryKey) == 1})
		rowid = false
	}
	for _, n := range names {
		k := *byIndex[n]
		if expr[n] || slices.ContainsFunc(keys, func(o uniqueKey) bool {
			return slices.Equal(o.cols, k.cols) && slices.Equal(o.colls, k.colls) && !o.partial && !k.partial
		}) {
			continue
		}
		keys = append(keys, k)
	}
	if rowid {
		keys = append(keys, uniqueKey{cols: []string{"rowid"}, colls: []string{""}, rowid: true})
	}
	return keys, nil
}

// hasRowid reports whether table is a rowid table (not WITHOUT ROWID).
func hasRowid(ctx context.Context, q querierCtx, table string) (bool, error) {
	var wr bool
	err := q.QueryRowContext(ctx, `SELECT wr FROM pragma_table_list(?) WHERE schema = 'main'`, table).Scan(&wr)
	if err != nil {
		return false, fmt.Errorf("table list of %s: %w", table, err)
	}
	return !wr, nil
}

// conflictAlias is the name the triggers give a row a write conflicts with.
const conflictAlias = "domicile_old"

// conflictChecks is the trigger statements that check the rows a write of
// NEW conflicts with on a unique key (on an UPDATE, a key it changes), as
// the trigger checks OLD: SQLite's REPLACE deletes those rows without their
// DELETE triggers, so a write of an owned subject could otherwise take away
// a row of a subject fenced or moved. check returns the statement that
// checks a row, given its name. The columns are compared with the key's
// collations, as the index compares them (and can be searched); a partial
// index is checked as a whole one, on every UPDATE, which may refuse a
// write whose row the index leaves out (docs/config.md); the row itself,
// when it matches, is OLD, checked already.
//
// marks are t's marked columns (markDeleting): a row a REPLACE takes away
// goes without its DELETE trigger, so its marks, if any were left behind
// (an UPDATE OR IGNORE that skipped its row after the mark), go first, and
// the rows that pointed to it are refused as rows whose parent is gone.
func conflictChecks(t *domicile.Table, unique []uniqueKey, update bool, marks []markedColumn, check func(row string) string) string {
	var b strings.Builder
	for _, k := range unique {
		var match, changed []string
		for i, c := range k.cols {
			m := conflictAlias + "." + quoteIdent(c) + " = NEW." + quoteIdent(c)
			if k.colls[i] != "" {
				m += " COLLATE " + quoteIdent(k.colls[i])
			}
			match = append(match, m)
			changed = append(changed, "NEW."+quoteIdent(c)+" IS NOT OLD."+quoteIdent(c))
		}
		cond := strings.Join(match, " AND ")
		if update && !k.partial {
			cond = "(" + strings.Join(changed, " OR ") + ") AND " + cond
		}
		if !update && k.rowid {
			// An INSERT that leaves the rowid to SQLite sees -1 in a
			// BEFORE trigger: a row at -1 is no conflict of it. (One that
			// names -1 is not checked.)
			cond += " AND NEW." + quoteIdent(k.cols[0]) + " <> -1"
		}
		b.WriteString(`;
  ` + check(conflictAlias) + `
    FROM ` + quoteIdent(t.Name) + ` AS ` + conflictAlias + ` WHERE ` + cond)
		for _, m := range marks {
			b.WriteString(`;
  DELETE FROM domicile_deleting WHERE tbl = ` + quoteString(t.Name) + ` AND col = ` + quoteString(m.name) + ` AND ` + m.slot +
				` IN (SELECT ` + conflictAlias + `.` + quoteIdent(m.name) + ` FROM ` + quoteIdent(t.Name) + ` AS ` + conflictAlias + ` WHERE ` + cond + `)`)
		}
	}
	return b.String()
}

// markedColumn is a column whose values a table's DELETE and UPDATE
// triggers mark (markDeleting, markUpdating), and the column of
// domicile_deleting that holds them.
type markedColumn struct {
	name string
	slot string
	coll string // the collation of the parent's key on it, "" for BINARY
}

// markSlot returns the column of domicile_deleting that holds the marked
// values of a column declared with the type: the one with the same
// affinity, so that a child's value compares with a mark as SQLite's
// foreign key compares it with the parent's (the parent's affinity
// applied), whatever the child's column declares.
func markSlot(declared string) string {
	t := strings.ToUpper(declared)
	switch {
	case strings.Contains(t, "INT"):
		return "k_integer"
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return "k_text"
	case t == "", strings.Contains(t, "BLOB"):
		return "k_blob"
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return "k_real"
	}
	return "k_numeric"
}

// markCond is the condition that a row of domicile_deleting marks the
// value v of table's column m.
func markCond(table string, m markedColumn, v string) string {
	cond := `tbl = ` + quoteString(table) + ` AND col = ` + quoteString(m.name) + ` AND ` + m.slot + ` = ` + v
	if m.coll != "" {
		cond += ` COLLATE ` + quoteIdent(m.coll)
	}
	return cond
}

// markDeleting is the statements a DELETE trigger of table ends with when
// keyed tables' paths start at it: they mark the deleted row's values of
// the columns in domicile_deleting, after the trigger's check passed.
func markDeleting(table string, cols []markedColumn) string {
	var b strings.Builder
	for _, m := range cols {
		b.WriteString(`
  INSERT INTO domicile_deleting (tbl, col, ` + m.slot + `) VALUES (` + quoteString(table) + `, ` + quoteString(m.name) + `, OLD.` + quoteIdent(m.name) + `);`)
	}
	return b.String()
}

// clearMarks is the statements an INSERT trigger of table ends with when
// keyed tables' paths start at it: a mark of the new row's values, left by
// a deletion or key change that did not finish its row, goes, so that it
// never lets the rows that now reach the new row pass for rows whose
// parent is gone.
func clearMarks(table string, cols []markedColumn) string {
	var b strings.Builder
	for _, m := range cols {
		b.WriteString(`;
  DELETE FROM domicile_deleting WHERE ` + markCond(table, m, `NEW.`+quoteIdent(m.name)))
	}
	return b.String()
}

// markUpdating is the statements an UPDATE trigger of table ends with when
// keyed tables' paths start at it: they mark the row's old values of the
// columns the UPDATE changes, after the trigger's checks passed, so that
// the rows an ON UPDATE CASCADE carries to the new values pass for rows
// whose parent is gone.
func markUpdating(table string, cols []markedColumn) string {
	var b strings.Builder
	for _, m := range cols {
		c := quoteIdent(m.name)
		b.WriteString(`;
  INSERT INTO domicile_deleting (tbl, col, ` + m.slot + `) SELECT ` + quoteString(table) + `, ` + quoteString(m.name) + `, OLD.` + c +
			` WHERE NEW.` + c + ` IS NOT OLD.` + c)
	}
	return b.String()
}

// unmarkNames are the names of the triggers that take a row's marks away
// once it is deleted or its key changed (unmarkTriggers).
func unmarkNames(table string) [2]string {
	return [2]string{"domicile_" + table + "_gone", "domicile_" + table + "_rekeyed"}
}

// unmarkTriggers returns the triggers, in the order of unmarkNames, that
// take away the marks of a row of table (markDeleting, markUpdating) once
// it is deleted or updated: SQLite runs a row's AFTER triggers after its
// foreign keys' actions, so the marks last while an ON DELETE CASCADE or
// ON UPDATE CASCADE writes the rows that point to it. None for a table
// without marked columns.
func unmarkTriggers(table string, cols []markedColumn) [][2]string {
	if len(cols) == 0 {
		return nil
	}
	names := unmarkNames(table)
	var out [][2]string
	// Every UPDATE, not UPDATE OF the columns: SET rowid changes an
	// INTEGER PRIMARY KEY without naming it.
	for i, event := range []string{"DELETE", "UPDATE"} {
		var b strings.Builder
		b.WriteString(`CREATE TRIGGER ` + quoteIdent(names[i]) + ` AFTER ` + event + ` ON ` + quoteIdent(table) + `
WHEN NOT EXISTS (SELECT 1 FROM domicile_bypass)
BEGIN`)
		for _, m := range cols {
			b.WriteString(`
  DELETE FROM domicile_deleting WHERE ` + markCond(table, m, `OLD.`+quoteIdent(m.name)) + `;`)
		}
		b.WriteString(`
END`)
		out = append(out, [2]string{names[i], b.String()})
	}
	return out
}

// checkPath returns an error unless the columns t's path joins exist: the
// first in t, each hop's Match and the next hop's Column (or the subject
// column) in the hop's table.
func checkPath(ctx context.Context, q querierCtx, t *domicile.Table, have *domicile.Table) error {
	if !have.HasColumn(t.Via.Hops[0].Column) {
		return domicile.Errorf(domicile.CodeInvalid, "table %s has no column %q, which its path joins", t.Name, t.Via.Hops[0].Column)
	}
	for i, h := range t.Via.Hops {
		ht, err := describeTable(ctx, q, h.Table)
		if err != nil {
			return fmt.Errorf("path of %s: %w", t.Name, err)
		}
		next := t.Via.Subject
		if i+1 < len(t.Via.Hops) {
			next = t.Via.Hops[i+1].Column
		}
		for _, c := range []string{h.Match, next} {
			if !ht.HasColumn(c) {
				return domicile.Errorf(domicile.CodeInvalid, "table %s has no column %q, which the path of %s joins", h.Table, c, t.Name)
			}
		}
	}
	return nil
}

// ensurePathIndexes creates the indexes a path's joins use, in both
// directions, where no index starts with the column.
func ensurePathIndexes(ctx context.Context, tx *sql.Tx, t *domicile.Table) error {
	cols := [][2]string{{t.Name, t.Via.Hops[0].Column}}
	for i, h := range t.Via.Hops {
		cols = append(cols, [2]string{h.Table, h.Match})
		if i+1 < len(t.Via.Hops) {
			cols = append(cols, [2]string{h.Table, t.Via.Hops[i+1].Column})
		}
	}
	for _, c := range cols {
		ok, err := hasSubjectIndex(ctx, tx, c[0], c[1])
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+quoteIdent("domicile_"+c[0]+"_by_"+c[1])+
			` ON `+quoteIdent(c[0])+` (`+quoteIdent(c[1])+`)`); err != nil {
			return fmt.Errorf("index %s.%s: %w", c[0], c[1], err)
		}
	}
	return nil
}

// deferKeys defers the checks of foreign keys to the commit of tx: a
// dataset's rows are deleted in the order their paths need (an address
// before the customer row that leads to it) and inserted in any order.
//
// The pragma expires every statement prepared on the connection, which the
// mover's connection keeps (moverStmt): there it is left out when the
// database has no foreign key, which it then could not change.
func deferKeys(ctx context.Context, tx querierCtx) error {
	if c, ok := tx.(cachedTx); ok && !c.s.keys() {
		return nil
	}
	_, err := tx.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`)
	return err
}

// deleteDataset deletes the subjects' rows of every table of ds, in
// tables' delete order, and counts them. The caller has deferred key
// checks.
func deleteDataset(ctx context.Context, tx querierCtx, ds *domicile.Dataset, tables []*domicile.Table, subjects []string) (int64, error) {
	described := &domicile.Dataset{Name: ds.Name, Tables: tables}
	var total int64
	for _, t := range described.DeleteOrder() {
		n, err := deleteSubjects(ctx, tx, t, subjects)
		if err != nil {
			return 0, fmt.Errorf("delete from %s: %w", t.Name, err)
		}
		total += n
	}
	return total, nil
}

// countReached counts the rows of a path table that the subjects reach.
func countReached(ctx context.Context, q querierCtx, t *domicile.Table, subjects []string) (int64, error) {
	var total int64
	err := inChunks(nil, subjects, func(n int, args []any) error {
		var k int64
		err := q.QueryRowContext(ctx, `SELECT count(*) FROM `+quoteIdent(t.Name)+` WHERE `+subjectIn(t, "", n), args...).Scan(&k)
		total += k
		return err
	})
	return total, err
}

// putPathRow inserts or replaces one row of a path table for subject, in a
// transaction that checks, before, that a row with the key belongs to the
// subject (or to no one) and, after, that the row reaches the subject, or,
// on a path with a reverse hop, no one yet.
func (s *Store) putPathRow(ctx context.Context, t *domicile.Table, subject string, columns []string, row []any) error {
	var b strings.Builder
	b.WriteString("INSERT INTO " + quoteIdent(t.Name) + " (")
	for i, c := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(") VALUES (" + placeholders(len(columns)) + ") ON CONFLICT (")
	keyArgs := make([]any, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		keyArgs[i] = bindValue(row[slices.Index(columns, k)])
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(k))
	}
	set := 0
	for _, c := range columns {
		if slices.Contains(t.PrimaryKey, c) {
			continue
		}
		if set == 0 {
			b.WriteString(") DO UPDATE SET ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c) + " = excluded." + quoteIdent(c))
		set++
	}
	if set == 0 {
		b.WriteString(") DO NOTHING")
	}
	args := make([]any, len(row))
	for i, v := range row {
		args[i] = bindValue(v)
	}
	// whose counts the subjects that the row with the key reaches, and
	// how many of those are subject.
	whose := func(tx *sql.Tx) (all, mine int64, err error) {
		from, subj := pathJoin(t)
		q := `SELECT count(*), coalesce(sum(CAST(` + subj + ` AS TEXT) = ?), 0) FROM ` + from + ` WHERE ` + aliasKeys(t, 0)
		err = tx.QueryRowContext(ctx, q, append([]any{subject}, keyArgs...)...).Scan(&all, &mine)
		return all, mine, err
	}
	return s.update(ctx, func(tx *sql.Tx) error {
		if all, mine, err := whose(tx); err != nil {
			return err
		} else if all > 0 && mine == 0 {
			return domicile.Errorf(domicile.CodeConflict, "the key of this %s row belongs to another subject", t.Name)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return s.writeErr(ctx, err, t.Name, subject)
		}
		all, mine, err := whose(tx)
		if err != nil {
			return err
		}
		if mine == 0 && (all > 0 || !t.Via.Reverses()) {
			return domicile.Errorf(domicile.CodeInvalid, "the %s row does not reach subject %s through %s", t.Name, subject, strings.Join(t.Via.Tables(), ", "))
		}
		return nil
	})
}

// aliasKeys returns "alias.k1 = ? AND alias.k2 = ?" for t's primary key on
// the i-th alias of a path join.
func aliasKeys(t *domicile.Table, i int) string {
	keys := make([]string, len(t.PrimaryKey))
	for j, k := range t.PrimaryKey {
		keys[j] = hopAlias(i) + "." + quoteIdent(k) + " = ?"
	}
	return strings.Join(keys, " AND ")
}

// listPathSubjects calls fn for every subject the rows of a path table
// reach, for the rows for which cond holds (a condition on the columns of
// the table, aliased domicile_h0; "" for every row).
func listPathSubjects(ctx context.Context, tx *sql.Tx, t *domicile.Table, cond string, fn func(string) error) error {
	from, subj := pathJoin(t)
	if cond != "" {
		cond = " AND " + cond
	}
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT `+subj+` FROM `+from+` WHERE `+subj+` IS NOT NULL`+cond+` ORDER BY 1`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return err
		}
		subject, ok := subjectOf(v)
		if !ok {
			return fmt.Errorf("%s: subject value of type %T", t.Name, v)
		}
		if err := fn(subject); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ReadTable reads every row of a table, columns in declaration order.
func (s *Store) ReadTable(ctx context.Context, name string) (*domicile.TableRows, error) {
	t, err := describeTable(ctx, s.rdb, name)
	if err != nil {
		return nil, err
	}
	cols := t.ColumnNames()
	tr := &domicile.TableRows{Table: name, Columns: cols}
	err = s.view(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT "+selectList(cols)+" FROM "+quoteIdent(name))
		if err != nil {
			return err
		}
		tr.Rows, err = scanRows(rows, len(cols), nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s in region %s: %w", name, s.region, err)
	}
	return tr, nil
}

// installGlobal creates a global table the store lacks from its template
// and adds the given rows whose key it lacks.
func installGlobal(ctx context.Context, tx *sql.Tx, name string, opts domicile.InstallOptions) error {
	_, err := describeTable(ctx, tx, name)
	if domicile.ErrorCode(err) == domicile.CodeNotFound {
		tmpl := opts.Templates[name]
		if tmpl == nil {
			return domicile.Errorf(domicile.CodeInvalid, "global table %s is missing and there is no template for it", name)
		}
		err = createTable(ctx, tx, name, tmpl, opts.TemplateIndexes[name])
	}
	if err != nil {
		return err
	}
	for _, tr := range opts.GlobalRows {
		if tr.Table != name || len(tr.Rows) == 0 {
			continue
		}
		quoted := make([]string, len(tr.Columns))
		for i, c := range tr.Columns {
			quoted[i] = quoteIdent(c)
		}
		q := "INSERT INTO " + quoteIdent(name) + " (" + strings.Join(quoted, ", ") + ") VALUES (" + placeholders(len(quoted)) + ") ON CONFLICT DO NOTHING"
		st, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("global table %s: %w", name, err)
		}
		for _, row := range tr.Rows {
			args := make([]any, len(row))
			for i, v := range row {
				args[i] = bindValue(v)
			}
			if _, err := st.ExecContext(ctx, args...); err != nil {
				st.Close()
				return fmt.Errorf("global table %s: %w", name, err)
			}
		}
		if err := st.Close(); err != nil {
			return err
		}
	}
	return nil
}
