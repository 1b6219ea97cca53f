package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// installSchema is domicile's own tables in a regional store. There is no
// bypass table: the mover's transactions set domicile.bypass, a setting
// local to the transaction.
//
// Ownership rows leave room on their pages (fillfactor 70): every
// transition of a batch updates a row per subject, and with room on the
// page the new version stays there (a HOT update), with no new entry in
// the primary key; measured, a transition's UPDATE of 156 rows took 1.4 to
// 1.7 ms on full pages and 0.6 ms with the room. upgradeOwner gives
// existing stores the room on the pages written from then on.
const installSchema = `
CREATE TABLE IF NOT EXISTS domicile_owner (
	subject text NOT NULL,
	dataset text NOT NULL,
	state   text NOT NULL,
	region  text NOT NULL DEFAULT '',
	epoch   bigint NOT NULL DEFAULT 0,
	move_id text NOT NULL DEFAULT '',
	capture boolean NOT NULL DEFAULT false,
	PRIMARY KEY (subject, dataset)
) WITH (fillfactor = 70);
CREATE TABLE IF NOT EXISTS domicile_settings (
	key   text PRIMARY KEY,
	value text
);
CREATE TABLE IF NOT EXISTS domicile_known (
	subject text NOT NULL,
	dataset text NOT NULL,
	n       bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (subject, dataset)
);
`

// upgradeOwner brings an ownership table an older domicile made up to
// date: the capture column, room on its pages; and makes domicile_changes'
// index if it is missing. It alters only what lacks something: an ALTER
// TABLE or CREATE INDEX takes its lock before it looks, and ADD COLUMN's
// would hold off every writer (whose guard reads the table) until the
// installation commits.
func upgradeOwner(ctx context.Context, tx pgx.Tx) error {
	var hasCapture, hasRoom, hasIndex bool
	err := tx.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'domicile_owner'::regclass AND attname = 'capture' AND NOT attisdropped),
		coalesce('fillfactor=70' = ANY (reloptions), false),
		to_regclass('domicile_changes_move') IS NOT NULL
		FROM pg_class WHERE oid = 'domicile_owner'::regclass`).Scan(&hasCapture, &hasRoom, &hasIndex)
	if err != nil {
		return err
	}
	if !hasIndex {
		if _, err := tx.Exec(ctx, captureIndex); err != nil {
			return err
		}
	}
	if !hasCapture {
		if _, err := tx.Exec(ctx, `ALTER TABLE domicile_owner ADD COLUMN capture boolean NOT NULL DEFAULT false`); err != nil {
			return err
		}
	}
	if !hasRoom {
		if _, err := tx.Exec(ctx, `ALTER TABLE domicile_owner SET (fillfactor = 70)`); err != nil {
			return err
		}
	}
	return nil
}

// installVersion is bumped when the shape of the installation changes in a
// way the generated SQL does not show.
const installVersion = "6"

// maxIdent is PostgreSQL's limit on the length of a name, in bytes.
const maxIdent = 63

// objectName returns the name of one of domicile's objects for table,
// "domicile_<table><suffix>", shortened with a hash of the table's name
// where that would pass PostgreSQL's limit, which would otherwise truncate
// two long names to one.
func objectName(table, suffix string) string {
	n := "domicile_" + table + suffix
	if len(n) <= maxIdent {
		return n
	}
	sum := sha256.Sum256([]byte(table))
	tag := "_" + hex.EncodeToString(sum[:4])
	keep := maxIdent - len("domicile_") - len(tag) - len(suffix)
	for keep > 0 && !utf8.RuneStart(table[keep]) {
		keep--
	}
	return "domicile_" + table[:keep] + tag + suffix
}

// triggerNames returns the names of the three triggers of table, as on
// SQLite: domicile_<table>_ins, _upd, _del.
func triggerNames(table string) [3]string {
	return [3]string{objectName(table, "_ins"), objectName(table, "_upd"), objectName(table, "_del")}
}

// guardName is the name of table's trigger function.
func guardName(table string) string { return objectName(table, "_guard") }

// refuseBody is the body of domicile_refuse(state, dataset, subject), which
// raises the refusal of a subject's ownership state. The guards call it only
// when the state is not owned, so its cost is off the path of accepted
// writes.
//
// A subject without an ownership row is accepted in a store that accepts
// unknown subjects, and then there is no row to lock FOR SHARE: the writer
// takes the subject's advisory lock (subjectLock) in shared mode instead,
// which every transition of that subject takes exclusively. A fence made
// after the subject is discovered thus waits for such writers as it waits
// for the others. The writer never waits for the lock: if a transition
// holds it, the write is refused as fenced (retryable), because a writer
// that waited would have decided on a state that the transition may have
// changed, which it cannot see again under REPEATABLE READ.
//
// With the lock, no transition of the subject is under way, but one may
// have committed since the guard read, and made the ownership row (a fence
// of a subject that had none, or discovery's registration before a move).
// So the row is read again: under READ COMMITTED the read sees it, and the
// state decides. A REPEATABLE READ or SERIALIZABLE writer's snapshot cannot
// see it, so the function probes: every statement that makes an ownership
// row, and every capture, also writes a new version of the subject's row
// in domicile_known (touchKnown), and an INSERT … ON CONFLICT into that
// table that meets a row version its snapshot cannot see fails with a
// serialization error; the writer retries. The probe's own row, where
// there was none, is undone at once (a subtransaction). domicile_known is
// a table of its own, which no guard reads, so that the probes of
// SERIALIZABLE writers do not make false read/write conflicts with each
// other's reads of domicile_owner. One probe per subject and transaction
// is enough (domicile.probed remembers the last, with the transaction's id,
// so that a value left at session level cannot skip one): from it on, the
// writer holds the subject's lock, which every transition, every capture
// and every SetOwnership to a state that refuses writes takes, so none of
// them commits before the writer ends (a registration as owned may, and
// changes nothing for the writer). A
// ROLLBACK TO SAVEPOINT undoes the lock and the setting together. The
// probe writes only where the subject has no row in domicile_known yet,
// and then costs a subtransaction (a transaction id) and a dead row.
func refuseBody(schema string) string {
	raise := func(code string, err error) string {
		return `RAISE EXCEPTION USING ERRCODE = '` + code + `', MESSAGE = ` + quoteString(err.Error()) + `;`
	}
	return `
