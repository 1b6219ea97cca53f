package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// ChangedSince tells which subjects' rows may have changed since a batch
// ReadSubjects read, from the rows' creating transactions (xmin) and their
// number, without reading their values.
//
// The batch's Snapshot is the xmin of the snapshot it was read on: every
// transaction with an id below it had ended when the batch was read. A row
// version visible now whose xmin is below it was therefore committed
// before the read, and has not been deleted since (it is visible now): the
// read saw it. So when none of a subject's rows in a table has a newer
// xmin, the rows there now are among those the batch holds, and when their
// number is the batch's too, they are the same rows, with the same values
// (a row version never changes; an UPDATE makes a new one, with its own
// xmin). A subject with a newer xmin anywhere, or another number of rows,
// is reported. A newer xmin may be a transaction that the read did see
// (one that ended before it, but began after the oldest one still
// running): reported all the same, which costs only a read.
//
// Transaction ids are compared by their age, as PostgreSQL compares them,
// modulo 2^32 within half the range: an xmin more than 2^31 transactions
// old (a frozen row's original id, after a wraparound) may read as newer,
// and its subject is reported. Ids are never taken for older than they
// are: a snapshot too old to compare so (2^30 transactions) gets
// ErrNotSupported.
//
// The argument holds on one server's one history of transaction ids, and
// for rows whose values mean what they meant: the batch's Snapshot also
// names the server's incarnation (queueSnapshotToken), and where it has
// changed since (a failover, a restore, a crash's recovery, a checkpoint)
// or the catalogue's description of the tables has (queueTablesChanged: a
// table renamed, rewritten, attached or detached, a column altered),
// ChangedSince gets ErrNotSupported, and the caller reads the values.
//
// Rows that reach their subject through a path are attributed by the rows
// of other tables, whose changes move them from one subject to another
// without a new version of their own: such datasets get ErrNotSupported,
// and the caller reads the values.
func (s *Store) ChangedSince(ctx context.Context, ds *domicile.Dataset, snapshot string, subjects []string, read map[string]domicile.SubjectDigest) ([]string, error) {
	x, then, ok := strings.Cut(snapshot, "/")
	xmin, err := strconv.ParseUint(x, 10, 64)
	if !ok || then == "" || err != nil {
		return nil, fmt.Errorf("snapshot %q names no transaction and server: %w", snapshot, domicile.ErrNotSupported)
	}
	for _, t := range ds.Tables {
		if t.Via != nil {
			return nil, fmt.Errorf("table %s reaches its subject through a path: %w", t.Name, domicile.ErrNotSupported)
		}
	}
	asked := make(map[string]bool, len(subjects))
	for _, id := range subjects {
		asked[id] = true
	}
	changed := make(map[string]bool)
	unsure := false
	decls := make([]*pgTable, len(ds.Tables))
	for i, t := range ds.Tables {
		if decls[i], err = s.table(ctx, t.Name); err != nil {
			return nil, err
		}
	}
	// judge takes the catalogue's check: the rows compare only on the
	// same server, tables and history of transaction ids.
	judge := func(incarnation string, age int64, altered bool) {
		unsure = incarnation != then || age < 0 || age > 1<<30 || altered
	}
	now := make([]map[string]rowVersions, len(ds.Tables))
	err = s.view(ctx, func(tx pgx.Tx) error {
		// One round trip: the BEGIN, the catalogue's check, every table's
		// row versions and the COMMIT. The rows are read even where the
		// check says they cannot be compared (rarely). A statement that
		// fails then (a column renamed) may fail before the check has
		// run, when pgx prepares it: the check then runs alone, below.
		//
		// The ages are measured from one id, fixed for the transaction;
		// they compare as the ids do while the snapshot's is less than
		// 2^31 transactions old. Far less is asked: a move's fence comes
		// minutes after its precopy, not a billion transactions.
		b := &pgx.Batch{}
		queueTablesChanged(b, ds.Tables, uint32(xmin), judge)
		for i, t := range ds.Tables {
			queueSubjectRowVersions(b, decls[i], t, subjects, uint32(xmin), func(v map[string]rowVersions) { now[i] = v })
		}
		if err := commitBatch(ctx, tx, b); err != nil || unsure {
			return err
		}
		for i, t := range ds.Tables {
			for id := range now[i] {
				if !asked[id] {
					// The column's text is not the id that matched it (a
					// number written with leading zeros, a case-blind
					// type): the rows cannot be told apart by subject.
					unsure = true
					return nil
				}
			}
			for _, id := range subjects {
				v := now[i][id]
				if v.newer || v.rows != read[id].Rows[t.Name] {
					changed[id] = true
				}
			}
		}
		return nil
	})
	if err != nil && !unsure && pgCode(err) != "" {
		// The server refused a statement: is it because the tables are
		// not the ones read?
		_ = s.view(ctx, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			queueTablesChanged(b, ds.Tables, uint32(xmin), judge)
			return commitBatch(ctx, tx, b)
		})
	}
	if unsure { // whatever a statement after the check said
		return nil, fmt.Errorf("the server, the tables or the snapshot's age do not allow a comparison, or a subject's value reads otherwise than its id: %w", domicile.ErrNotSupported)
	}
	if err != nil {
		return nil, fmt.Errorf("changes in region %s: %w", s.region, err)
	}
	var out []string
	for _, id := range subjects {
		if changed[id] {
			out = append(out, id)
			delete(changed, id) // a subject named twice is reported once
		}
	}
	return out, nil
}

