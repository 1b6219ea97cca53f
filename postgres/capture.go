package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// A live copy captures the changes of the subjects it is copying as on
// SQLite, with triggers: domicile_capture lists the subjects being
// captured, under their move, and domicile_changes receives, from AFTER
// row triggers on every dataset table that has a subject column, the
// table, subject and primary key of every row of theirs that a write
// inserts, updates or deletes, in the transaction of the write.
//
// Each table has two functions. Its capture trigger function
// (domicile_<table>_cap) returns at once unless the row's subject is in
// domicile_capture. It is called only in a transaction whose guard has
// found a captured subject (captureCondition): a trigger's WHEN clause
// cannot hold a subquery, but the guard reads the subject's ownership row
// anyway, and that row says whether the subject is captured, so the writes
// of subjects no one captures, nearly all of them, pay for no second
// function call. For a captured row it calls the table's record function
// (domicile_<table>_rec), which runs with the store's own settings (time
// zone, date and interval style, float digits, bytea output) whatever the
// writer's session has, so the key's text is the one ReadSubjects reads.
// Keys are kept as text arrays and decoded by the column's kind.
//
// Sequence numbers and commit order. A sequence hands out numbers when a
// transaction asks, not when it commits: a transaction may take seq 9,
// another seq 10 and commit first, and a reader that saw 10 and moved past
// it would never see 9. So the record function takes a transaction-level
// advisory lock (captureLock) before it takes a number, and holds it until
// the transaction ends. The transactions that record changes thus take
// their numbers and commit one at a time, in the same order, and a
// transaction's commit is visible before its lock is released (PostgreSQL
// leaves the proc array before it releases locks). If a reader sees a
// change with seq n, the transaction that recorded it held the lock, so
// every transaction with a lower number had committed before and is seen
// too, and every transaction that commits later takes its numbers after
// n. Only the writes of captured subjects take the lock; the others
// return before it.
const captureSchema = `
CREATE TABLE IF NOT EXISTS domicile_capture (
	subject text NOT NULL,
	dataset text NOT NULL,
	move_id text NOT NULL,
	PRIMARY KEY (subject, dataset, move_id)
);
CREATE TABLE IF NOT EXISTS domicile_changes (
	seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	move_id text NOT NULL,
	tbl     text NOT NULL,
	subject text NOT NULL,
	key     text[] NOT NULL
);
`

// captureIndex is domicile_changes' index, made by upgradeOwner where it
// is missing: CREATE INDEX IF NOT EXISTS takes its lock (which waits for
// the captured writes in flight, and holds off those after it) before it
// looks.
const captureIndex = `CREATE INDEX IF NOT EXISTS domicile_changes_move ON domicile_changes (move_id, seq)`

// captureMarkLock is the advisory lock that orders the capture marks'
// writers: StartCapture, EndCapture and Install take it exclusively, and
// whoever inserts an ownership row (insertOwnership) shared, before the
// statement that reads domicile_capture. The statement after the lock is
// granted sees every capture committed before, and no capture begins or
// ends until the inserter commits: a mark is never computed from a
// capture that another transaction is changing.
const captureMarkLock = `hashtext('domicile capture mark')`

// lockCaptureMarks takes captureMarkLock until the transaction ends,
// shared or not.
func lockCaptureMarks(ctx context.Context, tx pgx.Tx, shared bool) error {
	b := &pgx.Batch{}
	queueLockCaptureMarks(b, shared)
	return tx.SendBatch(ctx, b).Close()
}

// queueLockCaptureMarks queues lockCaptureMarks' statement.
func queueLockCaptureMarks(b *pgx.Batch, shared bool) {
	fn := "pg_advisory_xact_lock"
	if shared {
		fn += "_shared"
	}
	b.Queue(`SELECT ` + fn + `(` + captureMarkLock + `)`)
}

// captureLock is the advisory lock the record functions hold from their
// first change to the end of the writer's transaction.
const captureLock = `hashtext('domicile capture')`