DECLARE
  cur text;
  probe text;
BEGIN
  CASE st
    WHEN 'owned' THEN RETURN;
    WHEN 'fenced' THEN ` + raise(stateFenced, domicile.ErrFenced) + `
    WHEN 'incoming' THEN ` + raise(stateIncoming, domicile.ErrIncoming) + `
    WHEN 'moved' THEN ` + raise(stateMoved, domicile.ErrMoved) + `
    ELSE
      IF st IS NULL AND EXISTS (SELECT 1 FROM ` + quoteIdent(schema) + `.domicile_settings WHERE key = 'accept_unknown' AND value = '1') THEN
        IF subj IS NULL THEN
          RETURN;
        END IF;
        IF NOT pg_try_advisory_xact_lock_shared(` + subjectLock("ds", "subj") + `) THEN
          ` + raise(stateFenced, domicile.ErrFenced) + `
        END IF;
        SELECT o.state INTO cur FROM ` + quoteIdent(schema) + `.domicile_owner AS o WHERE o.subject = subj AND o.dataset = ds FOR SHARE;
        IF cur IS NOT NULL THEN
          PERFORM ` + quoteIdent(schema) + `.domicile_refuse(cur, ds, subj);
          RETURN;
        END IF;
        probe := pg_current_xact_id()::text || ' ' || ds || '/' || subj;
        IF current_setting('transaction_isolation') IN ('repeatable read', 'serializable')
            AND current_setting('domicile.probed', true) IS DISTINCT FROM probe THEN
          BEGIN
            INSERT INTO ` + quoteIdent(schema) + `.domicile_known (subject, dataset) VALUES (subj, ds) ON CONFLICT DO NOTHING;
            RAISE EXCEPTION USING ERRCODE = '` + stateProbe + `';
          EXCEPTION WHEN SQLSTATE '` + stateProbe + `' THEN
            NULL;
          END;
          PERFORM set_config('domicile.probed', probe, true);
        END IF;
        RETURN;
      END IF;
      ` + raise(stateUnknown, domicile.ErrUnknown) + `
  END CASE;
