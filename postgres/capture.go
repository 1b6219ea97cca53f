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
// captured, under their move, and domicile_changes receives the table,
// subject and primary key of every row of theirs that a write inserts,
// updates or deletes, in the transaction of the write.
//
// The table's guard records them: it reads the subject's ownership row
// anyway, and that row says whether the subject is captured (its capture
// column), so the writes of subjects no one captures, nearly all of them,
// pay for no second trigger and no second function call. For a captured
// row the guard calls the table's capture function (domicile_<table>_cap),
// which looks the subjects up in domicile_capture and calls the record
// function (domicile_<table>_rec) for each captured one; the record
// function runs with the store's own settings (time zone, date and
// interval style, float digits, bytea output) whatever the writer's
// session has, so the key's text is the one ReadSubjects reads. Keys are
// kept as text arrays and decoded by the column's kind. The capture cannot
// have triggers of its own: the guards are AFTER triggers, and an AFTER
// trigger's WHEN clause is evaluated when the row is written, before the
// guard has read the mark.
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
// whoever inserts an ownership row (queueInsertOwnership) shared, before the
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

// oldCaptureNames returns the names of the capture triggers of table that
// installations before the guards were AFTER triggers made (insert,
// update, delete): install drops them.
func oldCaptureNames(table string) [3]string {
	return [3]string{objectName(table, "_cap_ins"), objectName(table, "_cap_upd"), objectName(table, "_cap_del")}
}

// captureFuncName and recordFuncName name table's capture function and
// record function.
func captureFuncName(table string) string { return objectName(table, "_cap") }
func recordFuncName(table string) string  { return objectName(table, "_rec") }

// recordSignature is the record function as to_regprocedure reads it.
func recordSignature(schema, table string) string {
	return quoteIdent(schema) + "." + quoteIdent(recordFuncName(table)) + "(" + quoteIdent(schema) + "." + quoteIdent(table) + ")"
}

// captureFuncSignature is the capture function as to_regprocedure reads
// it: the operation, the old row and the new.
func captureFuncSignature(schema, table string) string {
	row := quoteIdent(schema) + "." + quoteIdent(table)
	return quoteIdent(schema) + "." + quoteIdent(captureFuncName(table)) + "(text, " + row + ", " + row + ")"
}

// oldCaptureFuncSignature is the capture trigger function that
// installations before the guards were AFTER triggers made.
func oldCaptureFuncSignature(schema, table string) string {
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

// captureBody is the body of t's capture function, which the guard calls
// with the operation (op), the old row (o) and the new (n) when a subject
// it checked is captured. An UPDATE records the old key and, if the key or
// the subject changed, the new one.
func captureBody(schema, dataset string, t *domicile.Table, decl *pgTable) string {
	changed := []string{`n.` + quoteIdent(t.SubjectColumn) + ` IS DISTINCT FROM o.` + quoteIdent(t.SubjectColumn)}
	for _, k := range decl.pk {
		changed = append(changed, `n.`+quoteIdent(k)+` IS DISTINCT FROM o.`+quoteIdent(k))
	}
	rec := quoteIdent(schema) + "." + quoteIdent(recordFuncName(t.Name))
	return `
BEGIN
  IF op <> 'INSERT' THEN
    IF EXISTS (` + captured(schema, dataset, "o", t.SubjectColumn) + `) THEN
      PERFORM ` + rec + `(o);
    END IF;
  END IF;
  IF op = 'INSERT' OR (op = 'UPDATE' AND (` + strings.Join(changed, " OR ") + `)) THEN
    IF EXISTS (` + captured(schema, dataset, "n", t.SubjectColumn) + `) THEN
      PERFORM ` + rec + `(n);
    END IF;
  END IF;
END
`
}

// captureDigest returns what capture adds to the installation's version.
func captureDigest(t *domicile.Table) string {
	if t.Via != nil {
		return ""
	}
	return captureSchema + captureSettings + captureLock
}

// installCapture creates, again, the capture functions of a dataset table
// declared here as decl, and drops what an older installation made for the
// capture: its capture triggers and their function. A table that reaches
// its subject through a path, or has no primary key, has none: a live copy
// of its dataset is refused (liveTables), so its guard never finds a
// captured subject.
func installCapture(ctx context.Context, tx pgx.Tx, schema string, ds *domicile.Dataset, t *domicile.Table, decl *pgTable) error {
	for _, name := range oldCaptureNames(t.Name) {
		if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+quoteIdent(name)+` ON `+quoteIdent(schema)+`.`+quoteIdent(t.Name)); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DROP FUNCTION IF EXISTS `+oldCaptureFuncSignature(schema, t.Name)); err != nil {
		return err
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
	row := quoteIdent(schema) + `.` + quoteIdent(t.Name)
	fn := `CREATE OR REPLACE FUNCTION ` + quoteIdent(schema) + `.` + quoteIdent(captureFuncName(t.Name)) +
		`(op text, o ` + row + `, n ` + row + `) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $domicile$` + captureBody(schema, ds.Name, t, decl) + `$domicile$`
	if _, err := tx.Exec(ctx, fn); err != nil {
		return fmt.Errorf("create capture function of %s: %w", t.Name, err)
	}
	return nil
}

// checkCapture adds the problems of the capture of a dataset table: its
// functions missing or out of date, or an older installation's capture
// triggers left. decl is the table as declared here.
func checkCapture(ctx context.Context, tx pgx.Tx, schema string, ds *domicile.Dataset, t *domicile.Table, decl *pgTable, add func(string, ...any)) error {
	rows, err := tx.Query(ctx, `SELECT tgname::text FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal AND tgname = ANY($2::text[])
		ORDER BY tgname`, quoteIdent(t.Name), oldCaptureNames(t.Name))
	if err != nil {
		return err
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range left {
		add("capture trigger %s on %s is left from an older installation", name, t.Name)
	}
	if t.Via != nil || len(decl.pk) == 0 {
		return nil
	}
	if msg, err := checkFunction(ctx, tx, "capture record function of "+t.Name, recordSignature(schema, t.Name), recordBody(schema, ds.Name, t, decl)); err != nil {
		return err
	} else if msg != "" {
		add("%s", msg)
	}
	if msg, err := checkFunction(ctx, tx, "capture function of "+t.Name, captureFuncSignature(schema, t.Name), captureBody(schema, ds.Name, t, decl)); err != nil {
		return err
	} else if msg != "" {
		add("%s", msg)
	}
	return nil
}