// captureSettings are the record function's settings: the store's
// runtimeParams, all digits of floats, bytea in hex.
const captureSettings = ` SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'` +
	` SET extra_float_digits = 1 SET bytea_output = 'hex'`

// captureNames returns the names of table's capture triggers (insert,
// update, delete).
func captureNames(table string) [3]string {
	return [3]string{objectName(table, "_cap_ins"), objectName(table, "_cap_upd"), objectName(table, "_cap_del")}
}

// captureFuncName and recordFuncName name table's capture trigger function
// and record function.
func captureFuncName(table string) string { return objectName(table, "_cap") }
func recordFuncName(table string) string  { return objectName(table, "_rec") }

// recordSignature is the record function as to_regprocedure reads it.
func recordSignature(schema, table string) string {
	return quoteIdent(schema) + "." + quoteIdent(recordFuncName(table)) + "(" + quoteIdent(schema) + "." + quoteIdent(table) + ")"
}

// captureFuncSignature is the capture trigger function as to_regprocedure
// reads it.
func captureFuncSignature(schema, table string) string {
	return quoteIdent(schema) + "." + quoteIdent(captureFuncName(table)) + "()"
}

// keyExpr is the text of key column c of row r as rows carry it (see
// selectExpr), under captureSettings.
func keyExpr(r, c string, k kind) string {
	q := r + "." + quoteIdent(c)
	switch k {
	case kindTimestamp:
		return "(" + q + " AT TIME ZONE 'UTC')::text"
	case kindFloat:
		return q + "::float8::text"
	}
	return q + "::text"
}

// captured is the condition that the subject of row r is being captured.
func captured(schema, dataset, r, subj string) string {
	return `SELECT 1 FROM ` + quoteIdent(schema) + `.domicile_capture WHERE subject = ` + r + `.` + quoteIdent(subj) + `::text AND dataset = ` + quoteString(dataset)
}

// recordBody is the body of the record function of t, declared here as
// decl: it records row r's key under every move capturing its subject.
func recordBody(schema, dataset string, t *domicile.Table, decl *pgTable) string {
	keys := make([]string, len(decl.pk))
	for i, k := range decl.pk {
		keys[i] = keyExpr("r", k, decl.kindOf(k))
	}
	return `
BEGIN
  PERFORM pg_advisory_xact_lock(` + captureLock + `);
  INSERT INTO ` + quoteIdent(schema) + `.domicile_changes (move_id, tbl, subject, key)
    SELECT move_id, ` + quoteString(t.Name) + `, r.` + quoteIdent(t.SubjectColumn) + `::text, ARRAY[` + strings.Join(keys, ", ") + `]::text[]
    FROM ` + quoteIdent(schema) + `.domicile_capture WHERE subject = r.` + quoteIdent(t.SubjectColumn) + `::text AND dataset = ` + quoteString(dataset) + `;
END
`
}

// captureBody is the body of t's capture trigger function. An UPDATE
// records the old key and, if the key or the subject changed, the new one.
func captureBody(schema, dataset string, t *domicile.Table, decl *pgTable) string {
	changed := []string{`NEW.` + quoteIdent(t.SubjectColumn) + ` IS DISTINCT FROM OLD.` + quoteIdent(t.SubjectColumn)}
	for _, k := range decl.pk {
		changed = append(changed, `NEW.`+quoteIdent(k)+` IS DISTINCT FROM OLD.`+quoteIdent(k))
	}
	rec := quoteIdent(schema) + "." + quoteIdent(recordFuncName(t.Name))
	return `
BEGIN
  IF TG_OP <> 'INSERT' THEN
    IF EXISTS (` + captured(schema, dataset, "OLD", t.SubjectColumn) + `) THEN
      PERFORM ` + rec + `(OLD);
    END IF;
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (` + strings.Join(changed, " OR ") + `)) THEN
    IF EXISTS (` + captured(schema, dataset, "NEW", t.SubjectColumn) + `) THEN
      PERFORM ` + rec + `(NEW);
    END IF;
  END IF;
  RETURN NULL;
END
`
}