END
`
}

// subjectLock is the key of a subject's advisory lock, from SQL expressions
// of its dataset and id: the two-key form, whose key space is apart from
// the one-key locks of install and capture.
func subjectLock(dataset, subject string) string {
	return `hashtext('domicile subject'), hashtext(` + dataset + ` || '/' || ` + subject + `)`
}

// refuseSQL creates domicile_refuse.
func refuseSQL(schema string) string {
	return `CREATE OR REPLACE FUNCTION ` + quoteIdent(schema) + `.domicile_refuse(st text, ds text, subj text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $domicile$` + refuseBody(schema) + `$domicile$`
}

// guardBody is the body of the trigger function of a table of dataset whose
// subject column is subj.
//
// The guards are AFTER row triggers: a BEFORE row trigger on a table, even
// one whose WHEN lets the row through, turns COPY's multi-row inserts off
// and makes every UPDATE and DELETE lock its row before writing it, which
// the mover's bypassed writes paid for (docs/benchmarks.md). A refusal
// raised from an AFTER trigger undoes the statement all the same, and the
// check runs before the statement ends, so before the writer can commit.
//
// It reads the subject's state with FOR SHARE: the lock is held until the
// writer's transaction ends, so a fence's UPDATE of the ownership row waits
// for writes in flight, and a write whose check comes after the fence sees
// it (READ COMMITTED: FOR SHARE reads the row's latest version) or, in a
// REPEATABLE READ or SERIALIZABLE transaction that took its snapshot
// before, fails with a serialization error. A row written before a fence
// and checked after it is thus refused, and the statement undone; the
// fence's copy never saw it, since it was not committed. FOR KEY SHARE
// would not do: it does not conflict with an UPDATE that leaves the row's
// key alone. An UPDATE is checked against the old subject and, if the
// subject column changes, the new one.
//
// The same read tells whether a live copy is capturing the subject (the
// ownership row's capture column, which StartCapture sets in the
// transaction that lists the subject in domicile_capture): if so, the
// guard calls the table's capture function, which records the change (see
// capture.go). A subject without an ownership row, in a store that accepts
// unknown subjects, is looked up in domicile_capture instead. Tables that
// reach their subject through a path have no capture function; nor have
// tables without a primary key, whose datasets are never captured
// (liveTables), so that their guards never call it.
func guardBody(schema, dataset string, t *domicile.Table) string {
	owner := quoteIdent(schema) + ".domicile_owner"
	subj := t.SubjectColumn
	col := quoteIdent(subj)
	check := func(row string) string {
		return `SELECT state, capture INTO st, cap FROM ` + owner + ` WHERE subject = ` + row + `.` + col + `::text AND dataset = ` + quoteString(dataset) + ` FOR SHARE;
    IF st IS DISTINCT FROM 'owned' THEN
      PERFORM ` + quoteIdent(schema) + `.domicile_refuse(st, ` + quoteString(dataset) + `, ` + row + `.` + col + `::text);
      cap := EXISTS (` + captured(schema, dataset, row, subj) + `);
    END IF;
    IF cap THEN captured := true; END IF;`
	}
	return `
DECLARE
  st text;
  cap boolean;
  captured boolean := false;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    ` + check("OLD") + `
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.` + col + ` IS DISTINCT FROM OLD.` + col + `) THEN
    ` + check("NEW") + `
  END IF;
  IF captured THEN
    PERFORM ` + quoteIdent(schema) + `.` + quoteIdent(captureFuncName(t.Name)) + `(TG_OP, OLD, NEW);
  END IF;
  RETURN NULL;
