package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// A table with a path (domicile.Path) has no subject column: every query
// that selects a subject's rows finds them through the path's tables, with
// nested IN subqueries (a semi-join, which returns each row once however
// many rows of the path reach it), and the trigger function looks the
// subjects up through the row's parents.

// hopAlias is the alias of the i-th table of a path, 0 being the path's
// own table.
func hopAlias(i int) string { return "domicile_h" + strconv.Itoa(i) }

// subjectParam returns the condition that column col (an expression) of
// the table decl holds one of the subjects in parameter $n, a text array
// when many is set and one text otherwise, cast to the column's type so
// that an index on it serves the match.
func subjectParam(decl *pgTable, name, col string, n int, many bool) string {
	c, _ := decl.column(name)
	if many {
		arr := fmt.Sprintf("$%d::text[]", n)
		if c.kind != kindText {
			arr += "::" + c.Type + "[]"
		}
		return col + " = ANY(" + arr + ")"
	}
	p := fmt.Sprintf("$%d::text", n)
	if c.kind != kindText {
		p = "CAST(" + p + " AS " + c.Type + ")"
	}
	return col + " = " + p
}

// subjectWhere returns the condition that a row of t (named unaliased in
// the FROM clause) belongs to the subjects of parameter $n (see
// subjectParam).
func (s *Store) subjectWhere(ctx context.Context, t *domicile.Table, n int, many bool) (string, error) {
	if t.Via == nil {
		decl, err := s.table(ctx, t.Name)
		if err != nil {
			return "", err
		}
		return subjectParam(decl, t.SubjectColumn, quoteIdent(t.SubjectColumn), n, many), nil
	}
	end, err := s.table(ctx, t.Via.End())
	if err != nil {
		return "", err
	}
	hops := t.Via.Hops
	var b strings.Builder
	b.WriteString(quoteIdent(hops[0].Column) + " IN (")
	for i, h := range hops {
		a := hopAlias(i + 1)
		b.WriteString("SELECT " + a + "." + quoteIdent(h.Match) + " FROM " + quoteIdent(h.Table) + " AS " + a + " WHERE ")
		if i+1 < len(hops) {
			b.WriteString(a + "." + quoteIdent(hops[i+1].Column) + " IN (")
		}
	}
	a := hopAlias(len(hops))
	b.WriteString(subjectParam(end, t.Via.Subject, a+"."+quoteIdent(t.Via.Subject), n, many))
	b.WriteString(strings.Repeat(")", len(hops)))
	return b.String(), nil
}

// pathJoin returns the FROM clause joining a path table (alias
// domicile_h0) to the tables of its path, and the expression of the
// subject they reach. With schema set, tables are qualified with it.
func pathJoin(t *domicile.Table, schema string) (from, subject string) {
	q := func(table string) string {
		if schema == "" {
			return quoteIdent(table)
		}
		return quoteIdent(schema) + "." + quoteIdent(table)
	}
	var b strings.Builder
	b.WriteString(q(t.Name) + " AS " + hopAlias(0))
	prev := hopAlias(0) + "." + quoteIdent(t.Via.Hops[0].Column)
	for i, h := range t.Via.Hops {
		a := hopAlias(i + 1)
		b.WriteString(" JOIN " + q(h.Table) + " AS " + a + " ON " + a + "." + quoteIdent(h.Match) + " = " + prev)
		if i+1 < len(t.Via.Hops) {
			prev = a + "." + quoteIdent(t.Via.Hops[i+1].Column)
		}
	}
	return b.String(), hopAlias(len(t.Via.Hops)) + "." + quoteIdent(t.Via.Subject)
}