// captureCondition is the capture triggers' WHEN clause: the writer's
// guard has set domicile.capture in this transaction (see guardBody), and
// the write is not the mover's. A setting no one has set reads as NULL,
// and one set local to an ended transaction as the empty string. A
// setting left at session level by a careless SET only calls the function
// for nothing: the function looks the subject up itself.
const captureCondition = `current_setting('domicile.capture', true) <> '' AND ` + bypassCondition

// captureTriggerSQL returns the CREATE TRIGGER statements of t's capture,
// in the order of captureNames. The mover's own writes (domicile.bypass)
// are not recorded, as on SQLite, and never call the function.
func captureTriggerSQL(schema, table string) [3]string {
	names := captureNames(table)
	var out [3]string
	for i, event := range []string{"INSERT", "UPDATE", "DELETE"} {
		out[i] = `CREATE TRIGGER ` + quoteIdent(names[i]) + ` AFTER ` + event + ` ON ` + quoteIdent(schema) + `.` + quoteIdent(table) +
			` FOR EACH ROW WHEN (` + captureCondition + `) EXECUTE FUNCTION ` + captureFuncSignature(schema, table)
	}
	return out
}

// captureDigest returns what capture adds to the installation's version.
func captureDigest(schema string, t *domicile.Table) string {
	if t.Via != nil {
		return ""
	}
	q := captureTriggerSQL(schema, t.Name)
	return captureSchema + captureSettings + captureLock + strings.Join(q[:], "\x00")
}

// installCapture creates, again, the capture functions of a dataset table
// declared here as decl and, with capture, its capture triggers (without,
// it drops them: see Store.captureTriggers). A table that reaches its
// subject through a path, or has no primary key, has none.
func installCapture(ctx context.Context, tx pgx.Tx, schema string, ds *domicile.Dataset, t *domicile.Table, decl *pgTable, capture bool) error {
	for _, name := range captureNames(t.Name) {
		if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+quoteIdent(name)+` ON `+quoteIdent(schema)+`.`+quoteIdent(t.Name)); err != nil {
			return err
		}
	}
	if t.Via != nil || len(decl.pk) == 0 {
		return nil
	}
	rec := `CREATE OR REPLACE FUNCTION ` + quoteIdent(schema) + `.` + quoteIdent(recordFuncName(t.Name)) +
		`(r ` + quoteIdent(schema) + `.` + quoteIdent(t.Name) + `) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER` + captureSettings + ` AS $domicile$` + recordBody(schema, ds.Name, t, decl) + `$domicile$`
	if _, err := tx.Exec(ctx, rec); err != nil {
		return fmt.Errorf("create capture record function of %s: %w", t.Name, err)
	}
	fn := `CREATE OR REPLACE FUNCTION ` + captureFuncSignature(schema, t.Name) + ` RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $domicile$` + captureBody(schema, ds.Name, t, decl) + `$domicile$`
	if _, err := tx.Exec(ctx, fn); err != nil {
		return fmt.Errorf("create capture function of %s: %w", t.Name, err)
	}
	if !capture {
		return nil
	}
	for _, q := range captureTriggerSQL(schema, t.Name) {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("create capture trigger on %s: %w", t.Name, err)
		}
	}
	return nil
}

// captureWant is which capture triggers a check of a table expects.
type captureWant int

const (
	captureAbsent    captureWant = iota // install made none: any is a problem
	capturePresent                      // install made them, or a capture by triggers needs them: each must be there
	captureIfPresent                    // CheckInstall, no capture needs them: those there are checked, none is fine
)