END
`
}

// guardSQL creates the trigger function of a table. It runs as its owner
// (SECURITY DEFINER) so that writers need no privilege on domicile's
// tables, whose names it qualifies with the schema.
func guardSQL(schema, dataset string, t *domicile.Table) string {
	return `CREATE OR REPLACE FUNCTION ` + quoteIdent(schema) + `.` + quoteIdent(guardName(t.Name)) + `() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $domicile$` + tableGuardBody(schema, dataset, t) + `$domicile$`
}

// bypassCondition is the triggers' WHEN clause. The bypassed rows never
// call the guard. The mover's transaction sets domicile.bypass, local to
// itself, to its own transaction id; the triggers let a row through only
// when the setting names the transaction writing it. A setting no one has
// set reads as NULL, one set local to an ended transaction as the empty
// string, and one left behind at session level by a careless SET names a
// transaction that has ended: none of them lets a write through, so a
// pooled connection cannot carry a bypass from one transaction to the next.
const bypassCondition = `current_setting('domicile.bypass', true) IS DISTINCT FROM pg_current_xact_id()::text`

// triggerSQL returns the CREATE TRIGGER statements of table, in the order
// of triggerNames.
func triggerSQL(schema, table string) [3]string {
	names := triggerNames(table)
	var out [3]string
	for i, event := range []string{"INSERT", "UPDATE", "DELETE"} {
		out[i] = `CREATE TRIGGER ` + quoteIdent(names[i]) + ` AFTER ` + event + ` ON ` + quoteIdent(schema) + `.` + quoteIdent(table) +
			` FOR EACH ROW WHEN (` + bypassCondition + `) EXECUTE FUNCTION ` + quoteIdent(schema) + `.` + quoteIdent(guardName(table)) + `()`
	}
	return out
}

// installDigest is the version of an installation of datasets in schema: a
// digest of its trigger SQL.
func installDigest(schema string, datasets []*domicile.Dataset) string {
	h := sha256.New()
	h.Write([]byte(installVersion + "\n" + refuseSQL(schema) + "\x00"))
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			h.Write([]byte(guardSQL(schema, ds.Name, t) + "\x00"))
			for _, q := range triggerSQL(schema, t.Name) {
				h.Write([]byte(q + "\x00"))
			}
			h.Write([]byte(captureDigest(t) + "\x00"))
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// currentSchema returns the schema in which the store creates its objects,
// the first of the search_path.
func currentSchema(ctx context.Context, q querier) (string, error) {
	var schema *string
	if err := q.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", err
	}
	if schema == nil {
		return "", errors.New("no schema on the search_path")
	}
	return *schema, nil
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
	err := s.update(ctx, func(tx pgx.Tx) error {
		// Two installs at once would race on CREATE ... IF NOT EXISTS.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('domicile install'))`); err != nil {
			return err
		}
		schema, err := currentSchema(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, installSchema+captureSchema); err != nil {
			return err
		}
		if err := upgradeOwner(ctx, tx); err != nil {
			return err
		}
		// A capture begun before the ownership rows had their mark (an
		// upgrade in the middle of a live move) marks them now.
		if err := lockCaptureMarks(ctx, tx, false); err != nil {
			return err
		}
		// An installation made by this version, of these datasets, is
		// current: its functions and triggers are made again only where
		// the check finds them changed (see installTable).
		version, err := setting(ctx, tx, "install_version")
		if err != nil {
			return err
		}
		current := version == installDigest(schema, datasets)
		if _, err := tx.Exec(ctx, `UPDATE domicile_owner AS o SET capture = true
			WHERE (o.subject, o.dataset) IN (SELECT subject, dataset FROM domicile_capture) AND NOT o.capture`); err != nil {
			return err
		}
		// Once accepted, for good (everAcceptedUnknown), including by an
		// installation older than the setting.
		was, err := setting(ctx, tx, "accept_unknown")
		if err != nil {
			return err
		}
		if accept == "1" || was == "1" {
			if err := setSetting(ctx, tx, "accepted_unknown", "1"); err != nil {
				return err
			}
		}
		if err := setSetting(ctx, tx, "accept_unknown", accept); err != nil {
			return err
		}
		msg, err := checkFunction(ctx, tx, "domicile_refuse", quoteIdent(schema)+".domicile_refuse(text, text, text)", refuseBody(schema))
		if err != nil {
			return err
		}
		if !current || msg != "" {
			// Installations before version 4 had domicile_refuse(text).
			if _, err := tx.Exec(ctx, `DROP FUNCTION IF EXISTS `+quoteIdent(schema)+`.domicile_refuse(text)`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, refuseSQL(schema)); err != nil {
				return fmt.Errorf("create domicile_refuse: %w", err)
			}
		}
		var made []string
		for _, name := range opts.Global {
			created, err := installGlobal(ctx, tx, name, opts)
			if err != nil {
				return err
			}
			if created {
				made = append(made, name)
			}
		}
		// Every table first: the trigger function of a path table reads the
		// tables of its path.
		for _, ds := range datasets {
			for _, t := range ds.Tables {
				created, err := ensureTable(ctx, tx, ds, t, opts)
				if err != nil {
					return err
				}
				if created {
					made = append(made, t.Name)
				}
			}
		}
		if err := addConstraints(ctx, tx, made, opts); err != nil {
			return err
		}
		for _, ds := range datasets {
			for _, t := range ds.Tables {
				if err := installTable(ctx, tx, schema, ds, t, current); err != nil {
					return err
				}
			}
		}
		return setSetting(ctx, tx, "install_version", installDigest(schema, datasets))
	})
	s.mu.Lock()
	clear(s.tables)
	if err == nil {
		for _, ds := range datasets {
			for _, t := range ds.Tables {
				s.datasets[t.Name] = ds.Name
			}
		}
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("install in region %s: %w", s.region, err)
	}
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