// rowVersions is what queueSubjectRowVersions finds of a subject in a table.
type rowVersions struct {
	rows  int64
	newer bool // a row's xmin is not older than the snapshot's
}

// queueSubjectRowVersions queues the count of the rows of each subject in
// a table with a subject column, which tells found, with whether any was
// written by a transaction not older than xmin, a snapshot's (as xid: its
// low 32 bits). age(xid) is the distance from the transaction's own
// reference id back to xid, so a row is newer when its xmin's age is not
// above the snapshot's. A row whose xmin is no transaction's (age INT_MAX:
// the frozen id of rows from old releases, or 0 from a foreign table)
// counts as newer. Subjects are keyed by the column's value as text.
func queueSubjectRowVersions(b *pgx.Batch, decl *pgTable, t *domicile.Table, subjects []string, xmin uint32, found func(map[string]rowVersions)) {
	col := quoteIdent(t.SubjectColumn)
	q := `SELECT ` + col + `::text, count(*), bool_or(age(xmin) <= age($2::text::xid) OR age(xmin) = 2147483647) FROM ` + quoteIdent(t.Name) +
		` WHERE ` + subjectParam(decl, t.SubjectColumn, col, 1, true) + ` GROUP BY 1`
	b.Queue(q, subjects, strconv.FormatUint(uint64(xmin), 10)).Query(func(rows pgx.Rows) error {
		out := make(map[string]rowVersions)
		for rows.Next() {
			var id string
			var v rowVersions
			if err := rows.Scan(&id, &v.rows, &v.newer); err != nil {
				return fmt.Errorf("rows of %s: %w", t.Name, err)
			}
			out[id] = v
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rows of %s: %w", t.Name, err)
		}
		found(out)
		return nil
	})
}

// queueSnapshotToken queues the statement that names in token, for
// ChangedSince, the snapshot of its transaction (it must be the
// transaction's first statement, which takes the snapshot) and the
// server's incarnation:
// "<xmin>/<timeline>:<last checkpoint>@<start time>". Transaction ids are
// not unique across a failover, a restore or the recovery from a crash
// (where commits not yet flushed are lost and their ids handed out again):
// each changes one of these (another server, or the same one started
// again, has another start time; a recovery ends with a checkpoint). So
// does an ordinary checkpoint, which only costs the comparison.
func queueSnapshotToken(b *pgx.Batch, token *string) {
	b.Queue(`SELECT pg_snapshot_xmin(pg_current_snapshot())::text, ` + incarnationSQL).QueryRow(func(row pgx.Row) error {
		var xmin, incarnation string
		if err := row.Scan(&xmin, &incarnation); err != nil {
			return err
		}
		*token = xmin + "/" + incarnation
		return nil
	})
}

// incarnationSQL is the expression of the server's incarnation.
const incarnationSQL = `(SELECT timeline_id || ':' || checkpoint_lsn FROM pg_control_checkpoint()) || '@' || pg_postmaster_start_time()`

// queueTablesChanged queues the one statement that tells found the
// server's incarnation now (incarnationSQL), the age of xmin (a snapshot's,
// as xid), and whether the catalogue's description of the tables may have
// changed since that transaction, or describes what ChangedSince cannot
// compare: each table with the partitions and children a query of it
// reads, their columns and their places in the tree. A table renamed,
// truncated, rewritten, attached or detached, a column added (even without
// a rewrite), dropped or altered, all write a new version of one of those
// catalogue rows, with a newer xmin. (So do an index built or a grant, which only cost the
// comparison; VACUUM and ANALYZE update them in place.) Nor can it compare
// a tree holding anything but plain and partitioned tables (a foreign
// table's rows carry no transaction ids) or a column of a type not built
// in: the catalogue can change what an enum's or a composite type's stored
// values read as, with no new version of any row of the tree.
func queueTablesChanged(b *pgx.Batch, tables []*domicile.Table, xmin uint32, found func(incarnation string, age int64, changed bool)) {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = quoteIdent(t.Name)
	}
	// The tree as an array, a parameter of each scan, so that the
	// catalogues are read by their indexes (joined to the recursive query,
	// or to the array as a table, pg_class and pg_attribute were scanned
	// whole: most of a millisecond inside the fence).
	b.Queue(`WITH RECURSIVE tree(oid) AS (
			SELECT unnest($1::text[]::regclass[])::oid
			UNION SELECT i.inhrelid FROM pg_inherits AS i JOIN tree ON i.inhparent = tree.oid),
		t AS (SELECT array_agg(oid) AS oids FROM tree)
		SELECT `+incarnationSQL+`, age($2::text::xid),
			EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = ANY ((SELECT oids FROM t)::oid[])
				AND (c.relkind NOT IN ('r', 'p') OR age(c.xmin) <= age($2::text::xid)))
			OR EXISTS (SELECT 1 FROM pg_attribute AS a WHERE a.attrelid = ANY ((SELECT oids FROM t)::oid[]) AND a.attnum > 0
				AND (age(a.xmin) <= age($2::text::xid) OR NOT a.attisdropped AND a.atttypid >= 16384))
			OR EXISTS (SELECT 1 FROM pg_inherits AS i WHERE i.inhrelid = ANY ((SELECT oids FROM t)::oid[])
				AND age(i.xmin) <= age($2::text::xid))`, names, strconv.FormatUint(uint64(xmin), 10)).QueryRow(func(row pgx.Row) error {
		var incarnation string
		var age int64
		var changed bool
		if err := row.Scan(&incarnation, &age, &changed); err != nil {
			return err
		}
		found(incarnation, age, changed)
		return nil
	})
}