// pathGuardBody is the body of the trigger function of a path table of
// dataset. It finds the subjects the row reaches through its parents and
// checks each as guardBody checks a subject column's (locking its
// ownership row FOR SHARE); a row that reaches no subject is accepted when
// the path has a reverse hop (no one points to it yet) and otherwise
// refused as a subject with no ownership row. An UPDATE is checked against
// the old row and, if the path's first column changes, the new one.
func pathGuardBody(schema, dataset string, t *domicile.Table) string {
	owner := quoteIdent(schema) + ".domicile_owner"
	refuse := quoteIdent(schema) + ".domicile_refuse"
	hops := t.Via.Hops
	var from strings.Builder
	from.WriteString(quoteIdent(schema) + "." + quoteIdent(hops[0].Table) + " AS " + hopAlias(1))
	for i := 1; i < len(hops); i++ {
		a := hopAlias(i + 1)
		from.WriteString(" JOIN " + quoteIdent(schema) + "." + quoteIdent(hops[i].Table) + " AS " + a + " ON " + a + "." +
			quoteIdent(hops[i].Match) + " = " + hopAlias(i) + "." + quoteIdent(hops[i].Column))
	}
	subj := hopAlias(len(hops)) + "." + quoteIdent(t.Via.Subject)
	col := quoteIdent(hops[0].Column)
	check := func(row string) string {
		none := `IF NOT reached THEN PERFORM ` + refuse + `(NULL, NULL, NULL); END IF;`
		switch {
		case t.Via.Reverses() && row == "NEW":
			// A new row no one points to belongs to no one yet; an old
			// one may not be changed (see the SQLite store's
			// pathTriggerSQL): under REPEATABLE READ this writer may not
			// see a pointer to it made after its snapshot.
			none = `-- a new row no one points to belongs to no one yet`
		case !hops[0].Reverse && row == "OLD":
			// An old row whose parent is gone, where a foreign key keeps
			// every row's parent: this transaction deleted the parent, and
			// the parent's guard checked that (an ON DELETE CASCADE, or a
			// deferred key). See parentGone.
			none = `IF NOT reached AND NOT ` + parentGone(schema, t, row) + ` THEN PERFORM ` + refuse + `(NULL, NULL, NULL); END IF;`
		}
		return `reached := false;
    FOR subj IN SELECT DISTINCT ` + subj + `::text FROM ` + from.String() + `
        WHERE ` + hopAlias(1) + `.` + quoteIdent(hops[0].Match) + ` = ` + row + `.` + col + ` AND ` + subj + ` IS NOT NULL LOOP
      reached := true;
      SELECT state INTO st FROM ` + owner + ` WHERE subject = subj AND dataset = ` + quoteString(dataset) + ` FOR SHARE;
      IF st IS DISTINCT FROM 'owned' THEN PERFORM ` + refuse + `(st, ` + quoteString(dataset) + `, subj); END IF;
    END LOOP;
    ` + none
	}
	return `
DECLARE
  st text;
  subj text;
  reached boolean;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    ` + check("OLD") + `
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.` + col + ` IS DISTINCT FROM OLD.` + col + `) THEN
    ` + check("NEW") + `
  END IF;
  RETURN NULL;
END
`
}

// parentGone is the guard's condition that the row (OLD) of path table t
// is on its way out with its parent: its path's first column is set, the
// parent row it names is not there, and a validated foreign key of that
// column to the parent's keeps every row's parent. A row whose parent is
// not there then lost it in this transaction, which deleted the parent
// (the parent's guard checked that deletion) and now deletes or changes
// the row: an ON DELETE CASCADE, or a deferred key. Another transaction
// cannot have deleted the parent: the key makes that wait for this one,
// which holds the row. An orphan the key does not cover (no key, or one
// NOT VALID) is refused as before, as is any row whose parent's table has
// row-level security on, whose policies could hide a parent that is there.
// The catalogue is read only when no subject was reached, off the path of
// ordinary writes.
func parentGone(schema string, t *domicile.Table, row string) string {
	h := t.Via.Hops[0]
	parent := quoteIdent(schema) + "." + quoteIdent(h.Table)
	col := row + "." + quoteIdent(h.Column)
	return `(` + col + ` IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM ` + parent + ` AS p WHERE p.` + quoteIdent(h.Match) + ` = ` + col + `)
      AND NOT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = ` + quoteString(parent) + `::regclass)
      AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS c
        JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_catalog.pg_attribute AS b ON b.attrelid = c.confrelid AND b.attnum = c.confkey[1]
        WHERE c.conrelid = TG_RELID AND c.contype = 'f' AND c.convalidated AND cardinality(c.conkey) = 1
          AND c.confrelid = ` + quoteString(parent) + `::regclass
          AND a.attname = ` + quoteString(h.Column) + ` AND b.attname = ` + quoteString(h.Match) + `))`
}

// tableGuardBody is the body of t's trigger function.
func tableGuardBody(schema, dataset string, t *domicile.Table) string {
	if t.Via != nil {
		return pathGuardBody(schema, dataset, t)
	}
	return guardBody(schema, dataset, t)
}