func setSetting(ctx context.Context, tx pgx.Tx, key, value string) error {
	_, err := tx.Exec(ctx, `INSERT INTO domicile_settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// ensureTable creates a dataset table the store lacks from its template,
// reporting whether it did.
func ensureTable(ctx context.Context, tx pgx.Tx, ds *domicile.Dataset, t *domicile.Table, opts domicile.InstallOptions) (bool, error) {
	_, err := readTable(ctx, tx, t.Name)
	if domicile.ErrorCode(err) != domicile.CodeNotFound {
		return false, err
	}
	tmpl := opts.Templates[t.Name]
	if tmpl == nil && len(t.Columns) > 0 {
		tmpl = t
	}
	if tmpl == nil {
		return false, domicile.Errorf(domicile.CodeInvalid, "table %s of dataset %s is missing and there is no template for it", t.Name, ds.Name)
	}
	return true, createTable(ctx, tx, t.Name, tmpl, opts)
}

// cannotMake are the SQLSTATEs of a constraint addConstraints leaves out:
// undefined_table, invalid_schema_name, foreign_key_violation,
// undefined_function, undefined_object.
var cannotMake = []string{"42P01", "3F000", "23503", "42883", "42704"}

// addConstraints gives the tables Install made their templates'
// constraints (InstallOptions.TemplateConstraints), once every table is
// made: the others first, then the foreign keys, which may point at a
// unique constraint added before. A constraint this store cannot make is
// left out, as the table was made without any before: a foreign key to a
// table (or schema) it lacks, whose rows could not be here; one a global
// table's rows break (a key into a dataset table owned through owned_by,
// whose rows are not all here); a check calling a function, or an
// exclusion needing an operator class, the store does not have
// (cannotMake).
func addConstraints(ctx context.Context, tx pgx.Tx, made []string, opts domicile.InstallOptions) error {
	for _, fks := range []bool{false, true} {
		for _, name := range made {
			for _, c := range opts.TemplateConstraints[name] {
				if fk := strings.Contains(c, " FOREIGN KEY "); fk != fks {
					continue
				}
				if _, err := tx.Exec(ctx, `SAVEPOINT domicile_constraint`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `ALTER TABLE `+quoteIdent(name)+` ADD `+c)
				if e, ok := errors.AsType[*pgconn.PgError](err); ok && slices.Contains(cannotMake, e.Code) {
					if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT domicile_constraint`); err != nil {
						return err
					}
					continue
				}
				if err != nil {
					return fmt.Errorf("table %s, made as another region has it: add %s: %w", name, c, err)
				}
				if _, err := tx.Exec(ctx, `RELEASE SAVEPOINT domicile_constraint`); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func installTable(ctx context.Context, tx pgx.Tx, schema string, ds *domicile.Dataset, t *domicile.Table, current bool) error {
	if current {
		// Dropping and creating the triggers again would lock the table
		// against every writer until the installation commits (and a
		// writer holding a row lock the installation waits for would
		// deadlock with it): leave a table whose installation checks out.
		problems, err := tableProblems(ctx, tx, schema, ds, t)
		if err != nil {
			return err
		}
		if len(problems) == 0 {
			if t.Via != nil {
				// Made only where missing, which takes a lock then.
				return ensurePathIndexes(ctx, tx, t)
			}
			return nil
		}
	}
	// Install made every missing table (ensureTable) before this.
	have, err := readTable(ctx, tx, t.Name)
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
		if _, ok := have.column(t.SubjectColumn); !ok {
			return domicile.Errorf(domicile.CodeInvalid, "table %s has no subject column %q", t.Name, t.SubjectColumn)
		}
		if err := ensureSubjectIndex(ctx, tx, t.Name, t.SubjectColumn); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, guardSQL(schema, ds.Name, t)); err != nil {
		return fmt.Errorf("create trigger function of %s: %w", t.Name, err)
	}
	for i, q := range triggerSQL(schema, t.Name) {
		if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+quoteIdent(triggerNames(t.Name)[i])+` ON `+quoteIdent(schema)+`.`+quoteIdent(t.Name)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("create trigger on %s: %w", t.Name, err)
		}
	}
	if err := installCapture(ctx, tx, schema, ds, t, have); err != nil {
		return err
	}
	return setSetting(ctx, tx, tableKey(t.Name), ds.Name)
}