// captureTriggers reports whether the store's dataset tables need their
// capture triggers: where a live copy captures its changes with them (the
// capture mode triggers, or auto on a cluster without logical
// replication), or while a capture by triggers is under way. Elsewhere
// install leaves them out: an AFTER row trigger costs every write even
// when its WHEN never lets it call its function (a third of the triggers'
// time a written row, measured: docs/benchmarks.md), and a live copy by
// logical replication has no use for them. Without them, a capture by triggers
// is refused as not supported (liveTables), and the subject is moved
// inside the fence.
//
// In the mode auto the decision sticks: capture triggers an installation
// has are kept, so that processes whose roles differ (one may replicate,
// another not) do not drop and make them in turn, each time locking every
// dataset table; only the mode logical drops them.
func (s *Store) captureTriggers(ctx context.Context, tx pgx.Tx) (bool, error) {
	if need, err := s.capturesByTriggers(ctx, tx); err != nil || need {
		return need, err
	}
	if s.captureMode() == CaptureLogical {
		return false, nil
	}
	var have bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'domicile\_%\_cap\_ins')`).Scan(&have); err != nil || have {
		return have, err
	}
	why, err := logicalUnavailable(ctx, tx)
	return why != "", err
}

// capturesByTriggers reports whether the store's captures need the capture
// triggers whatever install decides: a capture by triggers is under way,
// or the capture mode is triggers.
func (s *Store) capturesByTriggers(ctx context.Context, tx pgx.Tx) (bool, error) {
	if s.captureMode() == CaptureTriggers {
		return true, nil
	}
	var inFlight bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM domicile_capture)`).Scan(&inFlight)
	return inFlight, err
}

// checkCapture adds the problems of the capture of a dataset table.
// want says which capture triggers are expected (see captureWant).
func checkCapture(ctx context.Context, tx pgx.Tx, schema string, ds *domicile.Dataset, t *domicile.Table, want captureWant, add func(string, ...any)) error {
	if t.Via != nil {
		return nil
	}
	decl, err := readTable(ctx, tx, t.Name)
	if err != nil || len(decl.pk) == 0 {
		return err
	}
	if msg, err := checkFunction(ctx, tx, "capture record function of "+t.Name, recordSignature(schema, t.Name), recordBody(schema, ds.Name, t, decl)); err != nil {
		return err
	} else if msg != "" {
		add("%s", msg)
	}
	fn := captureFuncSignature(schema, t.Name)
	if msg, err := checkFunction(ctx, tx, "capture function of "+t.Name, fn, captureBody(schema, ds.Name, t, decl)); err != nil {
		return err
	} else if msg != "" {
		add("%s", msg)
	}
	rows, err := tx.Query(ctx, `SELECT t.tgname::text, t.tgenabled::text, t.tgfoid = to_regprocedure($2), pg_get_triggerdef(t.oid)
		FROM pg_trigger t WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal`, quoteIdent(t.Name), fn)
	if err != nil {
		return err
	}
	type trig struct {
		enabled string
		ours    bool
		def     string
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
	some := false
	for _, name := range captureNames(t.Name) {
		_, ok := have[name]
		some = some || ok
	}
	for i, event := range []string{"INSERT", "UPDATE", "DELETE"} {
		name := captureNames(t.Name)[i]
		tg, ok := have[name]
		switch {
		case want == captureAbsent:
			if ok {
				add("capture trigger %s on %s is installed, but no capture uses it", name, t.Name)
			}
		case !ok && want == captureIfPresent && !some:
			// none made here: a capture by triggers is refused
		case !ok:
			add("capture trigger %s on %s is missing", name, t.Name)
		case tg.enabled != "O" && tg.enabled != "A":
			add("capture trigger %s on %s is disabled", name, t.Name)
		case !tg.ours || !strings.Contains(tg.def, " AFTER "+event+" ") || !strings.Contains(tg.def, "FOR EACH ROW") ||
			!strings.Contains(tg.def, "'domicile.bypass'") || !strings.Contains(tg.def, "'domicile.capture'"):
			add("capture trigger %s on %s is out of date", name, t.Name)
		}
	}
	return nil
}