// checkPath returns an error unless the columns t's path joins exist: the
// first in t, each hop's Match and the next hop's Column (or the subject
// column) in the hop's table.
func checkPath(ctx context.Context, q querier, t *domicile.Table, have *pgTable) error {
	if _, ok := have.column(t.Via.Hops[0].Column); !ok {
		return domicile.Errorf(domicile.CodeInvalid, "table %s has no column %q, which its path joins", t.Name, t.Via.Hops[0].Column)
	}
	for i, h := range t.Via.Hops {
		ht, err := readTable(ctx, q, h.Table)
		if err != nil {
			return fmt.Errorf("path of %s: %w", t.Name, err)
		}
		next := t.Via.Subject
		if i+1 < len(t.Via.Hops) {
			next = t.Via.Hops[i+1].Column
		}
		for _, c := range []string{h.Match, next} {
			if _, ok := ht.column(c); !ok {
				return domicile.Errorf(domicile.CodeInvalid, "table %s has no column %q, which the path of %s joins", h.Table, c, t.Name)
			}
		}
	}
	return nil
}

// ensurePathIndexes creates the indexes a path's joins use, in both
// directions, where no index starts with the column.
func ensurePathIndexes(ctx context.Context, tx pgx.Tx, t *domicile.Table) error {
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
		if _, err := tx.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+quoteIdent(objectName(c[0], "_by_"+c[1]))+
			` ON `+quoteIdent(c[0])+` (`+quoteIdent(c[1])+`)`); err != nil {
			return fmt.Errorf("index %s.%s: %w", c[0], c[1], err)
		}
	}
	return nil
}

// deleteSQL returns the statement that deletes the subjects' rows (its
// parameter) of every table of tables, and counts them; "" for no tables.
// Each DELETE of a data-modifying WITH reads the rows as they were before
// the statement, so a path table's rows are found through rows deleted
// beside them, and the foreign keys are checked once all are gone,
// whatever they point to.
func (s *Store) deleteSQL(ctx context.Context, tables []*domicile.Table) (string, error) {
	var with, sum []string
	for i, t := range tables {
		cond, err := s.subjectWhere(ctx, t, 1, true)
		if err != nil {
			return "", err
		}
		d := "domicile_d" + strconv.Itoa(i)
		with = append(with, d+" AS (DELETE FROM "+quoteIdent(t.Name)+" WHERE "+cond+" RETURNING 1)")
		sum = append(sum, "(SELECT count(*) FROM "+d+")")
	}
	if len(tables) == 0 {
		return "", nil
	}
	return "WITH " + strings.Join(with, ", ") + " SELECT " + strings.Join(sum, " + "), nil
}

// countReached counts the rows of a path table that the subjects reach.
func (s *Store) countReached(ctx context.Context, q querier, t *domicile.Table, subjects []string) (int64, error) {
	cond, err := s.subjectWhere(ctx, t, 1, true)
	if err != nil {
		return 0, err
	}
	var n int64
	err = q.QueryRow(ctx, `SELECT count(*) FROM `+quoteIdent(t.Name)+` WHERE `+cond, subjects).Scan(&n)
	return n, err
}