// createTable creates table name from a description read from another
// store, possibly of another engine, and its indexes.
func createTable(ctx context.Context, tx pgx.Tx, name string, tmpl *domicile.Table, opts domicile.InstallOptions) error {
	native := opts.TemplateEngine[name] == "postgres"
	if len(tmpl.PrimaryKey) == 0 {
		return domicile.Errorf(domicile.CodeInvalid, "template of table %s has no primary key", name)
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE " + quoteIdent(name) + " (")
	for i, c := range tmpl.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		typ := c.Type
		if !native {
			typ = pgType(typ)
		}
		b.WriteString(quoteIdent(c.Name) + " " + typ)
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
	if _, err := tx.Exec(ctx, b.String()); err != nil {
		return fmt.Errorf("create table %s as another region has it: %w (domicile makes a missing table from its columns, "+
			"types and primary key only: create it here yourself, with its types, defaults and keys, from the source's schema "+
			"(pg_dump --schema-only), then install again)", name, err)
	}
	for _, q := range opts.TemplateIndexes[name] {
		if _, err := tx.Exec(ctx, retargetIndex(q)); err != nil {
			return fmt.Errorf("create index on %s: %w", name, err)
		}
	}
	return nil
}

// typeRe accepts type names PostgreSQL may read: words with an optional
// size, an optional suffix ("timestamp(3) with time zone") and array
// brackets.
var typeRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_ ]*(\(\s*[0-9]+\s*(,\s*[0-9]+\s*)?\))?[A-Za-z ]*(\[\])?$`)

// sqliteSized are SQLite's spellings of sized text types, which SQLite does
// not enforce: the values of such a column may be longer than its size.
var sqliteSized = regexp.MustCompile(`(?i)^(N?VARCHAR|NCHAR|CHAR|VARYING CHARACTER|NATIVE CHARACTER)\s*\(`)

// pgType returns the PostgreSQL type for a column declared as t in a
// template, which may come from SQLite. SQLite's types map by what SQLite
// stores in them: INTEGER (and PostgreSQL's integer, smallint) to bigint, as
// SQLite's integers have 64 bits; REAL to double precision; BLOB to bytea;
// DATETIME and TIMESTAMP to text, since SQLite keeps the text it was given
// (which a timestamp column would reformat); sized text to text, a column
// with no type to text. Other names that PostgreSQL reads pass unchanged.
func pgType(t string) string {
	t = strings.TrimSpace(t)
	switch strings.ToUpper(t) {
	case "", "TEXT", "CLOB", "DATETIME", "TIMESTAMP", "STRING":
		return "text"
	case "INTEGER", "INT", "BIGINT", "INT8", "INT4", "INT2", "SMALLINT", "TINYINT", "MEDIUMINT", "UNSIGNED BIG INT":
		return "bigint"
	case "REAL", "DOUBLE", "DOUBLE PRECISION", "FLOAT", "FLOAT4", "FLOAT8":
		return "double precision"
	case "BLOB", "BYTEA":
		return "bytea"
	case "BOOLEAN", "BOOL":
		return "boolean"
	}
	if sqliteSized.MatchString(t) || !typeRe.MatchString(t) {
		return "text"
	}
	return t
}

var (
	createIndexRe = regexp.MustCompile(`(?is)^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(IF\s+NOT\s+EXISTS\s+)?`)
	schemaRe      = regexp.MustCompile(`(?i)\bON\s+(ONLY\s+)?(("[^"]+"|[A-Za-z_][A-Za-z0-9_]*)\.)`)
)

// retargetIndex makes a CREATE INDEX statement read from another store
// runnable here: IF NOT EXISTS, and on the table of the search_path rather
// than the other store's schema.
func retargetIndex(q string) string {
	q = createIndexRe.ReplaceAllString(q, "CREATE ${1}INDEX IF NOT EXISTS ")
	return schemaRe.ReplaceAllString(q, "ON ${1}")
}

// ensureSubjectIndex creates an index on table's subject column unless an
// index starts with it.
func ensureSubjectIndex(ctx context.Context, tx pgx.Tx, table, subj string) error {
	ok, err := hasSubjectIndex(ctx, tx, table, subj)
	if err != nil || ok {
		return err
	}
	_, err = tx.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+quoteIdent(objectName(table, "_subject"))+
		` ON `+quoteIdent(table)+` (`+quoteIdent(subj)+`)`)
	return err
}

func hasSubjectIndex(ctx context.Context, q querier, table, subj string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = to_regclass($1) AND a.attname = $2)`, quoteIdent(table), subj).Scan(&ok)
	return ok, err
}

// CheckInstall returns what is missing or out of date in the installation
// of datasets, one line per problem.
func (s *Store) CheckInstall(ctx context.Context, datasets []*domicile.Dataset) ([]string, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	err := s.view(ctx, func(tx pgx.Tx) error {
		schema, err := currentSchema(ctx, tx)
		if err != nil {
			return err
		}
		var missing bool
		for _, name := range []string{"domicile_owner", "domicile_settings", "domicile_capture", "domicile_changes", "domicile_known"} {
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, quoteIdent(name)).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				add("table %s is missing", name)
				missing = true
			}
		}
		if missing {
			return nil
		}
		version, err := setting(ctx, tx, "install_version")
		if err != nil {
			return err
		}
		if want := installDigest(schema, datasets); version != want {
			add("installation is out of date (version %q, current %q)", version, want)
		}
		if msg, err := checkFunction(ctx, tx, schema+".domicile_refuse(text, text, text)", quoteIdent(schema)+".domicile_refuse(text, text, text)", refuseBody(schema)); err != nil {
			return err
		} else if msg != "" {
			add("%s", msg)
		}
		for _, ds := range datasets {
			for _, t := range ds.Tables {
				more, err := tableProblems(ctx, tx, schema, ds, t)
				if err != nil {
					return err
				}
				problems = append(problems, more...)
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

// setting returns the value of a key of domicile_settings, "" if unset.
func setting(ctx context.Context, tx pgx.Tx, key string) (string, error) {
	var v string
	err := tx.QueryRow(ctx, `SELECT coalesce(value, '') FROM domicile_settings WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// tableProblems returns what is missing or out of date in the
// installation of table t of dataset ds.
func tableProblems(ctx context.Context, tx pgx.Tx, schema string, ds *domicile.Dataset, t *domicile.Table) ([]string, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, quoteIdent(t.Name)).Scan(&ok); err != nil {
		return nil, err
	}
	if !ok {
		add("table %s of dataset %s is missing", t.Name, ds.Name)
		return problems, nil
	}
	// The columns the guard reads: a function's body is not checked
	// against the table until it runs.
	have, err := readTable(ctx, tx, t.Name)
	if err != nil {
		return nil, err
	}
	if t.Via != nil {
		if err := checkPath(ctx, tx, t, have); err != nil {
			add("%s", err.Error())
		}
	} else if _, ok := have.column(t.SubjectColumn); !ok {
		add("table %s has no subject column %q", t.Name, t.SubjectColumn)
	}
	fn := quoteIdent(schema) + "." + quoteIdent(guardName(t.Name)) + "()"
	if msg, err := checkFunction(ctx, tx, "trigger function of "+t.Name, fn, tableGuardBody(schema, ds.Name, t)); err != nil {
		return nil, err
	} else if msg != "" {
		add("%s", msg)
	}
	if err := checkTriggers(ctx, tx, t.Name, fn, add); err != nil {
		return nil, err
	}
	if err := checkCapture(ctx, tx, schema, ds, t, have, add); err != nil {
		return nil, err
	}
	if t.Via != nil {
		// no subject column to index
	} else if ok, err := hasSubjectIndex(ctx, tx, t.Name, t.SubjectColumn); err != nil {
		return nil, err
	} else if !ok {
		add("table %s has no index on its subject column %s", t.Name, t.SubjectColumn)
	}
	if got, err := setting(ctx, tx, tableKey(t.Name)); err != nil {
		return nil, err
	} else if got != ds.Name {
		add("table %s is not installed as part of dataset %s", t.Name, ds.Name)
	}
	return problems, nil
}