// putPathRow inserts or replaces one row of a path table for subject, in a
// transaction that checks, before, that a row with the key belongs to the
// subject (or to no one) and, after, that the row reaches the subject, or,
// on a path with a reverse hop, no one yet.
func (s *Store) putPathRow(ctx context.Context, t *domicile.Table, pt *pgTable, subject string, columns []string, args []any) error {
	var b strings.Builder
	b.WriteString("INSERT INTO " + quoteIdent(t.Name) + " (")
	for i, c := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(") VALUES (")
	for i := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
	}
	b.WriteString(") ON CONFLICT (")
	for i, k := range t.PrimaryKey {
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
	from, subj := pathJoin(t, "")
	whoseArgs := []any{subject}
	keys := make([]string, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		whoseArgs = append(whoseArgs, args[slices.Index(columns, k)])
		keys[i] = fmt.Sprintf("%s.%s = $%d", hopAlias(0), quoteIdent(k), i+2)
	}
	whoseSQL := `SELECT count(*), count(*) FILTER (WHERE ` + subj + `::text = $1) FROM ` + from + ` WHERE ` + strings.Join(keys, " AND ")
	whose := func(tx pgx.Tx) (all, mine int64, err error) {
		err = tx.QueryRow(ctx, whoseSQL, whoseArgs...).Scan(&all, &mine)
		return all, mine, err
	}
	return s.update(ctx, func(tx pgx.Tx) error {
		if all, mine, err := whose(tx); err != nil {
			return err
		} else if all > 0 && mine == 0 {
			if r := s.refusedSubject(ctx, t.Name, subject); r != nil {
				return r
			}
			return domicile.Errorf(domicile.CodeConflict, "the key of this %s row belongs to another subject", t.Name)
		}
		if _, err := tx.Exec(ctx, b.String(), args...); err != nil {
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

// listPathSubjects calls fn for every subject the rows of a path table
// reach, for the rows for which cond holds (a condition on the columns of
// the table, aliased domicile_h0; "" for every row).
func listPathSubjects(ctx context.Context, tx pgx.Tx, t *domicile.Table, cond string, fn func(string) error) error {
	from, subj := pathJoin(t, "")
	if cond != "" {
		cond = " AND " + cond
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT `+subj+` FROM `+from+` WHERE `+subj+` IS NOT NULL`+cond+` ORDER BY 1`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			return err
		}
		subject, ok := subjectString(row[0])
		if !ok {
			return fmt.Errorf("%s: subject value of type %T", t.Name, row[0])
		}
		if err := fn(subject); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ReadTable reads every row of a table, columns in declaration order.
func (s *Store) ReadTable(ctx context.Context, name string) (*domicile.TableRows, error) {
	pt, err := readTable(ctx, s.pool, name)
	if err != nil {
		return nil, err
	}
	cols := make([]string, len(pt.columns))
	for i, c := range pt.columns {
		cols[i] = c.Name
	}
	tr := &domicile.TableRows{Table: name, Columns: cols}
	err = s.view(ctx, func(tx pgx.Tx) error {
		var err error
		tr.Rows, err = queryRows(ctx, tx, "SELECT "+selectList(pt, cols)+" FROM "+quoteIdent(name), nil, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s in region %s: %w", name, s.region, err)
	}
	return tr, nil
}

// installGlobal creates a global table the store lacks from its template
// and adds the given rows whose key it lacks: COPY into a temporary table,
// then INSERT … ON CONFLICT DO NOTHING.
func installGlobal(ctx context.Context, tx pgx.Tx, name string, opts domicile.InstallOptions) (created bool, err error) {
	_, err = readTable(ctx, tx, name)
	if domicile.ErrorCode(err) == domicile.CodeNotFound {
		tmpl := opts.Templates[name]
		if tmpl == nil {
			return false, domicile.Errorf(domicile.CodeInvalid, "global table %s is missing and there is no template for it", name)
		}
		err, created = createTable(ctx, tx, name, tmpl, opts), true
	}
	if err != nil {
		return false, err
	}
	return created, fillGlobal(ctx, tx, name, opts)
}

// fillGlobal adds the global table's rows (InstallOptions.GlobalRows)
// whose primary key it lacks.
func fillGlobal(ctx context.Context, tx pgx.Tx, name string, opts domicile.InstallOptions) error {
	for i := range opts.GlobalRows {
		tr := &opts.GlobalRows[i]
		if tr.Table != name || len(tr.Rows) == 0 {
			continue
		}
		pt, err := readTable(ctx, tx, name)
		if err != nil {
			return err
		}
		data, err := copyData(pt, tr)
		if err != nil {
			return fmt.Errorf("global table %s: %w", name, err)
		}
		quoted := make([]string, len(tr.Columns))
		for j, c := range tr.Columns {
			quoted[j] = quoteIdent(c)
		}
		cols := strings.Join(quoted, ", ")
		if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE domicile_global (LIKE `+quoteIdent(name)+`) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("global table %s: %w", name, err)
		}
		if err := begin(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, strings.NewReader(string(data)), "COPY domicile_global ("+cols+") FROM STDIN"); err != nil {
			return fmt.Errorf("global table %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+quoteIdent(name)+` (`+cols+`) SELECT `+cols+` FROM domicile_global ON CONFLICT DO NOTHING`); err != nil {
			return fmt.Errorf("global table %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `DROP TABLE domicile_global`); err != nil {
			return err
		}
	}
	return nil
}