// checkFunction returns a problem if the function signature (as
// to_regprocedure reads it) is missing or its body is not body.
func checkFunction(ctx context.Context, tx pgx.Tx, what, signature, body string) (string, error) {
	var src *string
	var definer bool
	err := tx.QueryRow(ctx, `SELECT p.prosrc, p.prosecdef FROM pg_proc p WHERE p.oid = to_regprocedure($1)`, signature).Scan(&src, &definer)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Sprintf("%s is missing", what), nil
	case err != nil:
		return "", err
	case src == nil || *src != body || !definer:
		return fmt.Sprintf("%s is out of date", what), nil
	}
	return "", nil
}

// checkTriggers adds a problem for each of table's triggers that is
// missing, disabled, or not the one Install creates.
func checkTriggers(ctx context.Context, tx pgx.Tx, table, fn string, add func(string, ...any)) error {
	type trig struct {
		enabled string
		ours    bool
		def     string
	}
	rows, err := tx.Query(ctx, `SELECT t.tgname::text, t.tgenabled::text, t.tgfoid = to_regprocedure($2), pg_get_triggerdef(t.oid)
		FROM pg_trigger t WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal`, quoteIdent(table), fn)
	if err != nil {
		return err
	}
	have := make(map[string]trig)
	for rows.Next() {
		var name string
		var tg trig
		if err := rows.Scan(&name, &tg.enabled, &tg.ours, &tg.def); err != nil {
			rows.Close()
			return err
		}
		have[name] = tg
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i, event := range []string{"INSERT", "UPDATE", "DELETE"} {
		name := triggerNames(table)[i]
		tg, ok := have[name]
		switch {
		case !ok:
			add("trigger %s on %s is missing", name, table)
		case tg.enabled != "O" && tg.enabled != "A": // disabled, or firing only for replicas
			add("trigger %s on %s is disabled", name, table)
		case !tg.ours || !strings.Contains(tg.def, " AFTER "+event+" ") || !strings.Contains(tg.def, "FOR EACH ROW") ||
			!strings.Contains(tg.def, "'domicile.bypass'"):
			add("trigger %s on %s is out of date", name, table)
		}
	}
	return nil
}
